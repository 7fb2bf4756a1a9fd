//! The packet path: decode, flows, reassembly, recognition, dissection, output.
//!
//! The engine moves bytes and records. What a record means for the inventory, the graph
//! and the alerts is decided after it, never inside a dissector.

use std::collections::BTreeMap;

use crate::aggregate::Aggregates;
use crate::decode::{
    decode_arp, decode_frame, Addr, NotTransport, Transport, ACK, FIN, RST, SYN, TCP, UDP,
};
use crate::events::{Body, Event, Proto};
use crate::flows::{Flow, FlowKey, FlowStats, FlowTable, ParserState};
use crate::meaning::{describe, Use};
use crate::output::{AnomalyCount, Lines};
use crate::protocols::{is_other_protocol, Dissector, REGISTRY};
use crate::reader::Packet;
use crate::reassembly::{Chunk, ReassemblyStats, Tag, TcpStream};

/// payload chunks examined before a flow is declared "not ours"
const PROBE_TRIES: u32 = 4;
/// seconds of capture time between idle-flow sweeps
const SWEEP_EVERY: f64 = 10.0;
/// anomaly kinds counted per flow before the rest are only counted globally
const MAX_ANOMALY_KINDS: usize = 32;

#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub first_ts: Option<f64>,
    pub last_ts: Option<f64>,
    pub tcp_packets: u64,
    pub udp_packets: u64,
    pub arp_packets: u64,
    pub not_ip: u64,
    pub invalid: u64,
    pub ip_fragments: u64,
    pub other_ip: u64,
    pub unrecognised_on_ot_port: u64,
    /// records handed to Python (steady traffic should not be)
    pub crossed: u64,
    pub pdus: BTreeMap<Proto, u64>,
    /// parse anomalies by (protocol, kind): named "protocol.kind" only when reported
    pub anomalies: BTreeMap<(&'static str, &'static str), u64>,
    /// what parsed PDUs carried wrong, by (protocol, kind)
    pub pdu_anomalies: BTreeMap<(&'static str, &'static str), u64>,
    pub linktypes_unknown: u64,
}

pub struct Config {
    pub max_flows: usize,
    /// hand every record to Python (the policy still reads them one by one)
    pub cross_all: bool,
    /// the learning window: reading pauses once it closes, so Python can fold what was
    /// learned into the baseline at that point of the capture
    pub learn_for: Option<f64>,
}

/// How a flow looked when its last record crossed to Python.
pub type ViewKey = (
    [Option<[u8; 6]>; 2],
    i32,
    Option<usize>,
    Option<crate::protocols::Kind>,
);

/// The policy's role of a host (as the aggregates hold it) at a capture time: (role,
/// until when it stands unless the host changes).
pub type RoleSource = dyn Fn(&Aggregates, &Addr, f64) -> (crate::rules::Val, f64) + Send + Sync;

/// What the core found about a record that crosses into Python.
#[derive(Default)]
pub struct Found {
    /// findings of core rules first seen on this record: (rule, key)
    pub hits: Vec<crate::rules::Hit>,
    /// the record's request index in its connection
    pub request_index: u64,
    /// requests in the rate window, when this one went over the learned rate
    pub rate: Option<u64>,
    /// what the record does (decided once, when it was parsed)
    pub meaning: Option<crate::meaning::Use>,
    /// written values the baseline did not see
    pub values: Vec<crate::watch::ValueDeviation>,
}

/// What crosses into Python: records the policy must see, and ARP claims.
pub enum Fact {
    Event {
        flow: u64,
        view: Option<Box<FlowSnapshot>>,
        ts: f64,
        frame: u64,
        ev: Box<Event>,
        found: Found,
    },
    /// a silence check is due: the time, and the last request of learned cyclic edges
    Tick {
        now: f64,
        last: Vec<(crate::watch::EdgeRef, f64)>,
    },
    Arp {
        mac: [u8; 6],
        ip: [u8; 4],
        ts: f64,
    },
    /// a flow's MACs changed after its last record crossed: documents show the new ones
    View {
        flow: u64,
        view: Box<FlowSnapshot>,
    },
    /// a window of connection attempts crossed the flood or scan line
    Probe(crate::probes::Probe),
    /// a device stopped answering, or answers again
    Availability(crate::availability::Change),
}

