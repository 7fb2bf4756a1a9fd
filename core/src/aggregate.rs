//! What the core counts so that steady traffic never reaches Python: hosts (addresses,
//! MACs, services, peers, behaviour evidence) and the communication graph's edges
//! (functions per direction, units, ranges, object groups, writes, cadence, volume).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::decode::Addr;
use crate::events::{Body, Event};
use crate::flows::Flow;
use crate::meaning::{evidence, Table, Use};

/// Register ranges kept per (unit, table); the closest ones merge beyond this.
pub const MAX_RANGES: usize = 64;
/// Hosts and edges tracked; what lies beyond is counted, not kept (a spoofed flood
/// must not grow memory without bound).
pub const MAX_HOSTS: usize = 20_000;
pub const MAX_EDGES: usize = 20_000;
/// Hosts, and edges, known only from flows nobody answered that are tracked: beyond, a
/// flood of spoofed sources is counted (`untracked_hosts`), not listed one by one.
pub const MAX_UNANSWERED: usize = 2_000;
/// Peers remembered per host (the count of those beyond is kept).
pub const MAX_PEERS: usize = 10_000;
/// The first requests of a connection are its start-up (a DNP3 master disables and enables
/// unsolicited reporting, writes the time; an S7 station sets up): functions seen only
/// there are learned as start-up functions.
pub const STARTUP: u64 = 8;

/// Interned names (protocols and services), so keys stay small and `Copy`.
#[derive(Default)]
pub struct Names {
    names: Vec<String>,
    index: FxHashMap<String, u16>,
}

impl Names {
    pub fn id(&mut self, name: &str) -> u16 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u16;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }

    pub fn name(&self, id: u16) -> &str {
        &self.names[id as usize]
    }
}

/// (transport, port, protocol name id)
pub type Service = (u8, u16, u16);

pub struct Host {
    pub first_seen: f64,
    pub last_seen: f64,
    pub packets: u64,
    pub bytes: u64,
    pub macs: Vec<([u8; 6], u64)>,
    pub services: BTreeSet<Service>,
    pub uses: BTreeSet<Service>,
    pub peers: FxHashSet<Addr>,
    pub protocols: BTreeSet<u16>,
    pub vlans: BTreeSet<i32>,
    pub evidence: BTreeMap<&'static str, u64>,
    pub dnp3_addresses: BTreeSet<u16>,
    /// seen so far only in flows nobody answered (a spoofed source looks like this)
    pub unanswered: bool,
}

