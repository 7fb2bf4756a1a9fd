//! The flow table: one flow per 5-tuple (both directions), bounded, with idle expiry.
//!
//! Each flow is indexed under both directional keys so the hot path needs one hash lookup
//! and no key normalisation. Side 0 sent the first packet seen; which side is the client
//! is decided from the SYN, the protocol's well-known port, or the first payload.

use rustc_hash::FxHashMap;
use std::collections::VecDeque;

use crate::community_id::community_id;
use crate::decode::{Addr, TCP};
use crate::output::AnomalyCount;
use crate::protocols::{Kind, Parser};
use crate::reassembly::TcpStream;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

pub enum ParserState {
    /// not recognised yet
    Unknown,
    /// never will be: not a protocol otsec dissects
    NotOurs,
    Active(Parser),
}

pub struct Flow {
    pub seq: u64,
    /// its place in the table (the policy's copy of the flow is kept under it too)
    pub slot: u32,
    pub ips: [Addr; 2],
    pub ports: [u16; 2],
    pub proto: u8,
    pub macs: [Option<[u8; 6]>; 2],
    pub vlan: i32,
    pub first_ts: f64,
    pub last_ts: f64,
    pub side_packets: [u64; 2],
    pub side_bytes: [u64; 2],
    pub client: Option<usize>,
    pub streams: Option<Box<[TcpStream; 2]>>,
    pub parser: ParserState,
    pub protocol: Option<Kind>,
    pub probe_tries: u32,
    /// what its streams sent while the protocol was not known yet
    pub held: Option<Box<crate::recognition::Held>>,
    /// anomalies of the network layers (side, kind, detail) waiting for the protocol to be
    /// known, to be reported under it (at most `MAX_UNREPORTED`)
    pub unreported: Vec<(usize, &'static str, String)>,
    pub closed: u32,
    cid: Option<String>,
    /// the flow's network and endpoint objects, rendered at its first event (and again
    /// when a MAC changes), then line parts per (protocol, direction): see output.rs
    pub context: Option<Box<[Vec<u8>; 3]>>,
    pub templates: Option<Box<[Option<Vec<u8>>; 16]>>,
    pub anomalies: Vec<AnomalyCount>,
    /// the graph edge this flow's records last counted on
    pub edge: Option<crate::aggregate::EdgeKey>,
    /// how the flow looked when a record of it last crossed to Python
    pub sent_view: Option<crate::engine::ViewKey>,
    /// the MACs documents show: those at the flow's first record, until one changes
    pub view_macs: Option<[Option<[u8; 6]>; 2]>,
    /// requests so far (rules can ask for a request's index in its connection)
    pub requests: u64,
    /// TCP health not yet counted into its edge's minute (see metrics.rs)
    pub tcp: crate::metrics::Tcp,
    /// the availability slot of its server for one protocol (see availability.rs)
    pub device: Option<(crate::events::Proto, u32)>,
    /// availability knows its server answered this client at this port
    pub served: bool,
    /// requests that crossed into Python (their answers cross too)
    pub crossed: Vec<u32>,
    /// requests that counted repeats of findings in the core: (token, keys)
    pub repeated: Vec<(u32, Vec<u32>)>,
    /// the last finding of each rule on this flow: (rule, fingerprint, key)
    pub hits: Vec<(u32, u64, u32)>,
    /// requests waiting for their answer: (transaction token, time)
    pub asked: Vec<(u32, f64)>,
    /// a MAC changed since the policy last saw the flow: its rendered parts are stale
    pub macs_changed: bool,
}

/// What the packet side knows of a flow and the record side reads: sent with its records
/// and at its end (see `engine::Batch`). The TCP health counted since the last one travels
/// with it.
pub struct Head {
    pub seq: u64,
    pub ips: [Addr; 2],
    pub ports: [u16; 2],
    pub proto: u8,
    pub macs: [Option<[u8; 6]>; 2],
    pub vlan: i32,
    pub first_ts: f64,
    pub last_ts: f64,
    pub side_packets: [u64; 2],
    pub side_bytes: [u64; 2],
    pub client: Option<usize>,
    pub protocol: Option<Kind>,
    pub tcp: crate::metrics::Tcp,
    pub macs_changed: bool,
}

impl Flow {
    pub fn new(seq: u64, key: &FlowKey, ts: f64) -> Flow {
        Flow {
            seq,
            slot: 0,
            ips: [key.src, key.dst],
            ports: [key.sport, key.dport],
            proto: key.proto,
            macs: [None, None],
            vlan: -1,
            first_ts: ts,
            last_ts: ts,
            side_packets: [0, 0],
            side_bytes: [0, 0],
            client: None,
            streams: None,
            parser: ParserState::Unknown,
            protocol: None,
            probe_tries: 0,
            held: None,
            unreported: Vec::new(),
            closed: 0,
            cid: None,
            context: None,
            templates: None,
            anomalies: Vec::new(),
            edge: None,
            sent_view: None,
            view_macs: None,
            requests: 0,
            device: None,
            served: false,
            tcp: crate::metrics::Tcp::default(),
            crossed: Vec::new(),
            repeated: Vec::new(),
            hits: Vec::new(),
            asked: Vec::new(),
            macs_changed: false,
        }
    }

