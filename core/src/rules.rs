//! The rule set, compiled into a matcher the core applies to every record, so that steady
//! traffic never reaches Python: a rule's conditions on record fields, its threshold, and
//! the folding of repeats (same rule, actor, target, grouping values and context) into
//! counters. Only the first record of each such finding crosses into Python, which owns
//! the policy (messages, site suppressions, maintenance windows, the baseline).
//!
//! Conditions on what no record holds (hosts' roles, the baseline's state, the functions
//! it learned) are read from a [`Context`] that Python keeps filled: roles are Python's
//! policy, so the core asks Python for a host's role when it holds none (or one that may
//! have changed) and keeps the answer. Rules with conditions the core cannot evaluate at
//! all (computed text) are *passthrough*: the core checks what it can and hands every
//! candidate over.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::decode::Addr;
use crate::events::{Body, Event, Proto};
use crate::flows::Flow;

/// A value as rules see it: Python's `int`, `bool` (as 0/1), `str`, `None` or a list.
/// Names the core knows (directions, protocols, anomaly kinds) are static strings, so
/// matching them allocates nothing.
#[derive(Clone, Debug)]
pub enum Val {
    None,
    Int(i64),
    Sym(&'static str),
    Str(String),
    List(Vec<Val>),
}

impl Val {
    fn text(&self) -> Option<&str> {
        match self {
            Val::Sym(s) => Some(s),
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Val::None => 0,
            Val::Int(_) => 1,
            Val::Sym(_) | Val::Str(_) => 2,
            Val::List(_) => 3,
        }
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::None, Val::None) => true,
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::List(a), Val::List(b)) => a == b,
            _ => match (self.text(), other.text()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }
}

impl Eq for Val {}

impl std::hash::Hash for Val {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.rank().hash(h);
        match self {
            Val::Int(i) => i.hash(h),
            Val::List(l) => l.hash(h),
            other => other.text().hash(h),
        }
    }
}

