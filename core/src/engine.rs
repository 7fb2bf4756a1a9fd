//! The packet path: decode, flows, reassembly, recognition, dissection; and the hand-over
//! of records to the record side (ledger.rs), on the same thread or on one of its own.
//!
//! The engine moves bytes and records. What a record means for the inventory, the graph
//! and the alerts is decided after it, never inside a dissector.

use crate::decode::{
    decode_arp, decode_link, decode_network, Link, NotTransport, Transport, ACK, FIN, RST, SYN,
    TCP, UDP,
};
use crate::events::{Event, Proto};
use crate::flows::{Flow, FlowKey, FlowStats, FlowTable, ParserState};
use crate::ledger::{Batch, Ledger, Msg};
pub use crate::ledger::{Fact, FlowSnapshot, Found, RoleSource, ViewKey};
use crate::protocols::is_other_protocol;
use crate::reader::{Packet, Reader};
use crate::reassembly::{Chunk, ReassemblyStats, Tag, TcpStream};
use crate::recognition::{judge, on_our_port, Judgement, MAX_HELD, MAX_HELD_TOTAL};

/// first bytes judged "not ours" (a stream's start, or what followed bytes judged so)
/// before a flow is declared "not ours"
const PROBE_TRIES: u32 = 4;
/// seconds of capture time between idle-flow sweeps
const SWEEP_EVERY: f64 = 10.0;
/// The packet side's ends of the channels to the record side's thread: full batches go,
/// read ones come back (their records to free, their buffers to fill again).
struct Pipe {
    to_ledger: std::sync::mpsc::SyncSender<Batch>,
    /// (in a mutex only to let the engine be shared: the packet side alone reads it)
    returned: std::sync::Mutex<std::sync::mpsc::Receiver<Batch>>,
}

/// where a packet source hands its packets (false: stop reading)
type Take<'t> = &'t mut dyn FnMut(Packet<'_>) -> bool;

/// messages per batch handed to the record side
const BATCH: usize = 256;
/// Records in a batch before it goes over anyway: a packet of hostile bytes can carry
/// hundreds of anomalies, and the batches in flight must stay small however many.
const BATCH_RECORDS: usize = 4096;
/// batches on their way to the record side at most (memory stays bounded)
const IN_FLIGHT: usize = 8;

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
    pub linktypes_unknown: u64,
}

pub struct Config {
    pub max_flows: usize,
    /// run the record side on a thread of its own while reading (see `Engine::threads`)
    pub threads: bool,
    /// hand every record to Python (the policy still reads them one by one)
    pub cross_all: bool,
    /// the learning window: reading pauses once it closes, so Python can fold what was
    /// learned into the baseline at that point of the capture
    pub learn_for: Option<f64>,
}

/// The packet side (reading, decoding, flows, reassembly, recognition, dissection) and the
/// record side (`Ledger`), which takes what the packet side found (see `threads`).
pub struct Engine {
    pub stats: Stats,
    pub reassembly: ReassemblyStats,
    /// IP datagrams in fragments, put together
    pub defrag: crate::defrag::Defrag,
    pub flows: FlowTable,
    frame: u64,
    now: f64,
    chunks: Vec<Chunk>,
    /// bytes flows hold while their protocol is not known (see recognition.rs)
    pub held_bytes: u64,
    pub probes: crate::probes::Probes,
    probe_reports: Vec<crate::probes::Probe>,
    learn_for: Option<f64>,
    /// time of the first record (PDU, anomaly, ARP claim): the learning window starts there
    first_record: Option<f64>,
    /// the learning window closed at the last packet: the caller stops reading there
    pub paused: bool,
    /// when it closed (until the caller takes it)
    pub pause_ts: Option<f64>,
    /// what the record side has not taken yet
    batch: Batch,
    /// records the record side has finished with, freed a few per packet: memory freed
    /// between allocations is reused at once, a whole batch freed at once is not
    spent: Vec<Event>,
    /// messages per batch handed to the record side's thread
    pub batch_size: usize,
    /// the way to that thread, while it runs
    pipe: Option<Pipe>,
    /// the record side runs on a thread of its own while `read` and `block` work (its
    /// copy of each flow follows the packet side's through messages); otherwise it takes
    /// each packet's records at once, from the packet side's flow. Fixed for an engine.
    threads: bool,
    pub ledger: Ledger,
}

