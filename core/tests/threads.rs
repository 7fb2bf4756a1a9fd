//! Reading a capture with the record side on its own thread gives what the engine gives
//! packet by packet: the same lines, counters, hosts, edges and facts, in the same order.

use std::path::{Path, PathBuf};

use _core::engine::{Config, Engine, Fact};
use _core::output::Lines;
use _core::reader::Reader;

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps");
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    all.sort();
    assert!(!all.is_empty());
    all
}

/// What a run leaves: its lines, counters, hosts, edges and the facts for Python.
fn outcome(engine: &mut Engine, out: &Path) -> String {
    engine.finish();
    let ledger = &engine.ledger;
    let facts: Vec<String> = ledger
        .facts
        .iter()
        .map(|f| match f {
            Fact::Event {
                flow,
                ts,
                frame,
                found,
                ..
            } => {
                format!("event {flow} {ts} {frame} {}", found.hits.len())
            }
            Fact::Tick { now, .. } => format!("tick {now}"),
            Fact::Arp { ip, ts, .. } => format!("arp {ip:?} {ts}"),
            Fact::View { flow, .. } => format!("view {flow}"),
            Fact::Probe(_) => "probe".into(),
            Fact::Availability(_) => "availability".into(),
        })
        .collect();
    let mut hosts: Vec<String> = ledger
        .aggregates
        .hosts
        .iter()
        .map(|(ip, h)| format!("{ip:?} {} {} {:?}", h.packets, h.bytes, h.evidence))
        .collect();
    hosts.sort();
    let mut edges: Vec<String> = ledger
        .aggregates
        .edges
        .iter()
        .map(|(k, e)| format!("{k:?} {} {} {}", e.packets, e.pdus, e.writes))
        .collect();
    edges.sort();
    let lines = std::fs::read_to_string(out.join("events.ndjson")).unwrap()
        + &std::fs::read_to_string(out.join("anomalies.ndjson")).unwrap();
    format!(
        "{:?}\n{facts:?}\n{hosts:?}\n{edges:?}\n{lines}",
        engine.stats()
    )
}

fn engine(out: &Path) -> Engine {
    std::fs::create_dir_all(out).unwrap();
    let mut engine = Engine::new(Config {
        max_flows: 8,
        cross_all: true,
        learn_for: None,
    });
    let lines = |name: &str| Lines::create(out.join(name).to_str().unwrap(), false).unwrap();
    engine.ledger.events = Some(lines("events.ndjson"));
    engine.ledger.anomalies = Some(lines("anomalies.ndjson"));
    engine
}

#[test]
fn two_threads_give_what_one_gives() {
    let tmp = std::env::temp_dir().join(format!("otsec-threads-{}", std::process::id()));
    for path in samples() {
        let path = path.to_str().unwrap();
        let one = tmp.join("one");
        let mut alone = engine(&one);
        let mut reader = Reader::open(path).unwrap();
        while reader.next_chunk(&mut |p| alone.packet(p)) {}
        let expected = outcome(&mut alone, &one);

        let two = tmp.join("two");
        let mut paired = engine(&two);
        paired.batch_size = 3; // many batches, and records freed while others travel
        let mut reader = Reader::open(path).unwrap();
        while paired.read(&mut reader, 1, &|| false) {}
        let got = outcome(&mut paired, &two);
        assert!(expected.len() > 1000, "{path}: too little to compare");
        assert_eq!(got, expected, "{path}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