pub struct Engine {
    pub stats: Stats,
    pub reassembly: ReassemblyStats,
    pub flows: FlowTable,
    frame: u64,
    now: f64,
    pub events: Option<Lines>,
    pub anomalies: Option<Lines>,
    /// `,"observer":{..},"labels":{..}`: the sensor, in every line written (empty: none)
    pub stamp: Vec<u8>,
    pub io_error: Option<String>,
    scratch: Vec<Event>,
    chunks: Vec<Chunk>,
    pub aggregates: Aggregates,
    pub values: crate::values::Values,
    pub availability: crate::availability::Availability,
    pub probes: crate::probes::Probes,
    probe_reports: Vec<crate::probes::Probe>,
    pub matcher: crate::rules::Matcher,
    pub watch: crate::watch::Watch,
    pub facts: Vec<Fact>,
    cross_all: bool,
    learn_for: Option<f64>,
    /// time of the first record (PDU, anomaly, ARP claim): the learning window starts there
    pub first_record: Option<f64>,
    /// the learning window closed at the last packet: the caller stops reading there
    pub paused: bool,
    /// the policy's role of a host, for rules that ask (Python's inventory)
    pub role_source: Option<Box<RoleSource>>,
    /// when it closed (until the caller takes it)
    pub pause_ts: Option<f64>,
}

/// The flow fields Python's documents and policy read.
pub struct FlowSnapshot {
    pub ips: [String; 2],
    pub ports: [u16; 2],
    pub proto: u8,
    pub macs: [Option<[u8; 6]>; 2],
    pub vlan: i32,
    pub client: Option<usize>,
    pub protocol: Option<&'static str>,
    pub community_id: String,
}

impl Engine {
    pub fn new(cfg: Config) -> Engine {
        Engine {
            stats: Stats::default(),
            reassembly: ReassemblyStats::default(),
            flows: FlowTable::new(cfg.max_flows.max(1)),
            frame: 0,
            now: 0.0,
            events: None,
            anomalies: None,
            stamp: Vec::new(),
            io_error: None,
            scratch: Vec::new(),
            chunks: Vec::new(),
            aggregates: Aggregates::default(),
            values: crate::values::Values::default(),
            availability: crate::availability::Availability::default(),
            probes: crate::probes::Probes::default(),
            probe_reports: Vec::new(),
            matcher: crate::rules::Matcher::default(),
            watch: crate::watch::Watch::default(),
            facts: Vec::new(),
            cross_all: cfg.cross_all,
            learn_for: cfg.learn_for,
            first_record: None,
            paused: false,
            role_source: None,
            pause_ts: None,
        }
    }

    pub fn flow_stats(&self) -> FlowStats {
        self.flows.stats
    }

    /// One packet of a capture or of the live ring; false when the learning window closed
    /// with it (stop reading, let Python take the baseline, then go on).
    pub fn packet(&mut self, pkt: Packet<'_>) -> bool {
        self.process(pkt);
        if let (Some(window), Some(first)) = (self.learn_for, self.first_record) {
            if pkt.ts >= first + window {
                self.learn_for = None;
                self.paused = true;
                self.pause_ts = Some(pkt.ts);
                self.watch.forget_seen(); // protecting: what is new is reported from here
                return false;
            }
        }
        true
    }

