//! The record side of the core: what the dissected records add to the aggregates, the
//! process values, the availability of devices, the rules and the baseline's watch; the
//! lines written for them; and the facts handed to Python.
//!
//! The packet side hands it, in capture order, each packet's records and the ends of
//! flows, ARP claims and probe reports. In one mode it takes them at once, working on the
//! packet side's flows; in the other it keeps a copy of each flow that follows the packet
//! side's through the `Head` sent with its records (`Batch`), and runs on a thread of its
//! own while the engine reads (see `Engine::threads`). Both give the same results.

use crate::aggregate::Aggregates;
use crate::decode::Addr;
use crate::events::{Body, Event, Proto};
use crate::flows::{Flow, Head};
use crate::meaning::{describe, Use};
use crate::output::{AnomalyCount, Lines};

/// anomaly kinds counted per flow before the rest are only counted globally
const MAX_ANOMALY_KINDS: usize = 32;

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

/// What the packet side sends the record side, in capture order.
pub enum Msg {
    /// the next `count` records of the batch, parsed from the packet at (`ts`, `frame`)
    Records {
        slot: u32,
        head: Head,
        ts: f64,
        frame: u64,
        count: u32,
    },
    /// the flow left the table (its last records were sent before)
    End {
        slot: u32,
        head: Head,
    },
    Arp {
        mac: [u8; 6],
        ip: [u8; 4],
        ts: f64,
    },
    Probe(crate::probes::Probe),
    /// `server` answered a SYN of `client` to `port` with a reset
    Refused {
        client: Addr,
        server: Addr,
        port: u16,
        ts: f64,
    },
    /// the learning window closed: protecting from here
    Pause,
}

/// Messages and the records they carry, moved between the sides as one. The record side
/// reads the records in place and leaves them: the packet side frees them (memory goes
/// back to the thread that made it; freeing it on the other costs a lock per block).
#[derive(Default)]
pub struct Batch {
    pub msgs: Vec<Msg>,
    pub records: Vec<Event>,
}

/// Counters of the record side (the summary shows them with the engine's `Stats`).
#[derive(Default, Debug, Clone)]
pub struct Counts {
    /// records handed to Python (steady traffic should not be)
    pub crossed: u64,
    pub pdus: std::collections::BTreeMap<Proto, u64>,
    /// parse anomalies by (protocol, kind): named "protocol.kind" only when reported
    pub anomalies: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    /// what parsed PDUs carried wrong, by (protocol, kind)
    pub pdu_anomalies: std::collections::BTreeMap<(&'static str, &'static str), u64>,
}

#[derive(Default)]
pub struct Ledger {
    pub counts: Counts,
    pub events: Option<Lines>,
    pub anomalies: Option<Lines>,
    /// `,"observer":{..},"labels":{..}`: the sensor, in every line written (empty: none)
    pub stamp: Vec<u8>,
    pub io_error: Option<String>,
    pub aggregates: Aggregates,
    pub values: crate::values::Values,
    pub availability: crate::availability::Availability,
    pub matcher: crate::rules::Matcher,
    pub watch: crate::watch::Watch,
    pub facts: Vec<Fact>,
    pub cross_all: bool,
    pub learn_for: Option<f64>,
    /// time of the first record (PDU, anomaly, ARP claim): the learning window starts there
    pub first_record: Option<f64>,
    /// the policy's role of a host, for rules that ask (Python's inventory)
    pub role_source: Option<Box<RoleSource>>,
    /// the record side's copy of each flow with records, by slot
    flows: Vec<Option<Box<Flow>>>,
}

impl Ledger {
    pub fn new(cross_all: bool, learn_for: Option<f64>) -> Ledger {
        Ledger {
            cross_all,
            learn_for,
            ..Ledger::default()
        }
    }

    /// Take in a batch: its messages are taken, its records read (left to the caller).
    pub fn apply(&mut self, batch: &mut Batch) {
        if batch.msgs.is_empty() {
            return;
        }
        let mut records = batch.records.iter();
        for msg in batch.msgs.drain(..) {
            match msg {
                Msg::Records {
                    slot,
                    head,
                    ts,
                    frame,
                    count,
                } => {
                    let mut flow = self.flow(slot, head);
                    let these = (&mut records).take(count as usize);
                    self.emit(&mut flow, ts, frame, these);
                    self.flows[slot as usize] = Some(flow);
                }
                Msg::End { slot, head } => {
                    let mut flow = self.flow(slot, head);
                    self.end(&mut flow);
                }
                Msg::Arp { mac, ip, ts } => self.arp(mac, ip, ts),
                Msg::Probe(p) => self.facts.push(Fact::Probe(p)),
                Msg::Refused {
                    client,
                    server,
                    port,
                    ts,
                } => {
                    self.availability.refused(client, server, port, ts);
                    self.availability_changes();
                }
                Msg::Pause => self.watch.forget_seen(),
            }
        }
    }

