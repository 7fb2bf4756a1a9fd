//! The rule set, compiled into a matcher the core applies to every record, so that steady
//! traffic never reaches Python: a rule's conditions on record fields, its threshold, and
//! the folding of repeats (same rule, actor, target, grouping values and context) into
//! counters. Only the first record of each such finding crosses into Python, which owns
//! the policy (messages, site suppressions, maintenance windows, the baseline).
//!
//! Rules with conditions the core cannot evaluate (roles, baseline state, computed text)
//! are *passthrough*: the core checks what it can and hands every candidate over.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;

use crate::decode::Addr;
use crate::events::{Body, Event, Proto};
use crate::flows::Flow;
use crate::meaning::describe;

/// A value as rules see it: Python's `int`, `bool` (as 0/1), `str`, `None` or a list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Val {
    None,
    Int(i64),
    Str(String),
    List(Vec<Val>),
}

impl Val {
    fn is_empty(&self) -> bool {
        match self {
            Val::None => true,
            Val::Str(s) => s.is_empty(),
            Val::List(l) => l.is_empty(),
            Val::Int(_) => false,
        }
    }

    fn items(&self) -> &[Val] {
        match self {
            Val::List(l) => l,
            _ => &[],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    Gt,
    Gte,
    Lt,
    Lte,
    Between,
    AnyIn,
    AnyNotIn,
    MaskAny,
    Exists,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "between" => Op::Between,
            "any_in" => Op::AnyIn,
            "any_not_in" => Op::AnyNotIn,
            "mask_any" => Op::MaskAny,
            "exists" => Op::Exists,
            _ => return None,
        })
    }
}

/// The record fields rules can match in the core (everything else is Python's).
pub const FIELDS: &[&str] = &[
    "protocol",
    "direction",
    "tcp_client",
    "kind",
    "detail_text",
    "request_index",
    "transaction_id",
    "unit_id",
    "function_code",
    "length",
    "exception_code",
    "subfunction",
    "mei_type",
    "address",
    "quantity",
    "value",
    "write_address",
    "write_quantity",
    "umas_function",
    "server_id",
    "run_indicator",
    "anomalies",
    "rosctr",
    "pdu_reference",
    "error_class",
    "error_code",
    "group",
    "userdata_type",
    "szl_id",
    "szl_index",
    "pi_service",
    "block_type",
    "block_number",
    "items.area",
    "items.db",
    "version",
    "opcode",
    "sequence",
    "integrity",
    "source_address",
    "destination_address",
    "app_control",
    "iin",
    "link_function",
    "objects.group",
    "objects.variation",
    "objects.qualifier",
    "request.function_code",
    "request.subfunction",
    "request.group",
];

fn int<T: Into<i64>>(v: Option<T>) -> Val {
    v.map_or(Val::None, |x| Val::Int(x.into()))
}

fn strs(v: &[&str]) -> Val {
    Val::List(v.iter().map(|s| Val::Str(s.to_string())).collect())
}

