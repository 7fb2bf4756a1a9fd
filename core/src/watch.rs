//! What the baseline asks the core to watch while protecting, so that steady traffic
//! still never reaches Python: the first time something is seen (a host, a MAC for an
//! address, a function, unit, object group or range on an edge), request rates on edges
//! with a learned rate, and the last request of learned cyclic edges (for silence checks).

use std::collections::VecDeque;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::decode::Addr;
use crate::events::{Event, Points, Proto};
use crate::flows::Flow;
use crate::meaning::{Table, Use};
use crate::values::PointKey;

/// An edge as the baseline names it: client, server, transport, server port, protocol.
pub type EdgeRef = (Addr, Addr, u8, u16, Proto);

/// The edge a record travels: (client, server, transport, server port, protocol).
pub fn edge_of(flow: &Flow, ev: &Event) -> EdgeRef {
    let client = flow.client_side();
    (
        flow.ips[client],
        flow.ips[1 - client],
        flow.proto,
        flow.ports[1 - client],
        ev.protocol(),
    )
}

/// Things remembered before the sets start again (Python's own memory is bounded too).
const MAX_SEEN: usize = 200_000;
pub const RATE_WINDOW: f64 = 60.0;
pub const RATE_FACTOR: f64 = 5.0;
pub const RATE_MIN_REQUESTS: usize = 50;
pub const TICK: f64 = 5.0;

#[derive(Default)]
pub struct Watch {
    pub on: bool,
    functions: FxHashSet<(EdgeRef, bool, u32)>,
    units: FxHashSet<(EdgeRef, u32)>,
    groups: FxHashSet<(EdgeRef, u8)>,
    ranges: FxHashSet<(EdgeRef, u32, Table, i64, i64)>,
    hosts: FxHashSet<Addr>,
    macs: FxHashSet<(Addr, [u8; 6])>,
    /// learned rates: edge -> (requests per second, times of recent requests)
    rates: FxHashMap<EdgeRef, (f64, VecDeque<f64>)>,
    /// the first request over its learned rate that crossed, and the ones after it
    pub rate_repeats: FxHashMap<EdgeRef, u64>,
    /// learned cyclic edges: the time of their last request
    cyclic: FxHashMap<EdgeRef, Option<f64>>,
    /// functions learned only in the start-up of connections, and those seen since mid-session
    startup_only: FxHashSet<(EdgeRef, u32)>,
    mid_session: FxHashSet<(EdgeRef, u32)>,
    next_tick: f64,
    last_event: f64,
    /// written points learned: the range of values and the writers
    values: FxHashMap<PointKey, Learned>,
}

/// What the baseline learned of a written point.
pub struct Learned {
    pub min: f64,
    pub max: f64,
    pub writers: Vec<Addr>,
}

/// A written value the baseline did not see: outside the learned range, from a new
/// writer, or into a point never written while learning (`learned` None).
#[derive(Clone, Debug, PartialEq)]
pub struct ValueDeviation {
    pub table: Table,
    pub address: u32,
    pub value: f64,
    pub learned: Option<(f64, f64)>,
    pub new_writer: bool,
}

impl Watch {
    /// What is new starts again (the learning window closed: Python reports from now).
    pub fn forget_seen(&mut self) {
        self.functions.clear();
        self.units.clear();
        self.groups.clear();
        self.ranges.clear();
        self.hosts.clear();
        self.macs.clear();
        self.mid_session.clear();
    }

    pub fn set_rates(&mut self, rates: Vec<(EdgeRef, f64)>) {
        self.rates = rates
            .into_iter()
            .filter(|(_, r)| *r > 0.0)
            .map(|(e, r)| (e, (r, VecDeque::new())))
            .collect();
        self.rate_repeats.clear();
    }

    /// The last request of each learned cyclic edge seen so far.
    pub fn last_requests(&self) -> Vec<(EdgeRef, f64)> {
        self.cyclic
            .iter()
            .filter_map(|(e, t)| t.map(|t| (*e, t)))
            .collect()
    }

    pub fn set_startup_only(&mut self, functions: Vec<(EdgeRef, u32)>) {
        self.startup_only = functions.into_iter().collect();
        self.mid_session.clear();
    }