impl Engine {
    pub fn new(cfg: Config) -> Engine {
        Engine {
            stats: Stats::default(),
            reassembly: ReassemblyStats::default(),
            defrag: crate::defrag::Defrag::default(),
            flows: FlowTable::new(cfg.max_flows.max(1)),
            frame: 0,
            now: 0.0,
            chunks: Vec::new(),
            held_bytes: 0,
            probes: crate::probes::Probes::default(),
            probe_reports: Vec::new(),
            learn_for: cfg.learn_for,
            first_record: None,
            paused: false,
            pause_ts: None,
            batch: Batch::default(),
            spent: Vec::new(),
            batch_size: BATCH,
            pipe: None,
            threads: cfg.threads,
            ledger: Ledger::new(cfg.cross_all, cfg.learn_for),
        }
    }

    /// Whether the record side works on a thread of its own while reading (see `threads`).
    pub fn threads(&self) -> bool {
        self.threads
    }

    pub fn flow_stats(&self) -> FlowStats {
        self.flows.stats
    }

    /// One packet of a capture or of the live ring, its records taken in at once; false
    /// when the learning window closed with it (stop reading, let Python take the
    /// baseline, then go on).
    pub fn packet(&mut self, pkt: Packet<'_>) -> bool {
        let go = self.dissect(pkt);
        self.take_in();
        go
    }

    /// The record side takes the batch in on this thread; its records are freed.
    fn take_in(&mut self) {
        self.ledger.apply(&mut self.batch);
        self.batch.records.clear();
    }