impl PartialOrd for Val {
    fn partial_cmp(&self, other: &Val) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Val {
    fn cmp(&self, other: &Val) -> std::cmp::Ordering {
        match (self, other) {
            (Val::Int(a), Val::Int(b)) => a.cmp(b),
            (Val::List(a), Val::List(b)) => a.cmp(b),
            _ => match (self.text(), other.text()) {
                (Some(a), Some(b)) => a.cmp(b),
                _ => self.rank().cmp(&other.rank()),
            },
        }
    }
}

impl Val {
    fn is_empty(&self) -> bool {
        match self {
            Val::None => true,
            Val::Str(s) => s.is_empty(),
            Val::Sym(s) => s.is_empty(),
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

/// Field ids: positions in `FIELDS`.
pub mod f {
    pub const PROTOCOL: u8 = 0;
    pub const DIRECTION: u8 = 1;
    pub const TCP_CLIENT: u8 = 2;
    pub const KIND: u8 = 3;
    pub const DETAIL_TEXT: u8 = 4;
    pub const REQUEST_INDEX: u8 = 5;
    pub const TRANSACTION_ID: u8 = 6;
    pub const UNIT_ID: u8 = 7;
    pub const FUNCTION_CODE: u8 = 8;
    pub const LENGTH: u8 = 9;
    pub const EXCEPTION_CODE: u8 = 10;
    pub const SUBFUNCTION: u8 = 11;
    pub const MEI_TYPE: u8 = 12;
    pub const ADDRESS: u8 = 13;
    pub const QUANTITY: u8 = 14;
    pub const VALUE: u8 = 15;
    pub const WRITE_ADDRESS: u8 = 16;
    pub const WRITE_QUANTITY: u8 = 17;
    pub const UMAS_FUNCTION: u8 = 18;
    pub const SERVER_ID: u8 = 19;
    pub const RUN_INDICATOR: u8 = 20;
    pub const ANOMALIES: u8 = 21;
    pub const ROSCTR: u8 = 22;
    pub const PDU_REFERENCE: u8 = 23;
    pub const ERROR_CLASS: u8 = 24;
    pub const ERROR_CODE: u8 = 25;
    pub const GROUP: u8 = 26;
    pub const USERDATA_TYPE: u8 = 27;
    pub const SZL_ID: u8 = 28;
    pub const SZL_INDEX: u8 = 29;
    pub const PI_SERVICE: u8 = 30;
    pub const BLOCK_TYPE: u8 = 31;
    pub const BLOCK_NUMBER: u8 = 32;
    pub const ITEMS_AREA: u8 = 33;
    pub const ITEMS_DB: u8 = 34;
    pub const VERSION: u8 = 35;
    pub const OPCODE: u8 = 36;
    pub const SEQUENCE: u8 = 37;
    pub const INTEGRITY: u8 = 38;
    pub const SOURCE_ADDRESS: u8 = 39;
    pub const DESTINATION_ADDRESS: u8 = 40;
    pub const APP_CONTROL: u8 = 41;
    pub const IIN: u8 = 42;
    pub const LINK_FUNCTION: u8 = 43;
    pub const OBJECTS_GROUP: u8 = 44;
    pub const OBJECTS_VARIATION: u8 = 45;
    pub const OBJECTS_QUALIFIER: u8 = 46;
    pub const REQUEST_FUNCTION_CODE: u8 = 47;
    pub const REQUEST_SUBFUNCTION: u8 = 48;
    pub const REQUEST_GROUP: u8 = 49;
}

/// Fields no single record holds, read from the [`Context`]; their ids start at
/// `CONTEXT_BASE`. They may be conditions, never grouping or threshold fields.
pub const CONTEXT_FIELDS: &[&str] = &[
    "source_role",
    "destination_role",
    "baseline_state",
    "function_learned",
];
pub const CONTEXT_BASE: u8 = 64;

/// The id of a field name (see `FIELDS` and `CONTEXT_FIELDS`).
pub fn field_id(name: &str) -> Option<u8> {
    FIELDS
        .iter()
        .position(|&n| n == name)
        .map(|i| i as u8)
        .or_else(|| {
            CONTEXT_FIELDS
                .iter()
                .position(|&n| n == name)
                .map(|i| CONTEXT_BASE + i as u8)
        })
}

/// A role Python decided for an address (see `Context::role`).
#[derive(Clone, Debug)]
struct Role {
    role: Val,
    /// capture time until which it stands unless the host changes (the policy says:
    /// roles decided by rates and time stand shorter; the baseline's forever)
    until: f64,
    /// the baseline's: stands whatever the host does
    lasting: bool,
}

/// Asks the policy for the role of an address at a capture time: (role, until).
pub type AskRole<'a> = dyn FnMut(&Addr, f64) -> (Val, f64) + 'a;

/// Roles kept before the live ones are all forgotten (they are asked for again).
const MAX_ROLES: usize = 100_000;

/// What rules may ask that no record holds, kept filled by Python.
#[derive(Default)]
pub struct Context {
    roles: FxHashMap<Addr, Role>,
    /// None: no baseline; Some(t): learning before t, protecting from t
    pub protect_from: Option<f64>,
    /// the baseline's functions: (edge, request?, code)
    learned: FxHashSet<(crate::watch::EdgeRef, bool, u32)>,
}

impl Context {
    /// Roles decided: (address, role, until); `lasting`: the baseline's (a live decision
    /// never replaces one of those).
    pub fn set_roles(&mut self, roles: impl IntoIterator<Item = (Addr, Val, f64)>, lasting: bool) {
        for (ip, role, until) in roles {
            let known = self.roles.get(&ip);
            if !lasting && known.is_some_and(|r| r.lasting) {
                continue;
            }
            if known.is_none() && self.roles.len() >= MAX_ROLES {
                self.roles.retain(|_, r| r.lasting);
            }
            let until = if lasting { f64::INFINITY } else { until };
            self.roles.insert(
                ip,
                Role {
                    role,
                    until,
                    lasting,
                },
            );
        }
    }

    /// What decides a host's role changed (it appeared, or showed new evidence, a new
    /// service or use): the policy is asked again when a rule needs it. The baseline's
    /// roles stand.
    pub fn forget_role(&mut self, ip: &Addr) {
        if self.roles.get(ip).is_some_and(|r| !r.lasting) {
            self.roles.remove(ip);
        }
    }

    pub fn set_learned(
        &mut self,
        functions: impl IntoIterator<Item = (crate::watch::EdgeRef, bool, u32)>,
    ) {
        self.learned = functions.into_iter().collect();
    }

    /// A host's role for a rule: the one held while it stands, else the policy's answer.
    fn role(&mut self, ip: &Addr, ts: f64, ask: &mut AskRole<'_>) -> &Val {
        if !self.roles.get(ip).is_some_and(|r| ts <= r.until) {
            let (role, until) = ask(ip, ts);
            self.set_roles([(*ip, role, until)], false);
        }
        self.roles.get(ip).map_or(&Val::None, |r| &r.role)
    }

    /// Test a condition on a context field.
    fn test(
        &mut self,
        id: u8,
        (op, want): (Op, &Val),
        (flow, ev, ts): (&Flow, &Event, f64),
        ask: &mut AskRole<'_>,
    ) -> bool {
        let sender = flow.sender(ev.from_client);
        let value = match id - CONTEXT_BASE {
            0 | 1 => {
                let ip = flow.ips[if id == CONTEXT_BASE {
                    sender
                } else {
                    1 - sender
                }];
                return test(op, self.role(&ip, ts, ask), want);
            }
            2 => Val::Sym(match self.protect_from {
                None => "none",
                Some(t) if ts >= t => "protecting",
                Some(_) => "learning",
            }),
            _ => {
                let learned = crate::meaning::code(ev).is_some_and(|code| {
                    let edge = crate::watch::edge_of(flow, ev);
                    self.learned.contains(&(edge, ev.is_request(), code))
                });
                Val::Int(learned as i64)
            }
        };
        test(op, &value, want)
    }
}

pub(crate) fn int<T: Into<i64>>(v: Option<T>) -> Val {
    v.map_or(Val::None, |x| Val::Int(x.into()))
}

pub(crate) fn strs(v: &[&'static str]) -> Val {
    Val::List(v.iter().map(|s| Val::Sym(s)).collect())
}

/// The value of a field (by id) for one record (`None` when the record has no such field).
pub fn field(ev: &Event, name: u8, request_index: u64) -> Val {
    match name {
        f::PROTOCOL => {
            let p = match &ev.body {
                Body::Anomaly(a) => a.protocol.name(),
                _ => ev.protocol().name(),
            };
            return Val::Sym(p);
        }
        f::DIRECTION => {
            return Val::Sym(if ev.is_request() {
                "request"
            } else {
                "response"
            })
        }
        f::TCP_CLIENT => return Val::Int(ev.from_client as i64),
        f::REQUEST_INDEX => return Val::Int(request_index as i64),
        f::REQUEST_FUNCTION_CODE | f::REQUEST_SUBFUNCTION | f::REQUEST_GROUP => {
            let Some(r) = &ev.req else { return Val::None };
            return match name {
                f::REQUEST_FUNCTION_CODE => int(r.function_code),
                f::REQUEST_SUBFUNCTION => int(r.subfunction),
                _ => int(r.group),
            };
        }
        _ => {}
    }
    match &ev.body {
        Body::Anomaly(a) => match name {
            f::KIND => Val::Sym(a.kind),
            f::DETAIL_TEXT => Val::Str(a.detail.clone()),
            _ => Val::None,
        },
        body => match (body.record(), name) {
            (None, _) => Val::None,
            (Some(r), f::ANOMALIES) => strs(r.anomalies()),
            (Some(_), f::KIND | f::DETAIL_TEXT) => Val::Sym(""),
            (Some(r), _) => r.field(name),
        },
    }
}

/// Python's semantics of the rule operators.
pub fn test(op: Op, value: &Val, want: &Val) -> bool {
    match op {
        Op::Eq => value == want,
        Op::Ne => value != want,
        Op::In => want.items().binary_search(value).is_ok(),
        Op::NotIn => want.items().binary_search(value).is_err(),
        Op::Exists => !value.is_empty() == matches!(want, Val::Int(x) if *x != 0),
        Op::AnyIn => value
            .items()
            .iter()
            .any(|v| want.items().binary_search(v).is_ok()),
        Op::AnyNotIn => value
            .items()
            .iter()
            .any(|v| want.items().binary_search(v).is_err()),
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

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub count: usize,
    pub window: f64,
    pub by: By,
    pub distinct: Option<u8>,
}

pub struct Rule {
    /// what the rule's state (threshold windows, per-flow findings) is kept by, so that it
    /// survives a reload that adds, removes or reorders rules
    pub id: String,
    pub protocols: Vec<Proto>,
    pub anomaly: bool,
    pub conditions: Vec<(u8, Op, Val)>,
    /// the core cannot decide this rule alone: every candidate crosses, nothing folds
    pub passthrough: bool,
    pub threshold: Option<Threshold>,
    /// fields whose values tell findings of this rule apart (grouping, detail)
    pub key_fields: Vec<u8>,
    pub actor: Actor,
    pub answerable: Option<bool>,
}

/// One folded finding: everything that decides how Python treats it is in the key.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Key {
    /// the rule's number (see `Matcher::numbers`)
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
    /// an overflow key's actors: the first `MAX_NAMED` of them, and how many in all (up to
    /// `MAX_COUNTED`)
    pub actors: Vec<Addr>,
    pub actor_count: u32,
    seen: FxHashSet<Addr>,
}

impl Counts {
    fn actor(&mut self, a: Addr) {
        if self.seen.len() < MAX_COUNTED && self.seen.insert(a) {
            self.actor_count += 1;
            if self.actors.len() < MAX_NAMED {
                self.actors.push(a);
            }
        }
    }
}

/// New findings of one rule within `CAP_WINDOW` that each become an alert; beyond, they
/// fold into one overflow finding per rule (many actors at once) ...
pub const MAX_PER_RULE: u32 = 1_000;
/// ... or per rule and actor (one actor, many targets or details).
pub const MAX_PER_ACTOR: u32 = 100;
/// Seconds: the caps count anew in each (Python's alert book caps the same way).
pub const CAP_WINDOW: f64 = 3600.0;
const MAX_NAMED: usize = 100;
const MAX_COUNTED: usize = 65_536;
/// Actors' cap states kept before those of past windows are forgotten.
const MAX_CAPS: usize = 100_000;

/// What a finding that crosses is: one of its own, or the first of an overflow.
pub const OWN: u8 = 0;
pub const ACTOR_OVERFLOW: u8 = 1;
pub const RULE_OVERFLOW: u8 = 2;

/// A finding to hand over: (rule index in the current set, key id, `OWN` or an overflow).
pub type Hit = (u32, u32, u8);

/// Keys kept before the oldest are forgotten (their next finding crosses again).
const MAX_KEYS: usize = 200_000;
/// Threshold states kept before they are all forgotten (as the Python matcher does).
const MAX_WINDOWS: usize = 20_000;

enum Window {
    /// the times of the last `count` matches (small counts: exact)
    Times(VecDeque<f64>),
    /// matches per slice of the window (large counts: memory stays ~BUCKETS entries, the
    /// window's edge is exact to a slice)
    Buckets(VecDeque<(f64, u32)>, u64),
    Distinct(Vec<(Val, f64)>),
}

/// Thresholds counting more than this use `Window::Buckets`.
const EXACT_UP_TO: usize = 64;
const BUCKETS: f64 = 64.0;

#[derive(Default)]
pub struct Matcher {
    pub rules: Vec<Rule>,
    /// per rule (by index), the number of its id: state is kept by number, never by index
    numbers: Vec<u32>,
    /// every rule id seen, numbered in order of appearance (kept across reloads)
    names: FxHashMap<String, u32>,
    /// where the rules that may match a record are found (see rule_index.rs)
    index: crate::rule_index::Index,
    candidates: Vec<u32>,
    /// findings of one key closer than this fold together (the alert window)
    pub window: f64,
    /// sorted times at which policy changes (maintenance windows open or close)
    pub boundaries: Vec<f64>,
    keys: FxHashMap<Key, u32>,
    /// the counts of key ids `base..`: ids below were given before the last reload (flows
    /// may still hold them; they no longer count)
    counts: Vec<Counts>,
    base: u32,
    /// threshold states by (rule number, party)
    windows: FxHashMap<(u32, Addr), Window>,
    /// new findings per rule number (and actor) in the current cap window: (since, count)
    caps: FxHashMap<(u32, Option<Addr>), (f64, u32)>,
    pub context: Context,
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
        let mut m = Matcher::default();
        m.reload(rules, window, boundaries);
        m
    }

    /// A new rule set from the next record on (the caller holds the matcher: no record is
    /// between two sets). Threshold windows of rules whose id and threshold stand are kept;
    /// folded findings start again (their next record crosses, as Python's counters restart).
    pub fn reload(&mut self, mut rules: Vec<Rule>, window: f64, boundaries: Vec<f64>) {
        let before: FxHashMap<u32, Option<Threshold>> = self
            .numbers
            .iter()
            .zip(&self.rules)
            .map(|(&n, r)| (n, r.threshold.clone()))
            .collect();
        self.numbers = rules.iter().map(|r| self.number(&r.id)).collect();
        let kept: FxHashSet<u32> = self
            .numbers
            .iter()
            .zip(&rules)
            .filter(|(n, r)| before.get(n).is_some_and(|t| *t == r.threshold))
            .map(|(&n, _)| n)
            .collect();
        self.windows.retain(|(n, _), _| kept.contains(n));
        self.base += self.counts.len() as u32;
        self.counts.clear();
        self.keys.clear();
        self.window = window;
        self.boundaries = boundaries;
        let m = self;
        let mut placed = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter_mut().enumerate() {
            let mut codes: Option<Vec<i64>> = None;
            let mut request: Option<bool> = None;
            // the function code and direction conditions become where the rule is indexed
            r.conditions.retain(|(field, op, want)| {
                let ints = |l: &[Val]| -> Option<Vec<i64>> {
                    l.iter()
                        .map(|v| match v {
                            Val::Int(i) => Some(*i),
                            _ => None,
                        })
                        .collect()
                };
                match (*field, op, want) {
                    (f::FUNCTION_CODE, Op::Eq, Val::Int(c)) if codes.is_none() => {
                        codes = Some(vec![*c]);
                        false
                    }
                    (f::FUNCTION_CODE, Op::In, Val::List(l))
                        if codes.is_none() && ints(l).is_some() =>
                    {
                        codes = ints(l);
                        false
                    }
                    (f::DIRECTION, Op::Eq, v) if request.is_none() && v.text().is_some() => {
                        request = Some(v.text() == Some("request"));
                        false
                    }
                    _ => true,
                }
            });
            for (_, op, want) in &mut r.conditions {
                if let (Op::In | Op::NotIn | Op::AnyIn | Op::AnyNotIn, Val::List(items)) =
                    (op, want)
                {
                    items.sort(); // membership tests search it
                }
            }
            // a rule is found by the function codes and direction it names, then by one
            // value it tests for equality: most records meet none of the rules
            let directions = match request {
                Some(d) => vec![d],
                None => vec![true, false],
            };
            let mut places = Vec::new();
            for &p in &r.protocols {
                for &d in &directions {
                    let slot = (p, r.anomaly, d);
                    match &codes {
                        Some(codes) => places.extend(codes.iter().map(|&c| (slot, Some(c)))),
                        None => places.push((slot, None)),
                    }
                }
            }
            let keys = crate::rule_index::keys(&r.conditions);
            placed.push((i as u32, places, keys));
        }
        m.index = crate::rule_index::Index::build(placed);
        m.rules = rules;
    }

    /// The number of a rule id (given on first sight, kept for the matcher's life).
    fn number(&mut self, id: &str) -> u32 {
        if let Some(&n) = self.names.get(id) {
            return n;
        }
        let n = self.names.len() as u32;
        self.names.insert(id.to_string(), n);
        n
    }

    /// The counts of a key id given since the last reload.
    pub fn counts(&self, id: u32) -> Option<&Counts> {
        self.counts.get(id.checked_sub(self.base)? as usize)
    }

    /// Every key id given since the last reload, with its counts.
    pub fn all_counts(&self) -> impl Iterator<Item = (u32, &Counts)> {
        (self.base..).zip(&self.counts)
    }

    fn counts_mut(&mut self, id: u32) -> Option<&mut Counts> {
        counted(&mut self.counts, self.base, id)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Does a rule ask for a host's role?
    pub fn asks_roles(&self) -> bool {
        let roles = CONTEXT_BASE..CONTEXT_BASE + 2;
        self.rules
            .iter()
            .any(|r| r.conditions.iter().any(|(id, _, _)| roles.contains(id)))
    }

    /// The rules on one record; `ask` gives the policy's role of a host the context does
    /// not hold.
    pub fn evaluate(
        &mut self,
        flow: &mut Flow,
        ev: &Event,
        ts: f64,
        request_index: u64,
        ask: &mut AskRole<'_>,
    ) -> Verdict {
        let mut out = Verdict::default();
        let anomaly = matches!(ev.body, Body::Anomaly(_));
        let proto = ev.protocol();
        let request = ev.is_request();
        let code = match field(ev, f::FUNCTION_CODE, request_index) {
            Val::Int(c) => Some(c),
            _ => None,
        };
        let slot = (proto, anomaly, request);
        // the candidates' indices are copied out (the matcher changes while they run) into
        // a buffer kept between records, so the steady state allocates nothing
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        let value = |id: u8| field(ev, id, request_index);
        if let Some(c) = code {
            self.index
                .candidates((slot, Some(c)), &value, &mut candidates);
        }
        self.index.candidates((slot, None), &value, &mut candidates);
        for &i in &candidates {
            let i = i as usize;
            let rule = &self.rules[i];
            let context = &mut self.context;
            let ok = rule.conditions.iter().all(|(id, op, want)| {
                if *id < CONTEXT_BASE {
                    return test(*op, &field(ev, *id, request_index), want);
                }
                context.test(*id, (*op, want), (flow, ev, ts), ask)
            });
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
        self.candidates = candidates;
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
        let key = (self.numbers[i], Self::party(flow, ev, t.by));
        if !self.windows.contains_key(&key) && self.windows.len() > MAX_WINDOWS {
            self.windows.clear();
        }
        let state = self.windows.entry(key).or_insert_with(|| match t.distinct {
            Some(_) => Window::Distinct(Vec::new()),
            None if t.count > EXACT_UP_TO => Window::Buckets(VecDeque::new(), 0),
            None => Window::Times(VecDeque::new()),
        });
        match state {
            Window::Distinct(seen) => {
                let value = field(ev, t.distinct.unwrap(), request_index);
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
            Window::Buckets(buckets, total) => {
                let slice = t.window / BUCKETS;
                while buckets
                    .front()
                    .is_some_and(|(start, _)| ts - start >= t.window)
                {
                    *total -= buckets.pop_front().unwrap().1 as u64;
                }
                match buckets.back_mut() {
                    Some((start, n)) if ts - *start < slice => *n += 1,
                    _ => buckets.push_back((ts, 1)),
                }
                *total += 1;
                *total >= t.count as u64
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

    /// The key of a finding, recognised without building it when the flow's last finding
    /// of this rule had the same fingerprint (steady repeats: no allocation, one hash).
    /// The flow remembers it by the rule's number, which a reload never gives another rule.
    fn found(
        &mut self,
        rule: u32,
        flow: &mut Flow,
        ev: &Event,
        ts: f64,
        request_index: u64,
        out: &mut Verdict,
    ) {
        use std::hash::{Hash, Hasher};
        let number = self.numbers[rule as usize];
        let r = &self.rules[rule as usize];
        let swap = r.actor == Actor::Receiver || (r.actor == Actor::TcpClient && !ev.from_client);
        let request = ev.is_request();
        let answerable = r
            .answerable
            .unwrap_or(!matches!(ev.body, Body::Anomaly(_)) && request && !swap);
        let epoch = self.boundaries.partition_point(|&b| b <= ts) as u32;
        let mut h = rustc_hash::FxHasher::default();
        (swap, ev.from_client, request, epoch).hash(&mut h);
        crate::meaning::code(ev).hash(&mut h);
        for &id in &r.key_fields {
            field(ev, id, request_index).hash(&mut h);
        }
        let print = h.finish();
        let cached = flow
            .hits
            .iter()
            .find(|(n, p, _)| *n == number && *p == print)
            .map(|x| x.2);
        let window = self.window;
        let counts = cached.and_then(|id| Some(id).zip(counted(&mut self.counts, self.base, id)));
        let id = match counts {
            Some((id, c)) if ts - c.last <= window => {
                c.repeats += 1;
                c.last = c.last.max(ts);
                id
            }
            _ => {
                let sender = flow.sender(ev.from_client);
                let (src, dst) = if swap {
                    (1 - sender, sender)
                } else {
                    (sender, 1 - sender)
                };
                let client = flow.client_side();
                let key = Key {
                    rule: number,
                    source: flow.ips[src],
                    destination: flow.ips[dst],
                    values: r
                        .key_fields
                        .iter()
                        .map(|&id| field(ev, id, request_index))
                        .collect(),
                    client: flow.ips[client],
                    server: flow.ips[1 - client],
                    port: flow.ports[1 - client],
                    protocol: ev.protocol(),
                    request,
                    code: crate::meaning::code(ev).unwrap_or(u32::MAX),
                    epoch,
                };
                let (id, new) = self.key(key, ts, rule, out);
                flow.hits.retain(|(n, _, _)| *n != number);
                if flow.hits.len() >= 8 {
                    flow.hits.remove(0);
                }
                flow.hits.push((number, print, id));
                if new {
                    return; // a first finding: it crosses, and Python settles it
                }
                id
            }
        };
        if answerable && ev.txn != 0 {
            out.repeats.push(id);
        }
    }

    /// The id of a finding's key, and whether it is new (a hit) rather than a repeat.
    /// Beyond the caps a new finding folds into its rule's (or actor's) overflow key, so
    /// that a flood of spoofed sources costs a count here, not an alert each in Python.
    fn key(&mut self, key: Key, ts: f64, rule: u32, out: &mut Verdict) -> (u32, bool) {
        if let Some(id) = self.repeat(&key, ts) {
            return (id, false);
        }
        let actor = key.source;
        let fold = if self.capped((key.rule, Some(actor)), ts, MAX_PER_ACTOR) {
            ACTOR_OVERFLOW
        } else if self.capped((key.rule, None), ts, MAX_PER_RULE) {
            RULE_OVERFLOW
        } else {
            OWN
        };
        let key = if fold == OWN {
            for cap in [(key.rule, Some(actor)), (key.rule, None)] {
                if let Some(c) = self.caps.get_mut(&cap) {
                    c.1 += 1;
                }
            }
            key
        } else {
            Key {
                source: if fold == ACTOR_OVERFLOW {
                    actor
                } else {
                    Addr::default()
                },
                destination: Addr::default(),
                values: Vec::new(),
                client: Addr::default(),
                server: Addr::default(),
                port: 0,
                code: u32::MAX,
                ..key
            }
        };
        if fold != OWN {
            if let Some(id) = self.repeat(&key, ts) {
                if let Some(c) = self.counts_mut(id) {
                    c.actor(actor);
                }
                return (id, false);
            }
        }
        if self.keys.len() >= MAX_KEYS {
            self.keys.clear(); // the counts stay; new findings cross again
        }
        let id = self.base + self.counts.len() as u32;
        let mut counts = Counts {
            last: ts,
            ..Default::default()
        };
        if fold != OWN {
            counts.actor(actor);
        }
        self.counts.push(counts);
        self.keys.insert(key, id);
        out.hits.push((rule, id, fold));
        (id, true)
    }

    /// A repeat of a known key within the window: counted, and its id.
    fn repeat(&mut self, key: &Key, ts: f64) -> Option<u32> {
        let window = self.window;
        let id = *self.keys.get(key)?;
        let c = self.counts_mut(id)?;
        if ts - c.last > window {
            return None;
        }
        c.repeats += 1;
        c.last = c.last.max(ts);
        Some(id)
    }

    /// Whether the cap of a rule (or of a rule and actor) is used up in its window.
    fn capped(&mut self, cap: (u32, Option<Addr>), ts: f64, max: u32) -> bool {
        if self.caps.len() >= MAX_CAPS && !self.caps.contains_key(&cap) {
            // past windows go, then actors seen once (a spoofed flood's); never more than
            // half is kept, so this runs once per MAX_CAPS / 2 new actors at most
            self.caps
                .retain(|(_, a), (since, n)| a.is_none() || (ts - *since < CAP_WINDOW && *n > 1));
            if self.caps.len() >= MAX_CAPS / 2 {
                self.caps.retain(|(_, a), _| a.is_none());
            }
        }
        let c = self.caps.entry(cap).or_insert((ts, 0));
        if ts - c.0 >= CAP_WINDOW {
            *c = (ts, 0);
        }
        c.1 >= max
    }

    /// A response to a request that counted repeats: the device's answer, on those keys.
    pub fn settle(&mut self, keys: &[u32], accepted: bool, reason: Option<String>) {
        for &id in keys {
            let Some(c) = self.counts_mut(id) else {
                continue; // given before a reload: its finding no longer counts
            };
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

/// The counts of key `id`, of those given from `base` on.
fn counted(counts: &mut [Counts], base: u32, id: u32) -> Option<&mut Counts> {
    counts.get_mut(id.checked_sub(base)? as usize)
}

/// Why a device refused a request, as a short key Python turns into words.
pub fn reason(ev: &Event) -> Option<String> {
    ev.body.record()?.refusal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_kept_until_it_may_change() {
        let (plc, hmi) = (Addr::new(&[10, 0, 0, 10]), Addr::new(&[10, 0, 0, 20]));
        let mut ctx = Context::default();
        let mut asked = Vec::new();
        let mut ask = |ip: &Addr, ts: f64| {
            asked.push((*ip, ts));
            (Val::Str("hmi".into()), ts + 60.0)
        };
        assert_eq!(ctx.role(&hmi, 0.0, &mut ask), &Val::Str("hmi".into()));
        ctx.role(&hmi, 30.0, &mut ask); // held
        ctx.role(&hmi, 61.0, &mut ask); // past its time: asked again
        ctx.forget_role(&hmi); // the host changed
        ctx.role(&hmi, 62.0, &mut ask);
        ctx.set_roles([(plc, Val::Str("plc".into()), 0.0)], true); // the baseline's
        ctx.set_roles([(plc, Val::Str("hmi".into()), 9.0)], false);
        ctx.forget_role(&plc);
        assert_eq!(ctx.role(&plc, 1e9, &mut ask), &Val::Str("plc".into()));
        assert_eq!(asked, vec![(hmi, 0.0), (hmi, 61.0), (hmi, 62.0)]);
    }

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