    fn process(&mut self, pkt: Packet<'_>) {
        let st = &mut self.stats;
        st.packets += 1;
        st.bytes += pkt.wirelen as u64;
        self.frame += 1;
        let ts = pkt.ts;
        if ts > self.now {
            self.now = ts;
            if st.first_ts.is_none() {
                st.first_ts = Some(ts);
            }
            if ts - self.flows.last_sweep > SWEEP_EVERY {
                if self.flows.last_sweep != 0.0 {
                    self.sweep(ts);
                } else {
                    self.flows.last_sweep = ts;
                }
            }
        }
        if !crate::decode::supported(pkt.linktype) {
            self.stats.linktypes_unknown += 1;
        }
        let (link, t) = match decode_frame(pkt.linktype, pkt.data) {
            Ok(v) => v,
            Err(reason) => {
                let st = &mut self.stats;
                match reason {
                    NotTransport::Arp(off) => {
                        st.arp_packets += 1;
                        if let Some((mac, ip)) = decode_arp(pkt.data, off) {
                            self.aggregates.on_arp(mac, ip, ts);
                            if ip != [0; 4] && self.first_record.is_none() {
                                self.started(ts);
                            }
                            if (self.cross_all || self.watch.on) && ip != [0; 4] {
                                self.facts.push(Fact::Arp { mac, ip, ts });
                            }
                        }
                    }
                    NotTransport::NotIp => st.not_ip += 1,
                    NotTransport::Invalid => st.invalid += 1,
                    NotTransport::Fragment => st.ip_fragments += 1,
                    NotTransport::OtherIp => st.other_ip += 1,
                }
                return;
            }
        };
        let key = FlowKey {
            src: t.src,
            dst: t.dst,
            proto: t.proto,
            sport: t.sport,
            dport: t.dport,
        };
        let (slot, side) = match self.flows.index.get(&key).copied() {
            None => (self.create(key, ts), 0usize),
            Some((slot, side)) => {
                let reuse = t.proto == TCP
                    && t.flags & SYN != 0
                    && t.flags & ACK == 0
                    && self.flows.slots[slot as usize].as_ref().unwrap().closed > 0;
                if reuse {
                    self.end(slot); // port reuse: a new connection
                    (self.create(key, ts), 0)
                } else {
                    (slot, side as usize)
                }
            }
        };
        let mut flow = self.flows.slots[slot as usize].take().unwrap();
        flow.side_packets[side] += 1;
        flow.side_bytes[side] += pkt.wirelen as u64;
        flow.last_ts = ts;
        if link.src_mac.len() == 6 {
            let smac: [u8; 6] = link.src_mac.try_into().unwrap();
            match flow.macs[side] {
                None => {
                    flow.macs[side] = Some(smac);
                    flow.macs[1 - side] = link.dst_mac.try_into().ok();
                    flow.vlan = link.vlan;
                }
                Some(known) if known != smac => {
                    // the same address now answers from another MAC
                    flow.macs[side] = Some(smac);
                    flow.forget_templates();
                }
                _ => {}
            }
        }
        if t.proto == TCP {
            self.stats.tcp_packets += 1;
            self.tcp(&mut flow, side, ts, &t, pkt.data);
        } else if t.proto == UDP {
            self.stats.udp_packets += 1;
            if t.pend > t.pstart {
                self.udp(&mut flow, side, ts, &pkt.data[t.pstart..t.pend]);
            }
        }
        self.flows.slots[slot as usize] = Some(flow);
    }

    /// A PDU parsed with something wrong in it: counted and aggregated like the framing
    /// anomalies (the PDU itself is still a record).
    fn count_pdu_anomalies(&mut self, flow: &mut Flow, ev: &Event, ts: f64) {
        let family = match ev.protocol() {
            Proto::S7commPlus => Proto::S7comm,
            p => p,
        };
        for &kind in ev.pdu_anomalies() {
            *self
                .stats
                .pdu_anomalies
                .entry((family.name(), kind))
                .or_insert(0) += 1;
            count_anomaly(flow, family, kind, ev.from_client, ts, || {
                format!(
                    "in a PDU (function {})",
                    crate::meaning::code(ev).unwrap_or(0)
                )
            });
        }
    }

    /// What a record adds to the operations view, from its flow alone: a request (and the
    /// ones given up as unanswered), or an answer with its response time.
    fn answer_op(flow: &mut Flow, ev: &Event, ts: f64) -> Option<crate::metrics::Op> {
        use crate::metrics::{Op, MAX_WAITING};
        if ev.is_request() {
            let mut dropped = 0;
            if ev.txn != 0 {
                if flow.asked.len() >= MAX_WAITING {
                    flow.asked.remove(0);
                    dropped = 1;
                }
                flow.asked.push((ev.txn, ts));
            }
            return Some(Op::Request { dropped });
        }
        let req = ev.req.as_ref()?;
        let asked = flow.asked.iter().position(|(t, _)| *t == req.txn);
        let latency = asked.map(|i| ts - flow.asked.remove(i).1);
        Some(Op::Answer {
            latency,
            accepted: req.accepted,
        })
    }

