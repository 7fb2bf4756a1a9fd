//! The dissectors, and how a flow is matched to one.
//!
//! A flow is matched on the protocol's well-known port first (then its first payload must
//! still look like the protocol, so HTTP or TLS on port 502 is not taken for Modbus), and
//! by content alone on any other port.

pub mod dnp3;
pub mod modbus;
pub mod s7comm;

use crate::events::{Event, Proto, Req};
use crate::meaning::{Evidence, Use};
use crate::rules::Val;

/// A protocol: everything the engine needs to find it and parse it. Adding a protocol is
/// its module (a `DISSECTOR` and a `Record` for each of its record types), one line in
/// `REGISTRY` and one line per record type in `events::records!`.
#[derive(Debug)]
pub struct Dissector {
    /// its name, and what its parse anomalies (and a dissector failure) are reported under
    pub proto: Proto,
    pub tcp_port: u16,
    pub udp_port: Option<u16>,
    /// do a stream's first bytes look like it? (`strict`: off its well-known port)
    pub looks_like: fn(&[u8], bool) -> Sniff,
    /// a new flow's state
    pub parser: fn() -> Parser,
}

/// What a protocol makes of the first bytes of a stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sniff {
    /// it is this protocol
    Yes,
    /// it is not
    No,
    /// too few bytes to tell: what came so far fits a header
    More,
}

impl Sniff {
    /// `Yes` when `ok`, else `No`.
    pub fn from(ok: bool) -> Sniff {
        if ok {
            Sniff::Yes
        } else {
            Sniff::No
        }
    }
}

/// A registered protocol (its entry in `REGISTRY`).
pub type Kind = &'static Dissector;

/// The registry, in the order content recognition tries them.
pub static REGISTRY: [Dissector; 3] = [modbus::DISSECTOR, s7comm::DISSECTOR, dnp3::DISSECTOR];

impl PartialEq for Dissector {
    fn eq(&self, other: &Self) -> bool {
        self.proto == other.proto
    }
}

impl Dissector {
    pub fn name(&self) -> &'static str {
        self.proto.name()
    }

    pub fn by_name(name: &str) -> Option<Kind> {
        REGISTRY.iter().find(|k| k.name() == name)
    }

    pub fn by_port(tcp: bool, port: u16) -> Option<Kind> {
        REGISTRY.iter().find(|k| {
            if tcp {
                k.tcp_port == port
            } else {
                k.udp_port == Some(port)
            }
        })
    }
}

/// A flow's dissector state.
pub trait Dissect: Send + Sync {
    /// What it holds, every part bounded (see `Held`).
    fn held(&self) -> Held;
    /// Parse what the stream delivered; `gap`: bytes before `data` were lost.
    fn feed(&mut self, data: &[u8], from_client: bool, gap: bool, out: &mut Vec<Event>);
    fn feed_datagram(&mut self, data: &[u8], from_client: bool, out: &mut Vec<Event>);
}

pub type Parser = Box<dyn Dissect>;

/// What a dissector holds: (bytes buffered in the larger direction, requests waiting for
/// an answer, partial reassemblies). Every one of them is bounded.
pub type Held = (usize, usize, usize);

/// What one protocol record tells the rest of the core, decided once by its module:
/// its meaning, the evidence it gives, its output line and its rule fields.
pub trait Record {
    /// what its dissector found wrong in it
    fn anomalies(&self) -> &[&'static str];
    /// request or response, by the protocol's own semantics
    fn is_request(&self, from_client: bool) -> bool;
    /// the function code as the graph counts it (see `Use::code`)
    fn code(&self) -> Option<u32>;
    /// what it does
    fn describe(&self, from_client: bool) -> Option<Use>;
    /// what it says about the roles of the hosts at each end
    fn evidence(&self, from_client: bool, req: Option<&Req>) -> Evidence;
    /// the roles it shows follow the connection (the station that opened it is never the
    /// controller), not who sent a request
    fn roles_follow_connection(&self) -> bool {
        false
    }
    /// the answering station's own protocol address (kept with its host)
    fn station_address(&self) -> Option<u16> {
        None
    }
    /// it tells the device's identity (always crosses to Python)
    fn identifies(&self) -> bool {
        false
    }
    /// why the device refused the request this answers, as a short key Python words
    fn refusal(&self) -> Option<String> {
        None
    }
    /// its `otsec.<protocol>` object in the event line
    fn json(&self, out: &mut Vec<u8>, req: Option<&Req>);
    /// a rule field of its own (by id, see `rules::FIELDS`; `anomalies` is read for all)
    fn field(&self, id: u8) -> Val;
    /// its fields as the Python event type's attributes (`anomalies` is set for all)
    #[cfg(feature = "python")]
    fn py_fields(&self, d: &pyo3::Bound<'_, pyo3::types::PyDict>) -> pyo3::PyResult<()>;
}

/// Clearly something else (HTTP, TLS, SSH), whatever the port says (judged on 4 bytes).
pub fn is_other_protocol(p: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 8] = [
        b"GET ",
        b"POST",
        b"HEAD",
        b"PUT ",
        b"HTTP",
        b"\x16\x03",
        b"SSH-",
        b"OPTI",
    ];
    PREFIXES.iter().any(|pre| p.starts_with(pre))
}