    /// The packet side's fields for the record side (the TCP health counted so far and
    /// a MAC change are handed over, not copied).
    pub fn head(&mut self) -> Head {
        Head {
            seq: self.seq,
            ips: self.ips,
            ports: self.ports,
            proto: self.proto,
            macs: self.macs,
            vlan: self.vlan,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            side_packets: self.side_packets,
            side_bytes: self.side_bytes,
            client: self.client,
            protocol: self.protocol,
            tcp: std::mem::take(&mut self.tcp),
            macs_changed: std::mem::take(&mut self.macs_changed),
        }
    }

    /// The record side's copy of a flow it has not seen yet.
    pub fn mirror(slot: u32, h: &Head) -> Flow {
        let key = FlowKey {
            src: h.ips[0],
            dst: h.ips[1],
            proto: h.proto,
            sport: h.ports[0],
            dport: h.ports[1],
        };
        let mut flow = Flow::new(h.seq, &key, h.first_ts);
        flow.slot = slot;
        flow
    }

    /// The record side's copy takes what the packet side knows now.
    pub fn follow(&mut self, h: Head) {
        if h.macs_changed {
            self.forget_templates();
        }
        self.macs = h.macs;
        self.vlan = h.vlan;
        self.last_ts = h.last_ts;
        self.side_packets = h.side_packets;
        self.side_bytes = h.side_bytes;
        self.client = h.client;
        self.protocol = h.protocol;
        self.tcp.add(h.tcp);
    }

    pub fn key(&self) -> FlowKey {
        FlowKey {
            src: self.ips[0],
            dst: self.ips[1],
            proto: self.proto,
            sport: self.ports[0],
            dport: self.ports[1],
        }
    }

    pub fn transport(&self) -> &'static str {
        match self.proto {
            6 => "tcp",
            17 => "udp",
            _ => "ip",
        }
    }

    pub fn community_id(&mut self) -> &str {
        if self.cid.is_none() {
            self.cid = Some(community_id(
                &self.ips[0],
                &self.ips[1],
                self.proto,
                self.ports[0],
                self.ports[1],
            ));
        }
        self.cid.as_deref().unwrap()
    }

    pub fn ip_text(&self, side: usize) -> String {
        self.ips[side].text()
    }

    pub fn set_client(&mut self, side: usize) {
        if self.client.is_none() {
            self.client = Some(side);
        }
    }

    /// The client side, guessing that the lower port is the server's when unknown.
    pub fn client_side(&self) -> usize {
        match self.client {
            Some(c) => c,
            None => {
                if self.ports[0] >= self.ports[1] {
                    0
                } else {
                    1
                }
            }
        }
    }

    /// (client address, server address).
    pub fn ends(&self) -> (Addr, Addr) {
        let c = self.client_side();
        (self.ips[c], self.ips[1 - c])
    }

    /// The side that sent a record travelling client-to-server or back.
    pub fn sender(&self, from_client: bool) -> usize {
        let c = self.client_side();
        if from_client {
            c
        } else {
            1 - c
        }
    }

    /// The record side works on this flow itself: a MAC change makes its rendered parts
    /// stale (see `follow` for its copy).
    pub fn catch_up(&mut self) {
        if std::mem::take(&mut self.macs_changed) {
            self.forget_templates();
        }
    }

    pub fn forget_templates(&mut self) {
        self.context = None;
        self.view_macs = None;
        self.templates = None;
    }
}

#[derive(Default, Clone, Copy, Debug)]
pub struct FlowStats {
    pub created: u64,
    pub expired: u64,
    pub evicted_full: u64,
    /// flows the other side never answered, ended to keep them within their share
    pub evicted_unanswered: u64,
    pub peak: u64,
}

/// Of the table, the share flows that only one side has spoken in may hold: a flood of
/// spoofed one-packet flows ends its own flows first, not the plant's conversations, and
/// costs a quarter of the table's memory at most.
pub const UNANSWERED_SHARE: usize = 4;

/// Network-layer anomalies a flow keeps while its protocol is not known.
pub const MAX_UNREPORTED: usize = 8;

pub const TCP_IDLE: f64 = 600.0;
pub const UDP_IDLE: f64 = 120.0;
pub const CLOSED_IDLE: f64 = 30.0;