    fn report_probes(&mut self) {
        self.facts
            .extend(self.probe_reports.drain(..).map(Fact::Probe));
    }

    fn create(&mut self, key: FlowKey, ts: f64) -> u32 {
        if self.flows.live >= self.flows.max_flows {
            self.make_room(ts);
        }
        self.flows.insert(key, ts)
    }

    fn make_room(&mut self, now: f64) {
        self.sweep(now);
        if self.flows.live < self.flows.max_flows {
            return;
        }
        for slot in self.flows.victims() {
            self.flows.stats.evicted_full += 1;
            self.end(slot);
        }
    }

    /// End flows idle past their timeout.
    pub fn sweep(&mut self, now: f64) {
        self.flows.last_sweep = now;
        for slot in self.flows.expired(now) {
            self.flows.stats.expired += 1;
            self.end(slot);
        }
    }

    fn tcp(&mut self, flow: &mut Flow, side: usize, ts: f64, t: &Transport, data: &[u8]) {
        let flags = t.flags;
        let not_ours = matches!(flow.parser, ParserState::NotOurs);
        if flags & SYN != 0 {
            if flags & ACK == 0 {
                flow.set_client(side);
                if flow.side_packets[0] + flow.side_packets[1] == 1 {
                    self.probes.syn(
                        flow.ips[side],
                        flow.ips[1 - side],
                        flow.ports[1 - side],
                        ts,
                        &mut self.probe_reports,
                    );
                    self.report_probes();
                }
            } else if flow.client.is_none() {
                flow.set_client(1 - side);
            }
            if !not_ours {
                streams(flow)[side].syn(t.seq);
            }
        }
        if flags & (FIN | RST) != 0 {
            flow.closed += 1;
        }
        if not_ours {
            return;
        }
        Self::tcp_health(flow, side, t);
        if flow.streams.is_some() && flags & ACK != 0 {
            let peer = &mut flow.streams.as_mut().unwrap()[1 - side];
            if peer.has_pending() {
                let mut chunks = std::mem::take(&mut self.chunks);
                peer.ack(&mut self.reassembly, t.ack, &mut chunks);
                if !chunks.is_empty() {
                    self.deliver(flow, 1 - side, &mut chunks);
                }
                self.chunks = chunks;
            } else {
                peer.acked = Some(t.ack);
            }
        }
        if t.pend > t.pstart {
            let payload = &data[t.pstart..t.pend];
            let active = matches!(flow.parser, ParserState::Active(_));
            let stream = &mut streams(flow)[side];
            let steady = stream.next_seq == Some(t.seq) && !stream.has_pending();
            if steady && active {
                // the steady state: the next in-order segment of a dissected stream
                stream.next_seq = Some(t.seq.wrapping_add(payload.len() as u32));
                let from_client = Some(side) == flow.client;
                let mut events = std::mem::take(&mut self.scratch);
                guarded(flow, from_client, &mut events, |p, out| {
                    p.feed(payload, from_client, false, out)
                });
                if !events.is_empty() {
                    self.emit(flow, ts, self.frame, &mut events);
                }
                self.scratch = events;
                return;
            }
            let mut chunks = std::mem::take(&mut self.chunks);
            let tag = Tag {
                ts,
                frame: self.frame,
            };
            streams(flow)[side].add(&mut self.reassembly, t.seq, payload, tag, &mut chunks);
            if !chunks.is_empty() {
                self.deliver(flow, side, &mut chunks);
            }
            self.chunks = chunks;
        }
    }

