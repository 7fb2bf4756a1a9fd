//! Rules reloaded mid-capture (the live sensor's SIGHUP): the same set, a larger one, a
//! smaller reordered one. No record of an existing flow may find state the old set left
//! by index; findings go on, and a threshold counting across the reload still crosses
//! where it would have without it.

use std::collections::BTreeMap;
use std::path::Path;

use _core::engine::{Config, Engine, Fact};
use _core::events::Proto;
use _core::reader::{Packet, Reader};
use _core::rules::{field_id, Actor, By, Op, Rule, Threshold, Val};

fn rule(id: &str, conditions: &[(&str, Op, Val)], threshold: Option<Threshold>) -> Rule {
    Rule {
        id: id.into(),
        protocols: vec![Proto::Modbus],
        anomaly: false,
        conditions: conditions
            .iter()
            .map(|(f, op, v)| (field_id(f).unwrap(), *op, v.clone()))
            .collect(),
        passthrough: false,
        threshold,
        key_fields: vec![field_id("function_code").unwrap()],
        actor: Actor::Sender,
        answerable: None,
    }
}

fn request() -> (&'static str, Op, Val) {
    ("direction", Op::Eq, Val::Sym("request"))
}

fn codes(c: &[i64]) -> (&'static str, Op, Val) {
    let list = c.iter().map(|&c| Val::Int(c)).collect();
    ("function_code", Op::In, Val::List(list))
}

/// Rules by name: writes, every request, a scan (5 distinct functions from one client),
/// diagnostics, exceptions.
fn rules(names: &[&str]) -> Vec<Rule> {
    names
        .iter()
        .map(|&n| match n {
            "write" => rule(n, &[request(), codes(&[5, 6, 15, 16])], None),
            "request" => rule(n, &[request()], None),
            "scan" => rule(
                n,
                &[request()],
                Some(Threshold {
                    count: 5,
                    window: 600.0,
                    by: By::Client,
                    distinct: field_id("function_code"),
                }),
            ),
            "diagnostics" => rule(n, &[request(), codes(&[8])], None),
            "exception" => rule(n, &[("exception_code", Op::Exists, Val::Int(1))], None),
            _ => unreachable!(),
        })
        .collect()
}

fn frames() -> Vec<(f64, u32, Vec<u8>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/modbus-intrusion.pcap");
    let mut reader = Reader::open(path.to_str().unwrap()).unwrap();
    let mut out = Vec::new();
    while reader.next_chunk(&mut |p| {
        out.push((p.ts, p.linktype, p.data.to_vec()));
        true
    }) {}
    assert!(out.len() > 300);
    out
}

/// Feed the capture, putting in `sets[i % len]` before every `every` packets (`i` counts
/// the reloads); gives each rule's hits as (frame, key) in order, by rule id.
fn run(sets: &[&[&str]], every: usize, threads: bool) -> BTreeMap<String, Vec<(usize, u32)>> {
    let mut engine = Engine::new(Config {
        max_flows: 100,
        threads,
        cross_all: false,
        learn_for: None,
    });
    let mut hits: BTreeMap<String, Vec<(usize, u32)>> = BTreeMap::new();
    let mut reloads = 0;
    for (n, (ts, linktype, data)) in frames().iter().enumerate() {
        if n % every == 0 {
            let set = rules(sets[reloads % sets.len()]);
            engine.ledger.matcher.reload(set, 3600.0, Vec::new());
            reloads += 1;
        }
        engine.packet(Packet {
            ts: *ts,
            linktype: *linktype,
            data,
            wirelen: data.len() as u32,
        });
        for fact in std::mem::take(&mut engine.ledger.facts) {
            if let Fact::Event { found, .. } = fact {
                for (i, key, _fold) in found.hits {
                    let id = engine.ledger.matcher.rules[i as usize].id.clone();
                    hits.entry(id).or_default().push((n, key));
                }
            }
        }
    }
    hits
}

fn first(hits: &BTreeMap<String, Vec<(usize, u32)>>) -> BTreeMap<&str, usize> {
    hits.iter().map(|(id, h)| (id.as_str(), h[0].0)).collect()
}

#[test]
fn the_same_rules_reloaded_find_the_same() {
    let all: &[&str] = &["write", "request", "scan"];
    for threads in [false, true] {
        let once = run(&[all], usize::MAX, threads);
        assert_eq!(once.len(), 3, "every rule finds something: {once:?}");
        // reloaded every 3 packets: a threshold never sees 5 requests between two reloads
        let often = run(&[all], 3, threads);
        assert_eq!(first(&often), first(&once));
        for (id, h) in &often {
            assert!(h.len() >= once[id].len(), "{id}");
        }
    }
}

#[test]
fn larger_and_smaller_reordered_sets_go_on_finding() {
    let all: &[&str] = &["write", "request", "scan"];
    let larger: &[&str] = &["diagnostics", "write", "exception", "request", "scan"];
    let smaller: &[&str] = &["scan", "request"];
    let once = run(&[all], usize::MAX, false);
    for threads in [false, true] {
        let got = run(&[all, larger, smaller], 7, threads);
        // the rules in every set find what they found without reloads, from the start
        assert_eq!(first(&got)["scan"], first(&once)["scan"]);
        assert_eq!(first(&got)["request"], first(&once)["request"]);
        assert!(got.contains_key("diagnostics"), "{got:?}");
        assert!(got.contains_key("write"));
        // findings go on to the end of the capture
        let last = got["request"].last().unwrap().0;
        assert!(last >= once["request"].last().unwrap().0, "{last}");
        // a key is given once: never again after a reload
        let mut keys: Vec<u32> = got.values().flatten().map(|h| h.1).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }
}