    /// Read up to `chunks` chunks of a capture, the record side on a thread of its own
    /// (see `pipelined`) when the machine has a core for it: with a thread decompressing
    /// ahead on two cores the three would take turns (a gzipped capture took 260 ms
    /// instead of 210). Stops early when the learning window closes or `stop` says so;
    /// false once the capture has ended.
    pub fn read(&mut self, reader: &mut Reader, chunks: usize, stop: &dyn Fn() -> bool) -> bool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let room = 2 + reader.reads_ahead() as usize <= cores;
        let mut run = |take: Take<'_>| {
            let mut more = true;
            for _ in 0..chunks.max(1) {
                let mut paused = false;
                more = reader.next_chunk(&mut |p| {
                    let go = take(p);
                    paused |= !go;
                    go
                });
                if !more || paused || stop() {
                    break;
                }
            }
            more
        };
        self.drive(room, &mut run)
    }

    /// One retired block of the live ring, the record side on a thread of its own; returns
    /// the block's packets.
    pub fn block(&mut self, block: &[u8]) -> u32 {
        let mut run = |take: Take<'_>| {
            crate::ring::walk_block(block, &mut |p| {
                take(p);
            })
        };
        self.drive(true, &mut run)
    }

    /// Run a packet source: `pipelined` when this engine's record side has a thread and
    /// `room` for it, packet by packet otherwise.
    fn drive<T>(&mut self, room: bool, run: &mut dyn FnMut(Take<'_>) -> T) -> T {
        let piped = if self.threads && room {
            self.pipelined(run)
        } else {
            None
        };
        piped.unwrap_or_else(|| run(&mut |p| self.packet(p)))
    }

    /// Run `run`, which hands packets to the function it is given, with the record side
    /// on a thread of its own, at most `IN_FLIGHT` batches behind. Gives what `packet`
    /// gives packet by packet: the record side takes the same messages in the same order.
    /// None when no thread could be started (`run` was not called; it runs on this
    /// thread, which gives the same).
    fn pipelined<T>(&mut self, run: &mut dyn FnMut(Take<'_>) -> T) -> Option<T> {
        let mut ledger = std::mem::take(&mut self.ledger);
        let out = std::thread::scope(|s| {
            let (to_ledger, batches) = std::sync::mpsc::sync_channel::<Batch>(IN_FLIGHT);
            let (spent, returned) = std::sync::mpsc::channel::<Batch>();
            let ledger = &mut ledger;
            let records = move || {
                for mut batch in batches {
                    ledger.apply(&mut batch);
                    let _ = spent.send(batch); // gone: the packet side has finished
                }
            };
            let named = std::thread::Builder::new().name("otsec-records".into());
            named.spawn_scoped(s, records).ok()?;
            self.pipe = Some(Pipe {
                to_ledger,
                returned: std::sync::Mutex::new(returned),
            });
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(&mut |p| self.dissect(p))
            }));
            // the channel closes whatever happened: the record side's thread then ends
            if let Some(pipe) = self.pipe.take() {
                if out.is_ok() {
                    let _ = pipe.to_ledger.send(std::mem::take(&mut self.batch));
                }
            }
            self.spent.clear();
            Some(out.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        });
        self.ledger = ledger;
        out
    }

    /// `packet` without the record side: what it would do is added to the batch.
    fn dissect(&mut self, pkt: Packet<'_>) -> bool {
        self.process(pkt);
        if let (Some(window), Some(first)) = (self.learn_for, self.first_record) {
            if pkt.ts >= first + window {
                self.learn_for = None;
                self.paused = true;
                self.pause_ts = Some(pkt.ts);
                self.send(Msg::Pause);
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
        let Some(mut link) = decode_link(pkt.linktype, pkt.data) else {
            self.stats.not_ip += 1;
            return;
        };
        if link.ethertype == 0x0806 {
            self.stats.arp_packets += 1;
            if let Some((mac, ip)) = decode_arp(pkt.data, link.off) {
                if ip != [0; 4] && self.first_record.is_none() {
                    self.first_record = Some(ts);
                }
                self.send(Msg::Arp { mac, ip, ts });
            }
            return;
        }
        let mut whole = None;
        let Some((t, conflict)) = self.network(pkt.data, &mut link, &mut whole, ts) else {
            return;
        };
        let data: &[u8] = whole.as_deref().unwrap_or(pkt.data);
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
        if side == 1 && flow.side_packets[1] == 1 {
            self.flows.answered();
        }
        flow.side_bytes[side] += pkt.wirelen as u64;
        flow.last_ts = ts;
        if let Some(smac) = link.src_mac {
            match flow.macs[side] {
                None => {
                    flow.macs[side] = Some(smac);
                    flow.macs[1 - side] = link.dst_mac;
                    flow.vlan = link.vlan;
                }
                Some(known) if known != smac => {
                    // the same address now answers from another MAC
                    flow.macs[side] = Some(smac);
                    flow.macs_changed = true;
                }
                _ => {}
            }
        }
        if t.proto == TCP {
            self.stats.tcp_packets += 1;
            self.tcp(&mut flow, side, ts, &t, data);
        } else if t.proto == UDP {
            self.stats.udp_packets += 1;
            if t.pend > t.pstart {
                self.udp(&mut flow, side, ts, &data[t.pstart..t.pend]);
            }
        }
        if conflict {
            let detail = "overlapping IP fragments carried different bytes; the first copy is \
                          dissected"
                .to_string();
            let tag = Tag {
                ts,
                frame: self.frame,
            };
            self.network_anomaly(&mut flow, side, IP_FRAGMENT_OVERLAP_CONFLICT, detail, tag);
        }
        self.flows.slots[slot as usize] = Some(flow);
    }

    /// The network layers of a frame down to TCP or UDP (its link layer read into
    /// `link`): a fragment is kept until its datagram is whole, which `whole` then holds
    /// (the transport's offsets are into it). None: nothing to dissect (counted). With it:
    /// overlapping fragments of the datagram differed.
    #[inline]
    fn network(
        &mut self,
        frame: &[u8],
        link: &mut Link,
        whole: &mut Option<Vec<u8>>,
        ts: f64,
    ) -> Option<(Transport, bool)> {
        let mut conflict = false;
        // a datagram put together may carry a tunnel with fragments inside: bounded
        for _ in 0..3 {
            let b: &[u8] = whole.as_deref().unwrap_or(frame);
            let reason = match decode_network(b, link) {
                Ok(t) => return Some((t, conflict)),
                Err(reason) => reason,
            };
            let st = &mut self.stats;
            match reason {
                NotTransport::Fragment => {
                    st.ip_fragments += 1;
                    let done = self.defrag.add(b, link.off, link.ethertype, ts)?;
                    conflict |= done.conflict;
                    link.off = 0;
                    *whole = Some(done.bytes);
                }
                NotTransport::NotIp | NotTransport::Arp(_) => {
                    st.not_ip += 1;
                    return None;
                }
                NotTransport::Invalid => {
                    st.invalid += 1;
                    return None;
                }
                NotTransport::OtherIp => {
                    st.other_ip += 1;
                    return None;
                }
            }
        }
        self.stats.invalid += 1;
        None
    }

    fn report_probes(&mut self) {
        for p in std::mem::take(&mut self.probe_reports) {
            self.send(Msg::Probe(p));
        }
    }

    /// A message for the record side: batched on a pipeline, taken in at once otherwise.
    fn send(&mut self, msg: Msg) {
        self.batch.msgs.push(msg);
        if self.threads {
            self.ship();
        } else {
            self.take_in();
        }
    }

    /// A full batch goes to the record side's thread (checked after every message: a
    /// sweep can end thousands of flows within one packet).
    fn ship(&mut self) {
        if self.batch.msgs.len() < self.batch_size && self.batch.records.len() < BATCH_RECORDS {
            return;
        }
        let Some(pipe) = &self.pipe else {
            // no thread (packet by packet, or the flows' ends at `finish`): taken in here
            self.take_in();
            return;
        };
        let back = pipe.returned.lock().ok().and_then(|r| r.try_recv().ok());
        let mut next = back.unwrap_or_default();
        self.spent.clear();
        std::mem::swap(&mut self.spent, &mut next.records);
        let full = std::mem::replace(&mut self.batch, next);
        // the record side only stops by panicking: the scope reports it
        let _ = pipe.to_ledger.send(full);
    }

    fn create(&mut self, key: FlowKey, ts: f64) -> u32 {
        if let Some(slot) = self.flows.unanswered_victim() {
            self.flows.stats.evicted_unanswered += 1;
            self.end(slot);
        }
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
        self.defrag.expire(now);
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
        if flags & RST != 0 && Self::refusal(flow, side) {
            self.send(Msg::Refused {
                client: flow.ips[1 - side],
                server: flow.ips[side],
                port: flow.ports[side],
                ts,
            });
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
                let tag = Tag {
                    ts,
                    frame: self.frame,
                };
                self.overlaps(flow, 1 - side, tag);
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
                stream.advance(t.seq, payload);
                let from_client = Some(side) == flow.client;
                let before = self.batch.records.len();
                guarded(flow, from_client, &mut self.batch.records, |p, out| {
                    p.feed(payload, from_client, false, out)
                });
                self.records(flow, ts, self.frame, before);
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
            self.overlaps(flow, side, tag);
        }
    }

    /// Overlapping data of one side's stream that differed from the first copy: an
    /// anomaly of the flow.
    fn overlaps(&mut self, flow: &mut Flow, side: usize, tag: Tag) {
        let Some(streams) = flow.streams.as_mut() else {
            return;
        };
        let c = std::mem::take(&mut streams[side].conflicts);
        if c.segments == 0 {
            return;
        }
        let detail = format!(
            "{} bytes from sequence number {} on differ from the first copy, in {} \
             segment(s); the first copy is dissected",
            c.bytes, c.seq, c.segments
        );
        self.network_anomaly(flow, side, TCP_OVERLAP_CONFLICT, detail, tag);
    }

    /// A network-layer anomaly of a flow: reported under its protocol once that is known
    /// (a flow never recognised keeps it in the counters only).
    pub fn network_anomaly(
        &mut self,
        flow: &mut Flow,
        side: usize,
        kind: &'static str,
        detail: String,
        tag: Tag,
    ) {
        if matches!(flow.parser, ParserState::NotOurs) {
            return;
        }
        if flow.unreported.len() < crate::flows::MAX_UNREPORTED {
            flow.unreported.push((side, kind, detail));
        }
        self.report_unreported(flow, tag);
    }

    /// The network-layer anomalies a recognised flow kept go to the record side.
    fn report_unreported(&mut self, flow: &mut Flow, tag: Tag) {
        let Some(kind) = flow.protocol else {
            return;
        };
        if flow.unreported.is_empty() {
            return;
        }
        let before = self.batch.records.len();
        for (side, name, detail) in std::mem::take(&mut flow.unreported) {
            let from_client = Some(side) == flow.client;
            let ev = Event::anomaly(from_client, kind.proto, name, detail);
            self.batch.records.push(ev);
        }
        self.records(flow, tag.ts, tag.frame, before);
    }

    fn deliver(&mut self, flow: &mut Flow, side: usize, chunks: &mut Vec<Chunk>) {
        for chunk in chunks.drain(..) {
            if matches!(flow.parser, ParserState::NotOurs) {
                break;
            }
            if matches!(flow.parser, ParserState::Unknown) {
                self.recognise(flow, side, &chunk);
                continue;
            }
            self.feed(flow, side, &chunk.data, chunk.gap, chunk.tag);
        }
        chunks.clear();
    }

    /// Stream bytes to the flow's dissector; its records go to the record side.
    fn feed(&mut self, flow: &mut Flow, side: usize, data: &[u8], gap: bool, tag: Tag) {
        let from_client = Some(side) == flow.client;
        let before = self.batch.records.len();
        guarded(flow, from_client, &mut self.batch.records, |p, out| {
            p.feed(data, from_client, gap, out)
        });
        self.records(flow, tag.ts, tag.frame, before);
    }

    /// Bytes of a stream whose protocol is not known yet: held until its header can be
    /// judged (bounded, see recognition.rs), then everything held is dissected in the order
    /// it came.
    fn recognise(&mut self, flow: &mut Flow, side: usize, chunk: &Chunk) {
        let held = flow.held.get_or_insert_with(Default::default);
        let was = held.bytes();
        held.push(side, &chunk.data, chunk.gap, chunk.tag);
        let now = held.bytes();
        self.held_bytes = self.held_bytes + now as u64 - was as u64;
        let full = held.data[side].len() >= MAX_HELD || self.held_bytes > MAX_HELD_TOTAL;
        match judge(flow.ports, flow.client, side, &held.data[side], true) {
            Judgement::Wait if !full => {}
            Judgement::Is(kind, server) => {
                self.attach(flow, kind, server);
                let held = flow.held.take().unwrap();
                self.held_bytes -= now as u64;
                held.replay(|s, data, gap, tag| {
                    if matches!(flow.parser, ParserState::Active(_)) {
                        self.feed(flow, s, data, gap, tag);
                    }
                });
                self.report_unreported(flow, chunk.tag);
            }
            Judgement::Not | Judgement::Wait => {
                flow.probe_tries += 1;
                let held = flow.held.as_mut().unwrap();
                let other = is_other_protocol(&held.data[side]);
                held.forget(side);
                self.held_bytes = self.held_bytes + held.bytes() as u64 - now as u64;
                if other || flow.probe_tries >= PROBE_TRIES {
                    self.not_ours(flow, true);
                }
            }
        }
    }

    /// A flow otsec does not dissect: what it held goes.
    fn not_ours(&mut self, flow: &mut Flow, tcp: bool) {
        if on_our_port(flow.ports, tcp) {
            self.stats.unrecognised_on_ot_port += 1;
        }
        if let Some(held) = flow.held.take() {
            self.held_bytes -= held.bytes() as u64;
        }
        flow.parser = ParserState::NotOurs;
        flow.streams = None;
        flow.unreported.clear();
    }

    /// The flow speaks `kind`, its server on side `server`.
    fn attach(&mut self, flow: &mut Flow, kind: crate::protocols::Kind, server: usize) {
        if flow.client.is_none() {
            flow.set_client(1 - server);
        }
        flow.protocol = Some(kind);
        flow.parser = ParserState::Active((kind.parser)());
    }

    fn udp(&mut self, flow: &mut Flow, side: usize, ts: f64, data: &[u8]) {
        match flow.parser {
            ParserState::NotOurs => return,
            ParserState::Unknown => {
                // every datagram stands alone: judged on itself
                flow.probe_tries += 1;
                match judge(flow.ports, flow.client, side, data, false) {
                    Judgement::Is(kind, server) => self.attach(flow, kind, server),
                    Judgement::Not | Judgement::Wait => {
                        if is_other_protocol(data) || flow.probe_tries >= PROBE_TRIES {
                            self.not_ours(flow, false);
                        }
                        return;
                    }
                }
            }
            ParserState::Active(_) => {}
        }
        let from_client = Some(side) == flow.client;
        let before = self.batch.records.len();
        guarded(flow, from_client, &mut self.batch.records, |p, out| {
            p.feed_datagram(data, from_client, out)
        });
        self.records(flow, ts, self.frame, before);
    }

    /// The records a dissector added to the batch after its first `first` go to the record
    /// side with the flow as it stands.
    fn records(&mut self, flow: &mut Flow, ts: f64, frame: u64, first: usize) {
        let count = self.batch.records.len() - first;
        if count == 0 {
            return;
        }
        if self.first_record.is_none() {
            self.first_record = Some(ts);
        }
        if !self.threads {
            flow.catch_up();
            let records = self.batch.records[first..].iter();
            self.ledger.emit(flow, ts, frame, records);
            self.batch.records.truncate(first);
            return;
        }
        self.spent.truncate(self.spent.len().saturating_sub(count));
        let head = flow.head();
        self.send(Msg::Records {
            slot: flow.slot,
            head,
            ts,
            frame,
            count: count as u32,
        });
    }

    /// A reset from `side` is the server's first word on a connection its client opened
    /// with a SYN and sent nothing on: the connection was refused.
    fn refusal(flow: &Flow, side: usize) -> bool {
        flow.client == Some(1 - side)
            && flow.side_packets[side] == 1
            && flow.probe_tries == 0
            && matches!(flow.parser, ParserState::Unknown)
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

    /// A flow leaves the table: what waits behind holes is parsed, then the record side
    /// takes its end.
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
                let tag = Tag {
                    ts: flow.last_ts,
                    frame: self.frame,
                };
                self.overlaps(&mut flow, side, tag);
            }
        }
        if let Some(streams) = flow.streams.as_mut() {
            for s in streams.iter_mut() {
                s.release(&mut self.reassembly);
            }
        }
        if let Some(held) = flow.held.take() {
            self.held_bytes -= held.bytes() as u64;
        }
        if self.threads {
            let head = flow.head();
            self.send(Msg::End { slot, head });
        } else {
            flow.catch_up();
            self.ledger.end(&mut flow);
        }
    }

    /// Everything written so far reaches the files (the live sensor calls it every flush).
    pub fn flush(&mut self) {
        self.ledger.flush();
    }

    /// Flush every open flow; the counters then hold the final state.
    /// The capture time of the newest packet read (None before the first).
    pub fn now(&self) -> Option<f64> {
        (self.now != 0.0).then_some(self.now)
    }

    pub fn finish(&mut self) {
        for slot in self.flows.all() {
            self.end(slot);
        }
        self.probes.close(&mut self.probe_reports, None);
        self.report_probes();
        self.take_in();
        self.ledger.finish();
        self.stats.last_ts = if self.now != 0.0 {
            Some(self.now)
        } else {
            None
        };
    }
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