    fn deliver(&mut self, flow: &mut Flow, side: usize, chunks: &mut Vec<Chunk>) {
        let mut events = std::mem::take(&mut self.scratch);
        for chunk in chunks.drain(..) {
            if matches!(flow.parser, ParserState::NotOurs) {
                break;
            }
            let mut gap = chunk.gap;
            if matches!(flow.parser, ParserState::Unknown) {
                if !self.identify(flow, side, &chunk.data, true) {
                    continue;
                }
                if matches!(flow.parser, ParserState::NotOurs) {
                    break;
                }
                gap = gap || flow.probe_tries > 1;
            }
            let from_client = Some(side) == flow.client;
            guarded(flow, from_client, &mut events, |p, out| {
                p.feed(&chunk.data, from_client, gap, out)
            });
            if !events.is_empty() {
                self.emit(flow, chunk.tag.ts, chunk.tag.frame, &mut events);
            }
        }
        chunks.clear();
        self.scratch = events;
    }

    fn udp(&mut self, flow: &mut Flow, side: usize, ts: f64, data: &[u8]) {
        match flow.parser {
            ParserState::NotOurs => return,
            ParserState::Unknown => {
                if !self.identify(flow, side, data, false)
                    || matches!(flow.parser, ParserState::NotOurs)
                {
                    return;
                }
            }
            ParserState::Active(_) => {}
        }
        let from_client = Some(side) == flow.client;
        let mut events = std::mem::take(&mut self.scratch);
        guarded(flow, from_client, &mut events, |p, out| {
            p.feed_datagram(data, from_client, out)
        });
        if !events.is_empty() {
            self.emit(flow, ts, self.frame, &mut events);
        }
        self.scratch = events;
    }

    /// Attach a dissector when the flow is recognised (true), or mark it as never going
    /// to be (true, NotOurs); false: not decided yet.
    fn identify(&mut self, flow: &mut Flow, side: usize, data: &[u8], tcp: bool) -> bool {
        flow.probe_tries += 1;
        let mut by_port = None;
        let mut server_side = None;
        for s in [1 - side, side] {
            if let Some(k) = Dissector::by_port(tcp, flow.ports[s]) {
                by_port = Some(k);
                server_side = Some(s);
                break;
            }
        }
        let mut chosen = None;
        match by_port {
            Some(k) if (k.looks_like)(data, false) => chosen = Some(k),
            Some(_) => {}
            None => {
                for k in &REGISTRY {
                    if (k.looks_like)(data, true) {
                        chosen = Some(k);
                        server_side = Some(match flow.client {
                            None => 1 - side,
                            Some(c) => 1 - c,
                        });
                        break;
                    }
                }
            }
        }
        let Some(kind) = chosen else {
            if is_other_protocol(data) || flow.probe_tries >= PROBE_TRIES {
                if by_port.is_some() {
                    self.stats.unrecognised_on_ot_port += 1;
                }
                flow.parser = ParserState::NotOurs;
                flow.streams = None;
                return true;
            }
            return false;
        };
        if flow.client.is_none() {
            if let Some(s) = server_side {
                flow.set_client(1 - s);
            }
        }
        flow.protocol = Some(kind);
        flow.parser = ParserState::Active((kind.parser)());
        true
    }

    fn emit(&mut self, flow: &mut Flow, ts: f64, frame: u64, events: &mut Vec<Event>) {
        if self.first_record.is_none() && !events.is_empty() {
            self.started(ts);
        }
        if flow.view_macs.is_none() {
            flow.view_macs = Some(flow.macs);
        }
        for ev in events.drain(..) {
            if self.watch.on {
                if let Some(last) = self.watch.tick(ts) {
                    self.facts.push(Fact::Tick { now: ts, last });
                }
            }
            let meaning = if let Body::Anomaly(a) = &ev.body {
                *self
                    .stats
                    .anomalies
                    .entry((a.protocol.name(), a.kind))
                    .or_insert(0) += 1;
                count_anomaly(flow, a.protocol, a.kind, ev.from_client, ts, || {
                    a.detail.clone()
                });
                None
            } else {
                *self.stats.pdus.entry(ev.protocol()).or_insert(0) += 1;
                if !ev.pdu_anomalies().is_empty() {
                    self.count_pdu_anomalies(flow, &ev, ts);
                }
                if let Some(lines) = &mut self.events {
                    if let Err(e) = lines.pdu(flow, &ev, ts, &self.stamp) {
                        self.io_error.get_or_insert(format!("events.ndjson: {e}"));
                    }
                }
                let meaning = describe(&ev);
                let op = Self::answer_op(flow, &ev, ts);
                self.availability(flow, &ev, ts);
                self.aggregates
                    .on_event(flow, &ev, meaning.as_ref(), ts, op);
                if !ev.points.is_empty() {
                    self.process_values(flow, &ev, meaning.as_ref(), ts);
                }
                meaning
            };
            self.decide(flow, ts, frame, ev, meaning);
        }
    }

