//! otsec's compiled core: every per-packet step, from capture bytes to PDU records.
//!
//! `reader` (pcap, pcapng, gzip, streams) -> `decode` (link, tunnels, IP, TCP/UDP, ARP) +
//! `defrag` -> `flows` + `reassembly` + `recognition` -> `protocols` (Modbus/TCP, S7comm/S7comm-plus, DNP3) ->
//! `output` (events.ndjson lines, aggregated anomalies). `python` is the binding.

pub mod aggregate;
pub mod availability;
pub mod community_id;
pub mod decode;
pub mod defrag;
pub mod engine;
pub mod events;
pub mod flows;
pub mod json;
pub mod ledger;
pub mod meaning;
pub mod metrics;
pub mod output;
pub mod pending;
pub mod probes;
pub mod protocols;
pub mod readahead;
pub mod reader;
pub mod reassembly;
pub mod recognition;
pub mod ring;
pub mod rule_index;
pub mod rules;
pub mod timefmt;
pub mod values;
pub mod watch;

#[cfg(feature = "python")]
mod python;
