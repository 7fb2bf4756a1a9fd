//! The record side's two modes give the same: taking each packet's records at once from
//! the packet side's flows, or working on its own copies of the flows through messages,
//! on a thread of its own while a capture is read or packet by packet. The same lines,
//! counters, hosts, edges and facts, in the same order.

use std::path::{Path, PathBuf};

use _core::engine::{Config, Engine, Fact};
use _core::output::Lines;
use _core::reader::Reader;

/// A folder of the test's own, removed when the test ends, failed or not.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!("otsec-{name}-{}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
        "{:?}\n{:?}\n{facts:?}\n{hosts:?}\n{edges:?}\n{lines}",
        engine.stats, ledger.counts
    )
}

fn engine(out: &Path, threads: bool) -> Engine {
    std::fs::create_dir_all(out).unwrap();
    let mut engine = Engine::new(Config {
        max_flows: 8,
        threads,
        cross_all: true,
        learn_for: None,
    });
    let lines = |name: &str| Lines::create(out.join(name).to_str().unwrap(), false).unwrap();
    engine.ledger.events = Some(lines("events.ndjson"));
    engine.ledger.anomalies = Some(lines("anomalies.ndjson"));
    engine
}

#[test]
fn both_modes_give_the_same() {
    let scratch = Scratch::new("threads");
    let tmp = &scratch.0;
    for path in samples() {
        let path = path.to_str().unwrap();
        let one = tmp.join("one");
        let mut alone = engine(&one, false);
        let mut reader = Reader::open(path).unwrap();
        while alone.read(&mut reader, 1, &|| false) {}
        let expected = outcome(&mut alone, &one);
        assert!(expected.len() > 1000, "{path}: too little to compare");

        let two = tmp.join("two");
        let mut paired = engine(&two, true);
        paired.batch_size = 3; // many batches, and records freed while others travel
        let mut reader = Reader::open(path).unwrap();
        while paired.read(&mut reader, 1, &|| false) {}
        assert_eq!(
            outcome(&mut paired, &two),
            expected,
            "{path}: on two threads"
        );

        let copies = tmp.join("copies");
        let mut copying = engine(&copies, true);
        let mut reader = Reader::open(path).unwrap();
        while reader.next_chunk(&mut |p| copying.packet(p)) {}
        assert_eq!(
            outcome(&mut copying, &copies),
            expected,
            "{path}: packet by packet"
        );
    }
}

/// A capture's packets as retired TPACKET_V3 blocks of `per` packets (what the kernel
/// hands the live sensor).
fn blocks(path: &str, per: usize) -> Vec<Vec<u8>> {
    let mut frames: Vec<(f64, Vec<u8>)> = Vec::new();
    let mut reader = Reader::open(path).unwrap();
    while reader.next_chunk(&mut |p| {
        frames.push((p.ts, p.data.to_vec()));
        true
    }) {}
    let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    frames
        .chunks(per)
        .map(|group| {
            let mut b = vec![0u8; 48];
            put(&mut b, 12, group.len() as u32);
            put(&mut b, 16, 48);
            for (i, (ts, data)) in group.iter().enumerate() {
                let at = b.len();
                let size = (64 + data.len()).div_ceil(16) * 16;
                b.resize(at + size, 0);
                let next = if i + 1 < group.len() { size as u32 } else { 0 };
                put(&mut b, at, next);
                put(&mut b, at + 4, ts.trunc() as u32);
                put(&mut b, at + 8, (ts.fract() * 1e9) as u32);
                put(&mut b, at + 12, data.len() as u32);
                put(&mut b, at + 16, data.len() as u32);
                b[at + 24..at + 26].copy_from_slice(&64u16.to_ne_bytes());
                b[at + 64..at + 64 + data.len()].copy_from_slice(data);
            }
            b
        })
        .collect()
}

#[test]
fn live_blocks_give_the_same_in_both_modes() {
    let scratch = Scratch::new("blocks");
    let tmp = &scratch.0;
    for path in samples() {
        let path = path.to_str().unwrap();
        let ring = blocks(path, 50);
        let mut got = Vec::new();
        for (name, threads) in [("one", false), ("two", true)] {
            let out = tmp.join(name);
            let mut e = engine(&out, threads);
            e.batch_size = 3;
            let packets: u32 = ring.iter().map(|b| e.block(b)).sum();
            assert_eq!(packets as u64, e.stats.packets);
            got.push(outcome(&mut e, &out));
        }
        assert!(got[0].len() > 1000, "{path}: too little to compare");
        assert_eq!(got[1], got[0], "{path}");
    }
}