    /// A connection's TCP health for the operations view (flows otsec dissects, or may).
    fn tcp_health(flow: &mut Flow, side: usize, t: &Transport) {
        let flags = t.flags;
        let h = &mut flow.tcp;
        if flags & SYN != 0 && flags & ACK == 0 {
            h.connections += 1;
        }
        if flags & RST != 0 {
            h.resets += 1;
        } else if t.window == 0 && flags & (SYN | FIN) == 0 && flags & ACK != 0 {
            h.zero_windows += 1;
        }
        if t.pend > t.pstart {
            let next = flow.streams.as_ref().and_then(|s| s[side].next_seq);
            if next.is_some_and(|n| n.wrapping_sub(t.seq) as i32 > 0) {
                h.retransmissions += 1; // starts before what the stream already has
            }
        }
    }

    /// Who answers: a request that expects an answer, or anything the device sends (the
    /// server end of the flow).
    fn availability(&mut self, flow: &mut Flow, ev: &Event, ts: f64) {
        let request = ev.is_request();
        if (request && ev.txn == 0) || (!request && ev.from_client) {
            return;
        }
        let a = &mut self.availability;
        let proto = ev.protocol();
        let slot = match flow.device {
            Some((p, slot)) if p == proto => slot,
            _ => {
                let Some(slot) = a.slot(flow.ends().1, proto) else {
                    return;
                };
                flow.device = Some((proto, slot));
                slot
            }
        };
        if request {
            a.request(slot, ts);
        } else {
            a.answer(slot, ts);
        }
        if !a.changes.is_empty() {
            self.facts
                .extend(a.changes.drain(..).map(Fact::Availability));
        }
    }

    /// Values written into or read from the device at the flow's server end.
    fn process_values(&mut self, flow: &Flow, ev: &Event, u: Option<&Use>, ts: f64) {
        let (writer, device) = flow.ends();
        let unit = u.and_then(|u| u.unit).unwrap_or(0);
        if ev.is_request() {
            self.values
                .write(device, ev.protocol(), unit, writer, &ev.points, ts);
        } else {
            self.values
                .read(device, ev.protocol(), unit, &ev.points, ts);
        }
    }

    /// The first record (or ARP claim): the learning window starts, and with it the phase
    /// findings are told apart by (learning, then protecting).
    fn started(&mut self, ts: f64) {
        self.first_record = Some(ts);
        if let Some(window) = self.learn_for {
            let from = &mut self.matcher.context.protect_from;
            if *from == Some(f64::INFINITY) {
                *from = Some(ts + window);
            }
            let b = &mut self.matcher.boundaries;
            let at = b.partition_point(|&x| x <= ts + window);
            b.insert(at, ts + window);
        }
    }

    /// Roles Python decided stand until what decides them changes.
    fn roles_changed(&mut self) {
        if self.aggregates.role_inputs.is_empty() {
            return; // every record asks: the usual answer is nothing
        }
        for ip in self.aggregates.role_inputs.drain(..) {
            self.matcher.context.forget_role(&ip);
        }
    }

    /// Rules ask for roles: the inventory notes the hosts whose role may change.
    pub fn track_roles(&mut self) {
        self.aggregates.track_roles = self.matcher.asks_roles();
        self.aggregates.role_inputs.clear();
    }

    /// A baseline is in use: rules see it learning until the learning window closes (from
    /// the first record), protecting after. Set once: reloads do not move the window.
    pub fn baseline_in_use(&mut self) {
        let ctx = &mut self.matcher.context;
        if ctx.protect_from.is_none() {
            ctx.protect_from = Some(match (self.learn_for, self.first_record) {
                (Some(window), Some(first)) => first + window,
                (Some(_), None) => f64::INFINITY, // set by the first record
                (None, _) => f64::NEG_INFINITY,
            });
        }
    }