impl Host {
    fn new(ts: f64) -> Host {
        Host {
            first_seen: ts,
            last_seen: ts,
            packets: 0,
            bytes: 0,
            macs: Vec::new(),
            services: BTreeSet::new(),
            uses: BTreeSet::new(),
            peers: FxHashSet::default(),
            protocols: BTreeSet::new(),
            vlans: BTreeSet::new(),
            evidence: BTreeMap::new(),
            dnp3_addresses: BTreeSet::new(),
            unanswered: false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct EdgeKey {
    pub client: Addr,
    pub server: Addr,
    pub transport: u8,
    pub port: u16,
    pub protocol: u16,
}

pub struct Edge {
    pub first_seen: f64,
    pub last_seen: f64,
    pub packets: u64,
    pub bytes: u64,
    pub pdus: u64,
    pub writes: u64,
    pub requests: u64,
    /// (code, request?) -> (count, seen after the start-up of a connection: see `STARTUP`)
    pub functions: BTreeMap<(u32, bool), (u64, bool)>,
    pub unit_ids: BTreeSet<u32>,
    pub ranges: BTreeMap<(u32, Table), Vec<[i64; 2]>>,
    pub objects: BTreeSet<u8>,
    /// code -> (first, last, count) of requests
    pub cadence: BTreeMap<u32, (f64, f64, u64)>,
    /// the operations view's current minute
    pub minute: Option<crate::metrics::Minute>,
    last_touch: Option<(u32, Table, i64, i64)>,
}

impl Edge {
    fn new(first: f64, last: f64) -> Edge {
        Edge {
            first_seen: first,
            last_seen: last,
            packets: 0,
            bytes: 0,
            pdus: 0,
            writes: 0,
            requests: 0,
            functions: BTreeMap::new(),
            unit_ids: BTreeSet::new(),
            ranges: BTreeMap::new(),
            objects: BTreeSet::new(),
            cadence: BTreeMap::new(),
            minute: None,
            last_touch: None,
        }
    }

    /// Record a range, merging overlapping and adjacent intervals.
    fn touch(&mut self, unit: u32, table: Table, start: i64, count: i64) {
        let last = (unit, table, start, count);
        if self.last_touch == Some(last) {
            return; // cyclic polling repeats the same request
        }
        self.last_touch = Some(last);
        let end = start + count.max(1) - 1;
        let spans = self.ranges.entry((unit, table)).or_default();
        let mut merged_into = false;
        for span in spans.iter_mut() {
            if start <= span[1] + 1 && end >= span[0] - 1 {
                span[0] = span[0].min(start);
                span[1] = span[1].max(end);
                merged_into = true;
                break;
            }
        }
        if !merged_into {
            spans.push([start, end]);
            spans.sort();
            if spans.len() > MAX_RANGES {
                let mut best = 0;
                for i in 0..spans.len() - 1 {
                    if spans[i + 1][0] - spans[i][1] < spans[best + 1][0] - spans[best][1] {
                        best = i;
                    }
                }
                let hi = spans[best][1].max(spans[best + 1][1]);
                spans[best][1] = hi;
                spans.remove(best + 1);
            }
            return;
        }
        spans.sort();
        let mut merged: Vec<[i64; 2]> = Vec::with_capacity(spans.len());
        for s in spans.iter() {
            match merged.last_mut() {
                Some(m) if s[0] <= m[1] + 1 => m[1] = m[1].max(s[1]),
                _ => merged.push(*s),
            }
        }
        *spans = merged;
    }
}

/// Hosts, ARP claims and edges.
pub struct Aggregates {
    pub names: Names,
    /// (transport, port) -> name of the service there, for flows otsec does not dissect
    pub services: FxHashMap<(u8, u16), u16>,
    pub hosts: FxHashMap<Addr, Host>,
    pub arp: BTreeMap<[u8; 4], BTreeSet<[u8; 6]>>,
    pub edges: FxHashMap<EdgeKey, Edge>,
    pub max_hosts: usize,
    pub max_edges: usize,
    /// records and flows whose host or edge was not tracked (bounds reached)
    pub untracked_hosts: u64,
    pub untracked_edges: u64,
    pub untracked_peers: u64,
    /// hosts and edges tracked that only flows nobody answered made
    unanswered_hosts: usize,
    unanswered_edges: FxHashSet<EdgeKey>,
    /// finished minutes of the operations view
    pub metrics: crate::metrics::Rows,
    /// rules ask for roles: note the hosts whose role may have changed (`role_inputs`)
    pub track_roles: bool,
    /// hosts that appeared or gained an evidence kind, a service or a use
    pub role_inputs: Vec<Addr>,
}

impl Default for Aggregates {
    fn default() -> Self {
        Aggregates {
            names: Names::default(),
            services: FxHashMap::default(),
            hosts: FxHashMap::default(),
            arp: BTreeMap::new(),
            edges: FxHashMap::default(),
            max_hosts: MAX_HOSTS,
            max_edges: MAX_EDGES,
            metrics: crate::metrics::Rows::default(),
            untracked_hosts: 0,
            untracked_edges: 0,
            untracked_peers: 0,
            unanswered_hosts: 0,
            unanswered_edges: FxHashSet::default(),
            track_roles: false,
            role_inputs: Vec::new(),
        }
    }
}

impl Aggregates {
    fn host(&mut self, ip: Addr, ts: f64, answered: bool) -> Option<&mut Host> {
        self.host_noted(ip, ts, answered).map(|(h, _)| h)
    }

    /// A host (None beyond the bound), and where to note that its role may have changed
    /// (None when no rule asks for roles). A new host is noted.
    /// `answered`: what speaks of the host came from a flow both sides spoke in.
    fn host_noted(
        &mut self,
        ip: Addr,
        ts: f64,
        answered: bool,
    ) -> Option<(&mut Host, Option<&mut Vec<Addr>>)> {
        let Aggregates {
            hosts,
            max_hosts,
            untracked_hosts,
            track_roles,
            role_inputs,
            unanswered_hosts,
            ..
        } = self;
        if hosts.len() >= *max_hosts && !hosts.contains_key(&ip) {
            *untracked_hosts += 1;
            return None;
        }
        let notes = if *track_roles {
            Some(role_inputs)
        } else {
            None
        };
        match hosts.entry(ip) {
            Entry::Occupied(e) => {
                let h = e.into_mut();
                if answered && h.unanswered {
                    h.unanswered = false;
                    *unanswered_hosts -= 1;
                }
                Some((h, notes))
            }
            Entry::Vacant(e) => {
                if !answered && *unanswered_hosts >= MAX_UNANSWERED {
                    *untracked_hosts += 1;
                    return None;
                }
                let mut notes = notes;
                if let Some(n) = notes.as_mut() {
                    n.push(ip);
                }
                let mut h = Host::new(ts);
                if !answered {
                    h.unanswered = true;
                    *unanswered_hosts += 1;
                }
                Some((e.insert(h), notes))
            }
        }
    }

    /// Count one piece of role evidence; a new kind may change the host's role.
    fn evidence(
        &mut self,
        ip: Addr,
        name: &'static str,
        ts: f64,
        answered: bool,
    ) -> Option<&mut Host> {
        let (h, notes) = self.host_noted(ip, ts, answered)?;
        let n = h.evidence.entry(name).or_insert(0);
        *n += 1;
        if let (1, Some(notes)) = (*n, notes) {
            notes.push(ip);
        }
        Some(h)
    }

    /// The dissected protocol, else the name of the server's port ("unknown").
    fn protocol_name(&mut self, flow: &Flow, server: usize) -> u16 {
        if let Some(k) = flow.protocol {
            return self.names.id(k.name());
        }
        match self.services.get(&(flow.proto, flow.ports[server])) {
            Some(&id) => id,
            None => self.names.id("unknown"),
        }
    }

    /// The end of the input: every edge's current minute of the operations view closes.
    pub fn finish_metrics(&mut self) {
        let open = self.edges.iter_mut().map(|(k, e)| (*k, &mut e.minute));
        self.metrics.finish(open);
    }

    pub fn on_arp(&mut self, mac: [u8; 6], ip: [u8; 4], ts: f64) {
        if ip == [0; 4] {
            return;
        }
        let Some(h) = self.host(Addr::new(&ip), ts, true) else {
            return;
        };
        h.last_seen = h.last_seen.max(ts);
        h.first_seen = h.first_seen.min(ts);
        self.arp.entry(ip).or_default().insert(mac);
    }

    /// The edge a flow's records count on (the flow remembers the last one it used).
    fn edge(&mut self, flow: &mut Flow, protocol: Option<u16>) -> Option<EdgeKey> {
        if let Some(k) = flow.edge {
            if protocol.is_none_or(|p| p == k.protocol) {
                if !self.unanswered_edges.is_empty() && both_spoke(flow) {
                    self.unanswered_edges.remove(&k);
                }
                return Some(k);
            }
        }
        let client = flow.client_side();
        let server = 1 - client;
        let protocol = match protocol {
            Some(p) => p,
            None => self.protocol_name(flow, server),
        };
        let key = EdgeKey {
            client: flow.ips[client],
            server: flow.ips[server],
            transport: flow.proto,
            port: flow.ports[server],
            protocol,
        };
        let answered = both_spoke(flow);
        if !self.edges.contains_key(&key) {
            if self.edges.len() >= self.max_edges
                || (!answered && self.unanswered_edges.len() >= MAX_UNANSWERED)
            {
                self.untracked_edges += 1;
                return None;
            }
            if !answered {
                self.unanswered_edges.insert(key);
            }
        } else if answered && !self.unanswered_edges.is_empty() {
            self.unanswered_edges.remove(&key);
        }
        let (first, last) = (flow.first_ts, flow.last_ts);
        self.edges
            .entry(key)
            .or_insert_with(|| Edge::new(first, last));
        flow.edge = Some(key);
        Some(key)
    }

    /// One PDU, with what it means (`meaning`, decided once by its dissector's module).
    pub fn on_event(
        &mut self,
        flow: &mut Flow,
        ev: &Event,
        meaning: Option<&Use>,
        ts: f64,
        op: Option<crate::metrics::Op>,
    ) {
        if matches!(ev.body, Body::Anomaly(_)) {
            return;
        }
        // inventory: behaviour evidence by protocol role, not TCP role
        let sender = flow.sender(ev.from_client);
        let request = ev.is_request();
        let (client, server) = if request {
            (sender, 1 - sender)
        } else {
            (1 - sender, sender)
        };
        let mut obs = evidence(ev);
        // S7 roles follow the connection: the station that opened it (the SYN's sender) is
        // never the controller because it answered a notification or a job of the PLC's
        let record = ev.body.record();
        if record.is_some_and(|r| r.roles_follow_connection()) {
            if let Some(tcp_client) = flow.client {
                if server == tcp_client {
                    obs.server = None;
                }
                if client != tcp_client {
                    obs.client = None;
                }
            }
        }
        let answered = both_spoke(flow);
        if let Some(name) = obs.client {
            self.evidence(flow.ips[client], name, ts, answered);
        }
        if let Some(name) = obs.server {
            if let Some(h) = self.evidence(flow.ips[server], name, ts, answered) {
                if let Some(address) = record.and_then(|r| r.station_address()) {
                    h.dnp3_addresses.insert(address);
                }
            }
        }
        // graph
        let Some(u) = meaning else { return };
        let proto = self.names.id(ev.protocol().name());
        let Some(key) = self.edge(flow, Some(proto)) else {
            return;
        };
        let e = self.edges.get_mut(&key).unwrap();
        if let Some(op) = op {
            self.metrics.count(&mut e.minute, key, ts, op);
        }
        self.metrics
            .count_tcp(&mut e.minute, key, ts, &mut flow.tcp);
        e.pdus += 1;
        let f = e.functions.entry((u.code, request)).or_insert((0, false));
        f.0 += 1;
        f.1 |= request && flow.requests >= STARTUP;
        if let Some(unit) = u.unit {
            e.unit_ids.insert(unit);
        }
        if request {
            e.requests += 1;
            let mut interval = None;
            e.cadence
                .entry(u.code)
                .and_modify(|c| {
                    interval = Some(ts - c.1);
                    c.1 = ts;
                    c.2 += 1;
                })
                .or_insert((ts, ts, 1));
            if let (Some(i), Some(m)) = (interval, e.minute.as_mut()) {
                m.cycle(i);
            }
        }
        e.objects.extend(u.groups.iter().copied());
        if u.writes {
            e.writes += 1;
        }
        for (table, start, count) in &u.ranges {
            e.touch(u.unit.unwrap_or(0), *table, *start, *count);
        }
    }

    pub fn on_flow_end(&mut self, flow: &mut Flow) {
        let client = flow.client_side();
        let server = 1 - client;
        let proto = self.protocol_name(flow, server);
        let unknown = self.names.id("unknown");
        let service: Service = (flow.proto, flow.ports[server], proto);
        let answered = flow.side_packets[server] > 0;
        let packets = flow.side_packets[0] + flow.side_packets[1];
        let bytes = flow.side_bytes[0] + flow.side_bytes[1];
        for side in 0..2 {
            let (first, last) = (flow.first_ts, flow.last_ts);
            let Some((h, notes)) = self.host_noted(flow.ips[side], first, both_spoke(flow)) else {
                continue;
            };
            if let (true, Some(notes)) = (first < h.first_seen, notes) {
                notes.push(flow.ips[side]); // a longer history: a slow reader's role may change
            }
            h.first_seen = h.first_seen.min(first);
            h.last_seen = h.last_seen.max(last);
            h.packets += packets;
            h.bytes += bytes;
            let peer_dropped = h.peers.len() >= MAX_PEERS && !h.peers.contains(&flow.ips[1 - side]);
            if !peer_dropped {
                h.peers.insert(flow.ips[1 - side]);
            }
            if let Some(mac) = flow.macs[side] {
                match h.macs.iter_mut().find(|(m, _)| *m == mac) {
                    Some(slot) => slot.1 += flow.side_packets[side],
                    None => h.macs.push((mac, flow.side_packets[side])),
                }
            }
            if flow.vlan >= 0 {
                h.vlans.insert(flow.vlan);
            }
            if proto != unknown && answered {
                h.protocols.insert(proto);
            }
            if peer_dropped {
                self.untracked_peers += 1;
            }
        }
        if answered && (flow.client.is_some() || flow.protocol.is_some()) {
            for side in [server, client] {
                let Some(h) = self.hosts.get_mut(&flow.ips[side]) else {
                    continue;
                };
                let set = if side == server {
                    &mut h.services
                } else {
                    &mut h.uses
                };
                if set.insert(service) && self.track_roles {
                    self.role_inputs.push(flow.ips[side]);
                }
            }
        }
        // graph: a flow nobody answered is a probe, not a communication path
        if flow.side_packets[client ^ 1] == 0 && flow.protocol.is_none() {
            flow.edge = None;
            return;
        }
        let key = self.edge(flow, None);
        flow.edge = None;
        let Some(key) = key else { return };
        let e = self.edges.get_mut(&key).unwrap();
        if !flow.asked.is_empty() {
            let waiting = std::mem::take(&mut flow.asked).len() as u64;
            let op = crate::metrics::Op::Unanswered(waiting);
            self.metrics.count(&mut e.minute, key, flow.last_ts, op);
        }
        self.metrics
            .count_tcp(&mut e.minute, key, flow.last_ts, &mut flow.tcp);
        e.packets += packets;
        e.bytes += bytes;
        e.first_seen = e.first_seen.min(flow.first_ts);
        e.last_seen = e.last_seen.max(flow.last_ts);
    }
}

/// Whether both sides of a flow have spoken (a SYN-ACK counts): what a spoofed source's
/// flows never show.
fn both_spoke(flow: &Flow) -> bool {
    flow.side_packets[0] > 0 && flow.side_packets[1] > 0
}