/// The live flows, by slot, and the index from either directional key to (slot, side).
pub struct FlowTable {
    pub index: FxHashMap<FlowKey, (u32, u8)>,
    pub slots: Vec<Option<Box<Flow>>>,
    free: Vec<u32>,
    pub live: usize,
    pub max_flows: usize,
    pub stats: FlowStats,
    pub last_sweep: f64,
    next_seq: u64,
    /// flows in the order they were made, while only their first side has spoken (entries
    /// of flows answered or gone since are skipped when met)
    unanswered: VecDeque<(u64, u32)>,
    pub unanswered_live: usize,
}

impl FlowTable {
    pub fn new(max_flows: usize) -> FlowTable {
        FlowTable {
            index: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            max_flows,
            stats: FlowStats::default(),
            last_sweep: 0.0,
            next_seq: 0,
            unanswered: VecDeque::new(),
            unanswered_live: 0,
        }
    }

    /// The other side of a flow spoke for the first time.
    pub fn answered(&mut self) {
        self.unanswered_live -= 1;
    }

    /// The oldest flow only one side has spoken in, when such flows hold their share of
    /// the table: the one to end before another is made.
    pub fn unanswered_victim(&mut self) -> Option<u32> {
        if self.unanswered_live < (self.max_flows / UNANSWERED_SHARE).max(1) {
            return None;
        }
        while let Some((seq, slot)) = self.unanswered.pop_front() {
            if let Some(Some(f)) = self.slots.get(slot as usize) {
                if f.seq == seq && f.side_packets[1] == 0 {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// Insert a new flow (the caller has made room).
    pub fn insert(&mut self, key: FlowKey, ts: f64) -> u32 {
        let mut flow = Box::new(Flow::new(self.next_seq, &key, ts));
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        flow.slot = slot;
        if self.unanswered.len() > 2 * self.max_flows.max(16) {
            let slots = &self.slots;
            self.unanswered.retain(|&(seq, s)| {
                matches!(slots.get(s as usize), Some(Some(f)) if f.seq == seq && f.side_packets[1] == 0)
            });
        }
        self.unanswered.push_back((flow.seq, slot));
        self.unanswered_live += 1;
        self.slots[slot as usize] = Some(flow);
        self.index.insert(key, (slot, 0));
        let rev = FlowKey {
            src: key.dst,
            dst: key.src,
            proto: key.proto,
            sport: key.dport,
            dport: key.sport,
        };
        self.index.insert(rev, (slot, 1));
        self.live += 1;
        self.stats.created += 1;
        self.stats.peak = self.stats.peak.max(self.live as u64);
        slot
    }

    /// Take a flow out of the table for good.
    pub fn remove(&mut self, slot: u32) -> Option<Box<Flow>> {
        let flow = self.slots[slot as usize].take()?;
        if flow.side_packets[1] == 0 {
            self.unanswered_live -= 1;
        }
        let key = flow.key();
        self.index.remove(&key);
        let rev = FlowKey {
            src: key.dst,
            dst: key.src,
            proto: key.proto,
            sport: key.dport,
            dport: key.sport,
        };
        self.index.remove(&rev);
        self.free.push(slot);
        self.live -= 1;
        Some(flow)
    }

    /// Slots of flows idle past their timeout, oldest created first.
    pub fn expired(&self, now: f64) -> Vec<u32> {
        let mut out: Vec<(u64, u32)> = Vec::new();
        for (i, f) in self.slots.iter().enumerate() {
            if let Some(f) = f {
                let limit = if f.closed > 0 {
                    CLOSED_IDLE
                } else if f.proto == TCP {
                    TCP_IDLE
                } else {
                    UDP_IDLE
                };
                if now - f.last_ts > limit {
                    out.push((f.seq, i as u32));
                }
            }
        }
        out.sort_unstable();
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// The least recently seen tenth of the table, for making room (a partial sort: only
    /// the victims are ordered).
    pub fn victims(&self) -> Vec<u32> {
        let mut all: Vec<(f64, u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (f.last_ts, f.seq, i as u32)))
            .collect();
        let order =
            |a: &(f64, u64, u32), b: &(f64, u64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let n = (self.max_flows / 10).max(1).min(all.len());
        if n < all.len() {
            all.select_nth_unstable_by(n, order);
            all.truncate(n);
        }
        all.sort_by(order);
        all.into_iter().map(|(_, _, s)| s).collect()
    }

    /// Every live flow, oldest created first.
    pub fn all(&self) -> Vec<u32> {
        let mut all: Vec<(u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (f.seq, i as u32)))
            .collect();
        all.sort_unstable();
        all.into_iter().map(|(_, s)| s).collect()
    }
}