    /// Does this record cross into Python? Everything does with `cross_all` (the baseline
    /// reads every record); otherwise what a rule found first, what a passthrough rule may
    /// match, identities, and the answers to requests that crossed.
    fn decide(
        &mut self,
        flow: &mut Flow,
        ts: f64,
        frame: u64,
        ev: Event,
        meaning: Option<crate::meaning::Use>,
    ) {
        const MAX_OPEN: usize = 512;
        let request = ev.is_request() && !matches!(ev.body, Body::Anomaly(_));
        if request {
            flow.requests += 1;
        }
        let mut cross = self.cross_all;
        let mut hits = Vec::new();
        if !self.matcher.is_empty() {
            self.roles_changed();
            let (agg, source) = (&self.aggregates, &self.role_source);
            let mut ask = |ip: &Addr, ts: f64| match source {
                Some(policy) => policy(agg, ip, ts),
                None => (crate::rules::Val::None, f64::INFINITY),
            };
            let v = self
                .matcher
                .evaluate(flow, &ev, ts, flow.requests, &mut ask);
            cross |= v.candidate || !v.hits.is_empty();
            hits = v.hits;
            if !v.repeats.is_empty() {
                if flow.repeated.len() >= MAX_OPEN {
                    flow.repeated.remove(0);
                }
                flow.repeated.push((ev.txn, v.repeats));
            }
        }
        if let Some(r) = &ev.req {
            if let Some(i) = flow.repeated.iter().position(|(t, _)| *t == r.txn) {
                let (_, keys) = flow.repeated.remove(i);
                let reason = if r.accepted {
                    None // why is asked only of a refusal
                } else {
                    crate::rules::reason(&ev)
                };
                self.matcher.settle(&keys, r.accepted, reason);
            }
            if let Some(i) = flow.crossed.iter().position(|&t| t == r.txn) {
                flow.crossed.remove(i);
                cross = true;
            }
        }
        cross |= ev.body.record().is_some_and(|r| r.identifies());
        let mut rate = None;
        let mut values = Vec::new();
        if let (true, Some(u)) = (self.watch.on, &meaning) {
            let (new, over) = self.watch.observe(flow, &ev, u, ts);
            cross |= new || over.is_some();
            rate = over;
            if request && !ev.points.is_empty() {
                let (writer, device) = flow.ends();
                values = self.watch.check_writes(
                    device,
                    ev.protocol(),
                    u.unit.unwrap_or(0),
                    writer,
                    &ev.points,
                );
                cross |= !values.is_empty();
            }
        }
        if !cross {
            return;
        }
        if ev.txn != 0 {
            if flow.crossed.len() >= MAX_OPEN {
                flow.crossed.remove(0);
            }
            flow.crossed.push(ev.txn);
        }
        let found = Found {
            hits,
            request_index: flow.requests,
            rate,
            meaning,
            values,
        };
        self.cross(flow, ts, frame, ev, found);
    }

    /// Hand a record to Python, with the flow's view when Python has not seen it as is.
    fn cross(&mut self, flow: &mut Flow, ts: f64, frame: u64, ev: Event, found: Found) {
        let view = changed_view(flow);
        self.stats.crossed += 1;
        self.facts.push(Fact::Event {
            flow: flow.seq,
            view,
            ts,
            frame,
            ev: Box::new(ev),
            found,
        });
    }