    pub fn set_values(&mut self, values: Vec<(PointKey, Learned)>) {
        self.values = values.into_iter().collect();
    }

    /// Written values the baseline did not see (none when it learned no written values).
    pub fn check_writes(
        &self,
        device: Addr,
        proto: Proto,
        unit: u32,
        writer: Addr,
        points: &[Points],
    ) -> Vec<ValueDeviation> {
        let mut out = Vec::new();
        if self.values.is_empty() {
            return out;
        }
        for p in points {
            for (i, &value) in p.values.iter().enumerate() {
                let address = p.address(i);
                let found = self.values.get(&(device, proto, unit, p.table, address));
                let (outside, new_writer) = match found {
                    Some(l) => (
                        !(l.min..=l.max).contains(&value),
                        !l.writers.contains(&writer),
                    ),
                    None => (true, true),
                };
                if outside || new_writer {
                    out.push(ValueDeviation {
                        table: p.table,
                        address,
                        value,
                        learned: found.map(|l| (l.min, l.max)),
                        new_writer,
                    });
                }
            }
        }
        out
    }

    pub fn set_cyclic(&mut self, edges: Vec<EdgeRef>) {
        self.cyclic = edges.into_iter().map(|e| (e, None)).collect();
    }

    /// A silence check is due (every few seconds of record time): the last requests.
    pub fn tick(&mut self, ts: f64) -> Option<Vec<(EdgeRef, f64)>> {
        if ts <= self.last_event {
            return None;
        }
        self.last_event = ts;
        if ts < self.next_tick {
            return None;
        }
        self.next_tick = ts + TICK;
        if self.cyclic.is_empty() {
            return None;
        }
        Some(
            self.cyclic
                .iter()
                .filter_map(|(e, t)| t.map(|t| (*e, t)))
                .collect(),
        )
    }

    fn remember<T: std::hash::Hash + Eq>(set: &mut FxHashSet<T>, item: T) -> bool {
        if set.len() >= MAX_SEEN {
            set.clear();
        }
        set.insert(item)
    }

    /// Does this record show something new, or a rate over the learned one? Returns
    /// (new, requests in the rate window when over the learned rate).
    pub fn observe(&mut self, flow: &Flow, ev: &Event, u: &Use, ts: f64) -> (bool, Option<u64>) {
        let edge = edge_of(flow, ev);
        let request = ev.is_request();
        let mut new = false;
        new |= Self::remember(&mut self.hosts, edge.0);
        new |= Self::remember(&mut self.hosts, edge.1);
        for side in 0..2 {
            if let Some(mac) = flow.macs[side] {
                new |= Self::remember(&mut self.macs, (flow.ips[side], mac));
            }
        }
        new |= Self::remember(&mut self.functions, (edge, request, u.code));
        if request
            && flow.requests > crate::aggregate::STARTUP
            && self.startup_only.contains(&(edge, u.code))
        {
            new |= Self::remember(&mut self.mid_session, (edge, u.code));
        }
        if let (true, Some(unit)) = (request, u.unit) {
            new |= Self::remember(&mut self.units, (edge, unit));
        }
        for &g in &u.groups {
            new |= Self::remember(&mut self.groups, (edge, g));
        }
        for &(table, start, count) in &u.ranges {
            new |= Self::remember(
                &mut self.ranges,
                (edge, u.unit.unwrap_or(0), table, start, count),
            );
        }
        let mut over = None;
        if request {
            if let Some(last) = self.cyclic.get_mut(&edge) {
                *last = Some(ts);
            }
            if let Some((rate, times)) = self.rates.get_mut(&edge) {
                times.push_back(ts);
                while times.front().is_some_and(|&t| ts - t > RATE_WINDOW) {
                    times.pop_front();
                }
                let n = times.len();
                if n >= RATE_MIN_REQUESTS && n as f64 / RATE_WINDOW > RATE_FACTOR * *rate {
                    match self.rate_repeats.get_mut(&edge) {
                        Some(repeats) => *repeats += 1,
                        None => {
                            self.rate_repeats.insert(edge, 0);
                            over = Some(n as u64);
                        }
                    }
                }
            }
        }
        (new, over)
    }
}