/// Overlapping TCP data differed from the bytes seen first (see reassembly.rs).
pub const TCP_OVERLAP_CONFLICT: &str = "tcp_overlap_conflict";
/// Overlapping IP fragments differed (see defrag.rs).
pub const IP_FRAGMENT_OVERLAP_CONFLICT: &str = "ip_fragment_overlap_conflict";

fn streams(flow: &mut Flow) -> &mut [TcpStream; 2] {
    flow.streams.get_or_insert_with(Default::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet/IPv4 TCP SYN from 10.(i)/16 to 10.1.0.10:502.
    fn syn(i: u32) -> Vec<u8> {
        let mut f = vec![0, 0x80, 0xF4, 0, 2, 1, 0, 0x0C, 0x29, 9, 9, 9, 8, 0];
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[10, 200, (i >> 8) as u8, i as u8, 10, 1, 0, 10]);
        f.extend_from_slice(&(1024 + (i % 60000) as u16).to_be_bytes());
        f.extend_from_slice(&502u16.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xFF, 0xFF, 0, 0, 0, 0]);
        f
    }

    fn packet(engine: &mut Engine, i: u32, ts: f64) {
        let data = syn(i);
        let wirelen = data.len() as u32;
        engine.packet(Packet {
            ts,
            linktype: 1,
            data: &data,
            wirelen,
        });
    }

    /// A panic on the packet side while the record side's thread runs reaches the caller
    /// (the thread ends with its channel; it used to wait for more forever).
    #[test]
    fn a_panic_while_piped_reaches_the_caller() {
        let mut engine = Engine::new(Config {
            max_flows: 10,
            threads: true,
            cross_all: false,
            learn_for: None,
        });
        let data = syn(1);
        let wirelen = data.len() as u32;
        let mut run = |take: Take<'_>| -> u32 {
            take(Packet {
                ts: 1.7e9,
                linktype: 1,
                data: &data,
                wirelen,
            });
            panic!("a bug on the packet side");
        };
        let out =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.pipelined(&mut run)));
        assert!(out.is_err());
        assert!(engine.pipe.is_none());
    }

    /// A sweep that ends thousands of flows within one packet, or `finish`, never holds
    /// more than a batch of messages for the record side.
    #[test]
    fn flows_ended_at_once_go_over_batch_by_batch() {
        let mut engine = Engine::new(Config {
            max_flows: 100_000,
            threads: true,
            cross_all: false,
            learn_for: None,
        });
        let t0 = 1.7e9;
        for i in 0..5000 {
            packet(&mut engine, i, t0 + i as f64 * 1e-4);
        }
        packet(&mut engine, 6000, t0 + 5000.0); // every flow has been idle long enough
        assert!(engine.flows.stats.expired >= 5000);
        assert!(engine.batch.msgs.capacity() <= 2 * BATCH);
        for i in 0..5000 {
            packet(&mut engine, i, t0 + 6000.0 + i as f64 * 1e-4);
        }
        engine.finish();
        assert_eq!(engine.flows.live, 0);
        assert!(engine.batch.msgs.capacity() <= 2 * BATCH);
        // one-packet flows nobody answered: their hosts are tracked up to a bound
        assert_eq!(
            engine.ledger.aggregates.hosts.len(),
            crate::aggregate::MAX_UNANSWERED
        );
    }
}