    /// A flow leaves the table: what waits behind holes is parsed, anomalies are written.
    pub fn end(&mut self, slot: u32) {
        let Some(mut flow) = self.flows.remove(slot) else {
            return;
        };
        if flow.streams.is_some() && matches!(flow.parser, ParserState::Active(_)) {
            for side in 0..2 {
                let mut chunks = std::mem::take(&mut self.chunks);
                flow.streams.as_mut().unwrap()[side].flush(&mut self.reassembly, &mut chunks);
                if !chunks.is_empty() {
                    self.deliver(&mut flow, side, &mut chunks);
                }
                self.chunks = chunks;
            }
        }
        if let Some(streams) = flow.streams.as_mut() {
            for s in streams.iter_mut() {
                s.release(&mut self.reassembly);
            }
        }
        self.aggregates.on_flow_end(&mut flow);
        self.roles_changed();
        if flow.sent_view.is_some() {
            if let Some(view) = changed_view(&mut flow) {
                self.facts.push(Fact::View {
                    flow: flow.seq,
                    view,
                });
            }
        }
        if let Some(lines) = &mut self.anomalies {
            for agg in std::mem::take(&mut flow.anomalies) {
                if let Err(e) = lines.anomaly(&mut flow, &agg, &self.stamp) {
                    self.io_error
                        .get_or_insert(format!("anomalies.ndjson: {e}"));
                }
            }
        }
    }

    /// Everything written so far reaches the files (the live sensor calls it every flush).
    pub fn flush(&mut self) {
        for lines in [&mut self.events, &mut self.anomalies]
            .into_iter()
            .flatten()
        {
            if let Err(e) = lines.flush() {
                self.io_error.get_or_insert(format!("output: {e}"));
            }
        }
    }

    /// Flush every open flow; the counters then hold the final state.
    pub fn finish(&mut self) {
        for slot in self.flows.all() {
            self.end(slot);
        }
        self.probes.close(&mut self.probe_reports, None);
        self.report_probes();
        self.aggregates.finish_metrics();
        self.stats.last_ts = if self.now != 0.0 {
            Some(self.now)
        } else {
            None
        };
        self.flush();
    }
}

/// The flow as documents show it, when that changed since the last record crossed.
fn changed_view(flow: &mut Flow) -> Option<Box<FlowSnapshot>> {
    let macs = flow.view_macs.unwrap_or(flow.macs);
    let now: ViewKey = (macs, flow.vlan, flow.client, flow.protocol);
    if flow.sent_view == Some(now) {
        return None;
    }
    flow.sent_view = Some(now);
    Some(Box::new(FlowSnapshot {
        ips: [flow.ip_text(0), flow.ip_text(1)],
        ports: flow.ports,
        proto: flow.proto,
        macs,
        vlan: flow.vlan,
        client: flow.client,
        protocol: flow.protocol.map(|k| k.name()),
        community_id: flow.community_id().to_string(),
    }))
}

/// Run the flow's dissector; should it ever panic, the process goes on: the failure is
/// an anomaly and the flow is no longer parsed.
fn guarded(
    flow: &mut Flow,
    from_client: bool,
    out: &mut Vec<Event>,
    feed: impl FnOnce(&mut crate::protocols::Parser, &mut Vec<Event>),
) {
    let ParserState::Active(parser) = &mut flow.parser else {
        return;
    };
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| feed(parser, out)));
    if done.is_err() {
        let proto = flow.protocol.map_or(Proto::Modbus, |k| k.proto);
        let detail = "the dissector failed on this flow; it is no longer parsed".to_string();
        out.push(Event::anomaly(
            from_client,
            proto,
            "dissector_failure",
            detail,
        ));
        flow.parser = ParserState::NotOurs;
        flow.streams = None;
    }
}

fn streams(flow: &mut Flow) -> &mut [TcpStream; 2] {
    flow.streams.get_or_insert_with(Default::default)
}

/// One anomaly more on its flow, aggregated per protocol and kind (the detail of the
/// first one is kept; it is only made for that one).
fn count_anomaly(
    flow: &mut Flow,
    protocol: Proto,
    kind: &'static str,
    from_client: bool,
    ts: f64,
    detail: impl FnOnce() -> String,
) {
    if let Some(agg) = flow
        .anomalies
        .iter_mut()
        .find(|x| x.first.kind == kind && x.first.protocol == protocol)
    {
        agg.count += 1;
        agg.last_ts = agg.last_ts.max(ts);
        return;
    }
    if flow.anomalies.len() < MAX_ANOMALY_KINDS {
        flow.anomalies.push(AnomalyCount {
            first: crate::events::Anomaly {
                protocol,
                kind,
                detail: detail(),
            },
            from_client,
            count: 1,
            first_ts: ts,
            last_ts: ts,
        });
    }
}