    /// The copy of the flow in `slot`, brought up to date (a new one for a new flow).
    fn flow(&mut self, slot: u32, head: Head) -> Box<Flow> {
        let i = slot as usize;
        if self.flows.len() <= i {
            self.flows.resize_with(i + 1, || None);
        }
        let mut flow = match self.flows[i].take() {
            Some(f) if f.seq == head.seq => f,
            _ => Box::new(Flow::mirror(slot, &head)),
        };
        flow.follow(head);
        flow
    }

    fn arp(&mut self, mac: [u8; 6], ip: [u8; 4], ts: f64) {
        self.aggregates.on_arp(mac, ip, ts);
        if ip == [0; 4] {
            return;
        }
        if self.first_record.is_none() {
            self.started(ts);
        }
        if self.cross_all || self.watch.on {
            self.facts.push(Fact::Arp { mac, ip, ts });
        }
    }

    /// A flow left the table: its counts go to hosts and edges, its anomalies are written.
    pub(crate) fn end(&mut self, flow: &mut Flow) {
        self.aggregates.on_flow_end(flow);
        self.roles_changed();
        if flow.sent_view.is_some() {
            if let Some(view) = changed_view(flow) {
                self.facts.push(Fact::View {
                    flow: flow.seq,
                    view,
                });
            }
        }
        if let Some(lines) = &mut self.anomalies {
            for agg in std::mem::take(&mut flow.anomalies) {
                if let Err(e) = lines.anomaly(flow, &agg, &self.stamp) {
                    self.io_error
                        .get_or_insert(format!("anomalies.ndjson: {e}"));
                }
            }
        }
    }

    /// The end of the input: every edge's current minute closes; the files are flushed.
    pub fn finish(&mut self) {
        self.aggregates.finish_metrics();
        self.flush();
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
                .counts
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

    /// The records of one packet.
    pub(crate) fn emit<'a>(
        &mut self,
        flow: &mut Flow,
        ts: f64,
        frame: u64,
        events: impl Iterator<Item = &'a Event>,
    ) {
        if self.first_record.is_none() {
            self.started(ts);
        }
        if flow.view_macs.is_none() {
            flow.view_macs = Some(flow.macs);
        }
        for ev in events {
            if self.watch.on {
                if let Some(last) = self.watch.tick(ts) {
                    self.facts.push(Fact::Tick { now: ts, last });
                }
            }
            let meaning = if let Body::Anomaly(a) = &ev.body {
                *self
                    .counts
                    .anomalies
                    .entry((a.protocol.name(), a.kind))
                    .or_insert(0) += 1;
                count_anomaly(flow, a.protocol, a.kind, ev.from_client, ts, || {
                    a.detail.clone()
                });
                None
            } else {
                *self.counts.pdus.entry(ev.protocol()).or_insert(0) += 1;
                if !ev.pdu_anomalies().is_empty() {
                    self.count_pdu_anomalies(flow, ev, ts);
                }
                if let Some(lines) = &mut self.events {
                    if let Err(e) = lines.pdu(flow, ev, ts, &self.stamp) {
                        self.io_error.get_or_insert(format!("events.ndjson: {e}"));
                    }
                }
                let meaning = describe(ev);
                let op = Self::answer_op(flow, ev, ts);
                self.availability(flow, ev, ts);
                self.aggregates.on_event(flow, ev, meaning.as_ref(), ts, op);
                if !ev.points.is_empty() {
                    self.process_values(flow, ev, meaning.as_ref(), ts);
                }
                meaning
            };
            self.decide(flow, ts, frame, ev, meaning);
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
            if !flow.served && flow.client.is_some() {
                let c = flow.client_side();
                a.served(slot, flow.ips[c], flow.ports[1 - c]);
                flow.served = true;
            }
        }
        self.availability_changes();
    }

    fn availability_changes(&mut self) {
        let a = &mut self.availability;
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
        ev: &Event,
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
            let v = self.matcher.evaluate(flow, ev, ts, flow.requests, &mut ask);
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
                    crate::rules::reason(ev)
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
            let (new, over) = self.watch.observe(flow, ev, u, ts);
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
    fn cross(&mut self, flow: &mut Flow, ts: f64, frame: u64, ev: &Event, found: Found) {
        let view = changed_view(flow);
        self.counts.crossed += 1;
        self.facts.push(Fact::Event {
            flow: flow.seq,
            view,
            ts,
            frame,
            ev: Box::new(ev.clone()),
            found,
        });
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