/// The value of a named field for one record (`None` when the record has no such field).
pub fn field(ev: &Event, name: &str, request_index: u64) -> Val {
    match name {
        "protocol" => {
            let p = match &ev.body {
                Body::Anomaly(a) => a.protocol.name(),
                _ => ev.protocol().name(),
            };
            return Val::Str(p.into());
        }
        "direction" => {
            return Val::Str(
                if ev.is_request() {
                    "request"
                } else {
                    "response"
                }
                .into(),
            )
        }
        "tcp_client" => return Val::Int(ev.from_client as i64),
        "request_index" => return Val::Int(request_index as i64),
        "request.function_code" | "request.subfunction" | "request.group" => {
            let Some(r) = &ev.req else { return Val::None };
            return match name {
                "request.function_code" => int(r.function_code),
                "request.subfunction" => int(r.subfunction),
                _ => int(r.group),
            };
        }
        _ => {}
    }
    match &ev.body {
        Body::Anomaly(a) => match name {
            "kind" => Val::Str(a.kind.into()),
            "detail_text" => Val::Str(a.detail.clone()),
            _ => Val::None,
        },
        Body::Modbus(p) => match name {
            "transaction_id" => Val::Int(p.transaction_id.into()),
            "unit_id" => Val::Int(p.unit_id.into()),
            "function_code" => Val::Int(p.function_code.into()),
            "length" => Val::Int(p.length.into()),
            "exception_code" => int(p.exception_code),
            "subfunction" => int(p.subfunction),
            "mei_type" => int(p.mei_type),
            "address" => int(p.address),
            "quantity" => int(p.quantity),
            "value" => int(p.value),
            "write_address" => int(p.write_address),
            "write_quantity" => int(p.write_quantity),
            "umas_function" => int(p.umas_function),
            "server_id" => p.server_id.clone().map_or(Val::None, Val::Str),
            "run_indicator" => int(p.run_indicator.map(i64::from)),
            "anomalies" => strs(&p.anomalies),
            "kind" | "detail_text" => Val::Str(String::new()),
            _ => Val::None,
        },
        Body::S7(p) => match name {
            "rosctr" => Val::Int(p.rosctr.into()),
            "pdu_reference" => Val::Int(p.pdu_reference.into()),
            "function_code" => int(p.function_code),
            "error_class" => int(p.error_class),
            "error_code" => int(p.error_code),
            "group" => int(p.group),
            "subfunction" => int(p.subfunction),
            "userdata_type" => int(p.userdata_type),
            "szl_id" => int(p.szl_id),
            "szl_index" => int(p.szl_index),
            "pi_service" => p.pi_service.clone().map_or(Val::None, Val::Str),
            "block_type" => p.block_type.clone().map_or(Val::None, Val::Str),
            "block_number" => int(p.block_number),
            "items.area" => Val::List(p.items.iter().map(|i| Val::Int(i.area.into())).collect()),
            "items.db" => Val::List(p.items.iter().map(|i| Val::Int(i.db.into())).collect()),
            "anomalies" => strs(&p.anomalies),
            "kind" | "detail_text" => Val::Str(String::new()),
            _ => Val::None,
        },
        Body::S7Plus(p) => match name {
            "version" => Val::Int(p.version.into()),
            "opcode" => int(p.opcode),
            "function_code" => int(p.function_code),
            "sequence" => int(p.sequence),
            "integrity" => Val::Int(p.integrity as i64),
            "anomalies" => strs(&p.anomalies),
            "kind" | "detail_text" => Val::Str(String::new()),
            _ => Val::None,
        },
        Body::Dnp3(p) => match name {
            "source_address" => Val::Int(p.source_address.into()),
            "destination_address" => Val::Int(p.destination_address.into()),
            "function_code" => Val::Int(p.function_code.into()),
            "app_control" => Val::Int(p.app_control.into()),
            "iin" => int(p.iin),
            "link_function" => Val::Int(p.link_function.into()),
            "objects.group" => {
                Val::List(p.objects.iter().map(|o| Val::Int(o.group.into())).collect())
            }
            "objects.variation" => Val::List(
                p.objects
                    .iter()
                    .map(|o| Val::Int(o.variation.into()))
                    .collect(),
            ),
            "objects.qualifier" => Val::List(
                p.objects
                    .iter()
                    .map(|o| Val::Int(o.qualifier.into()))
                    .collect(),
            ),
            "anomalies" => strs(&p.anomalies),
            "kind" | "detail_text" => Val::Str(String::new()),
            _ => Val::None,
        },
    }
}

/// Python's semantics of the rule operators.
pub fn test(op: Op, value: &Val, want: &Val) -> bool {
    match op {
        Op::Eq => value == want,
        Op::Ne => value != want,
        Op::In => want.items().contains(value),
        Op::NotIn => !want.items().contains(value),
        Op::Exists => !value.is_empty() == matches!(want, Val::Int(x) if *x != 0),
        Op::AnyIn => value.items().iter().any(|v| want.items().contains(v)),
        Op::AnyNotIn => value.items().iter().any(|v| !want.items().contains(v)),
        _ => {
            if *value == Val::None {
                return false;
            }
            match op {
                Op::Gt => value > want,
                Op::Gte => value >= want,
                Op::Lt => value < want,
                Op::Lte => value <= want,
                Op::Between => match want.items() {
                    [lo, hi] => lo <= value && value <= hi,
                    _ => false,
                },
                Op::MaskAny => match (value, want) {
                    (Val::Int(a), Val::Int(b)) => a & b != 0,
                    _ => false,
                },
                _ => unreachable!(),
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Client,
    Server,
    Source,
    Destination,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Sender,
    Receiver,
    TcpClient,
}

pub struct Threshold {
    pub count: usize,
    pub window: f64,
    pub by: By,
    pub distinct: Option<String>,
}

pub struct Rule {
    pub protocols: Vec<Proto>,
    pub anomaly: bool,
    pub conditions: Vec<(String, Op, Val)>,
    /// the core cannot decide this rule alone: every candidate crosses, nothing folds
    pub passthrough: bool,
    pub threshold: Option<Threshold>,
    /// fields whose values tell findings of this rule apart (grouping, detail)
    pub key_fields: Vec<String>,
    pub actor: Actor,
    pub answerable: Option<bool>,
}

/// One folded finding: everything that decides how Python treats it is in the key.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Key {
    rule: u32,
    source: Addr,
    destination: Addr,
    values: Vec<Val>,
    /// the path the finding travelled (what approving it would learn)
    client: Addr,
    server: Addr,
    port: u16,
    protocol: Proto,
    request: bool,
    code: u32,
    /// which maintenance windows (and learning phase) the finding falls in
    epoch: u32,
}

/// The repeats of a finding that Python has not seen, per key.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub repeats: u64,
    pub last: f64,
    pub accepted: u64,
    pub rejected: u64,
    pub reasons: BTreeMap<String, u64>,
}

/// A finding to hand over: (rule index, key id).
pub type Hit = (u32, u32);

/// Keys kept before the oldest are forgotten (their next finding crosses again).
const MAX_KEYS: usize = 200_000;
/// Threshold states kept before they are all forgotten (as the Python matcher does).
const MAX_WINDOWS: usize = 20_000;

enum Window {
    Times(VecDeque<f64>),
    Distinct(Vec<(Val, f64)>),
}

#[derive(Default)]
pub struct Matcher {
    pub rules: Vec<Rule>,
    /// findings of one key closer than this fold together (the alert window)
    pub window: f64,
    /// sorted times at which policy changes (maintenance windows open or close)
    pub boundaries: Vec<f64>,
    keys: FxHashMap<Key, u32>,
    pub counts: Vec<Counts>,
    windows: FxHashMap<(u32, Addr), Window>,
}

/// What the matcher decided for one record.
#[derive(Default)]
pub struct Verdict {
    pub hits: Vec<Hit>,
    /// a passthrough rule's candidate: Python evaluates it
    pub candidate: bool,
    /// keys this (answerable) request counted a repeat on, for its response
    pub repeats: Vec<u32>,
}

impl Matcher {
    pub fn new(rules: Vec<Rule>, window: f64, boundaries: Vec<f64>) -> Matcher {
        Matcher {
            rules,
            window,
            boundaries,
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn evaluate(&mut self, flow: &Flow, ev: &Event, ts: f64, request_index: u64) -> Verdict {
        let mut out = Verdict::default();
        let anomaly = matches!(ev.body, Body::Anomaly(_));
        let proto = ev.protocol();
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            if rule.anomaly != anomaly || !rule.protocols.contains(&proto) {
                continue;
            }
            let ok = rule
                .conditions
                .iter()
                .all(|(f, op, want)| test(*op, &field(ev, f, request_index), want));
            if !ok {
                continue;
            }
            if rule.passthrough {
                out.candidate = true;
                continue;
            }
            if !self.crossed(i, flow, ev, ts, request_index) {
                continue;
            }
            self.found(i as u32, flow, ev, ts, request_index, &mut out);
        }
        out
    }

    fn party(flow: &Flow, ev: &Event, by: By) -> Addr {
        let sender = flow.sender(ev.from_client);
        let client = flow.client_side();
        flow.ips[match by {
            By::Client => client,
            By::Server => 1 - client,
            By::Source => sender,
            By::Destination => 1 - sender,
        }]
    }

    /// The rule's threshold: its count (or distinct values) within its window.
    fn crossed(&mut self, i: usize, flow: &Flow, ev: &Event, ts: f64, request_index: u64) -> bool {
        let Some(t) = &self.rules[i].threshold else {
            return true;
        };
        let key = (i as u32, Self::party(flow, ev, t.by));
        if !self.windows.contains_key(&key) && self.windows.len() > MAX_WINDOWS {
            self.windows.clear();
        }
        let state = self.windows.entry(key).or_insert_with(|| match t.distinct {
            Some(_) => Window::Distinct(Vec::new()),
            None => Window::Times(VecDeque::with_capacity(t.count)),
        });
        match state {
            Window::Distinct(seen) => {
                let value = field(ev, t.distinct.as_deref().unwrap(), request_index);
                if let Some(i) = seen.iter().position(|(v, _)| *v == value) {
                    seen.remove(i);
                }
                seen.push((value, ts));
                if seen.len() < t.count {
                    return false;
                }
                while seen.first().is_some_and(|(_, first)| ts - first > t.window) {
                    seen.remove(0);
                }
                seen.len() >= t.count
            }
            Window::Times(times) => {
                if times.len() == t.count {
                    times.pop_front();
                }
                times.push_back(ts);
                times.len() == t.count && ts - times[0] <= t.window
            }
        }
    }

    fn found(
        &mut self,
        rule: u32,
        flow: &Flow,
        ev: &Event,
        ts: f64,
        request_index: u64,
        out: &mut Verdict,
    ) {
        let r = &self.rules[rule as usize];
        let sender = flow.sender(ev.from_client);
        let swap = r.actor == Actor::Receiver || (r.actor == Actor::TcpClient && !ev.from_client);
        let (src, dst) = if swap {
            (1 - sender, sender)
        } else {
            (sender, 1 - sender)
        };
        let client = flow.client_side();
        let request = ev.is_request();
        let answerable = r
            .answerable
            .unwrap_or(!matches!(ev.body, Body::Anomaly(_)) && request && !swap);
        let key = Key {
            rule,
            source: flow.ips[src],
            destination: flow.ips[dst],
            values: r
                .key_fields
                .iter()
                .map(|f| field(ev, f, request_index))
                .collect(),
            client: flow.ips[client],
            server: flow.ips[1 - client],
            port: flow.ports[1 - client],
            protocol: ev.protocol(),
            request,
            code: describe(ev).map_or(u32::MAX, |u| u.code),
            epoch: self.boundaries.partition_point(|&b| b <= ts) as u32,
        };
        let window = self.window;
        if let Some(&id) = self.keys.get(&key) {
            let c = &mut self.counts[id as usize];
            if ts - c.last <= window {
                c.repeats += 1;
                c.last = c.last.max(ts);
                if answerable && ev.txn != 0 {
                    out.repeats.push(id);
                }
                return;
            }
        }
        if self.keys.len() >= MAX_KEYS {
            self.keys.clear(); // the counts stay; new findings cross again
        }
        let id = self.counts.len() as u32;
        self.counts.push(Counts {
            last: ts,
            ..Default::default()
        });
        self.keys.insert(key, id);
        out.hits.push((rule, id));
    }

    /// A response to a request that counted repeats: the device's answer, on those keys.
    pub fn settle(&mut self, keys: &[u32], accepted: bool, reason: Option<String>) {
        for &id in keys {
            let c = &mut self.counts[id as usize];
            if accepted {
                c.accepted += 1;
            } else {
                c.rejected += 1;
                if let Some(r) = &reason {
                    *c.reasons.entry(r.clone()).or_insert(0) += 1;
                }
            }
        }
    }
}

/// Why a device refused a request, as a short key Python turns into words.
pub fn reason(ev: &Event) -> Option<String> {
    match &ev.body {
        Body::Modbus(p) => p.exception_code.map(|c| format!("modbus:{c}")),
        Body::Dnp3(p) => p.iin.map(|iin| format!("dnp3:{}", iin & 0x7)),
        Body::S7(p) => {
            if p.error_class.unwrap_or(0) != 0 || p.error_code.unwrap_or(0) != 0 {
                Some(format!(
                    "s7:{}:{}",
                    p.error_class.unwrap_or(0),
                    p.error_code.unwrap_or(0)
                ))
            } else {
                p.return_codes
                    .iter()
                    .find(|&&rc| rc != 0xFF)
                    .map(|rc| format!("s7rc:{rc}"))
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_follow_python() {
        let five = Val::Int(5);
        let set = Val::List(vec![Val::Int(1), Val::Int(5)]);
        assert!(test(Op::In, &five, &set));
        assert!(!test(Op::NotIn, &five, &set));
        assert!(test(Op::NotIn, &Val::None, &set));
        assert!(!test(Op::Gt, &Val::None, &Val::Int(0)));
        assert!(test(
            Op::Between,
            &five,
            &Val::List(vec![Val::Int(5), Val::Int(9)])
        ));
        assert!(test(Op::MaskAny, &Val::Int(6), &Val::Int(2)));
        assert!(test(
            Op::Exists,
            &Val::List(vec![Val::Int(1)]),
            &Val::Int(1)
        ));
        assert!(test(Op::Exists, &Val::Str(String::new()), &Val::Int(0)));
        assert!(test(
            Op::AnyIn,
            &Val::List(vec![Val::Int(9), Val::Int(5)]),
            &set
        ));
        assert!(!test(Op::AnyNotIn, &Val::List(vec![Val::Int(5)]), &set));
    }
}
