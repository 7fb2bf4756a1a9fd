//! Property tests of the per-packet path on stable Rust (proptest): hostile bytes never
//! panic and never grow the parsers' state beyond their bounds; any segmentation gives the
//! same PDUs; reassembly gives back the stream whatever the order of its segments.

use _core::engine::{Config, Engine};
use _core::events::{Body, Event};
use _core::protocols::{modbus, REGISTRY};
use _core::reader::{Packet, Reader};
use _core::reassembly::{Chunk, ReassemblyStats, Tag, TcpStream};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 600,
        ..ProptestConfig::default()
    }
}

fn mbap(tid: u16, pdu: &[u8]) -> Vec<u8> {
    let mut v = tid.to_be_bytes().to_vec();
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    v.push(1);
    v.extend_from_slice(pdu);
    v
}

fn modbus_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for tid in 0..20u16 {
        s.extend(mbap(tid, &[3, 0, 0, 0, 10]));
        s.extend(mbap(tid, &[16, 0, 10, 0, 2, 4, 1, 2, 3, 4]));
        s.extend(mbap(tid, &[8, 0, 4, 0, 0]));
    }
    s
}

fn codes(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Modbus(p) => Some(p.function_code),
            _ => None,
        })
        .collect()
}

/// Packets, their times, and whether reading stopped at a corrupt record.
fn read(file: Vec<u8>) -> (usize, Vec<f64>, bool) {
    let mut r = Reader::from_reader("t".into(), Box::new(std::io::Cursor::new(file)), 0).unwrap();
    let mut times = Vec::new();
    while r.next_chunk(&mut |p: Packet<'_>| {
        times.push(p.ts);
        true
    }) {}
    (times.len(), times, r.corrupt)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn dissectors_survive_any_bytes(chunks in prop::collection::vec(
        (prop::collection::vec(any::<u8>(), 0..400), any::<bool>(), any::<bool>()), 0..12)) {
        for kind in &REGISTRY {
            let mut p = (kind.parser)();
            let mut out = Vec::new();
            for (data, from_client, gap) in &chunks {
                p.feed(data, *from_client, *gap, &mut out);
                p.feed_datagram(data, *from_client, &mut out);
            }
            let (buffered, pending, partial) = p.held();
            prop_assert!(buffered <= 70_000, "{:?} buffers {}", kind, buffered);
            prop_assert!(pending <= 512 && partial <= 70_000);
        }
    }

    #[test]
    fn mutated_modbus_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut s = modbus_stream();
        let n = s.len();
        for (at, v) in edits {
            s[at % n] = v;
        }
        let mut p = (modbus::DISSECTOR.parser)();
        let mut out = Vec::new();
        p.feed(&s, true, false, &mut out);
    }

    #[test]
    fn any_segmentation_gives_the_same_pdus(cuts in prop::collection::vec(any::<usize>(), 0..30)) {
        let s = modbus_stream();
        let mut whole = Vec::new();
        (modbus::DISSECTOR.parser)().feed(&s, true, false, &mut whole);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % s.len()).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut p = (modbus::DISSECTOR.parser)();
        let mut pieces = Vec::new();
        let mut last = 0;
        for c in cuts.into_iter().chain([s.len()]) {
            p.feed(&s[last..c], true, false, &mut pieces);
            last = c;
        }
        prop_assert_eq!(codes(&whole), codes(&pieces));
        prop_assert_eq!(codes(&whole).len(), 60);
    }

    #[test]
    fn reassembly_restores_the_stream(order in Just(()).prop_perturb(|_, mut rng| {
        let mut idx: Vec<usize> = (0..24).collect();
        for i in (1..idx.len()).rev() {
            let j = (rng.next_u32() as usize) % (i + 1);
            idx.swap(i, j);
        }
        idx
    }), dup in prop::collection::vec(any::<bool>(), 24)) {
        let data: Vec<u8> = (0..24 * 7).map(|i| i as u8).collect();
        let mut st = ReassemblyStats::default();
        let mut s = TcpStream::default();
        s.syn(999);
        let tag = Tag { ts: 0.0, frame: 0 };
        let mut out: Vec<Chunk> = Vec::new();
        for (n, &i) in order.iter().enumerate() {
            let seg = &data[i * 7..i * 7 + 7];
            s.add(&mut st, 1000 + (i * 7) as u32, seg, tag, &mut out);
            if dup[n] {
                s.add(&mut st, 1000 + (i * 7) as u32, seg, tag, &mut out);
            }
        }
        s.flush(&mut st, &mut out);
        let got: Vec<u8> = out.iter().flat_map(|c| c.data.clone()).collect();
        prop_assert_eq!(got, data);
        prop_assert_eq!(st.gaps, 0);
    }

    #[test]
    fn reader_survives_any_file(body in prop::collection::vec(any::<u8>(), 0..3000), ng in any::<bool>()) {
        let mut file = if ng {
            let mut v = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
            v.extend_from_slice(&[0xff; 8]);
            v.extend_from_slice(&[28, 0, 0, 0]);
            v
        } else {
            let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
            v.extend_from_slice(&[0; 8]);
            v.extend_from_slice(&65535u32.to_le_bytes());
            v.extend_from_slice(&1u32.to_le_bytes());
            v
        };
        file.extend_from_slice(&body);
        let mut r = Reader::from_reader("t".into(), Box::new(std::io::Cursor::new(file)), 0).unwrap();
        let mut engine = Engine::new(Config { max_flows: 1000, threads: false, cross_all: true, learn_for: None });
        let mut n = 0;
        while r.next_chunk(&mut |p: Packet<'_>| { n += 1; engine.packet(p) }) {}
        engine.finish();
        prop_assert!(n <= body.len());
    }

    #[test]
    fn engine_survives_any_frame(frames in prop::collection::vec(
        (prop::sample::select(vec![0u32, 1, 101, 108, 113, 276, 228, 229, 999]),
         prop::collection::vec(any::<u8>(), 0..300)), 0..40), threads in any::<bool>()) {
        let mut engine = Engine::new(Config { max_flows: 50, threads, cross_all: true, learn_for: None });
        for (i, (lt, data)) in frames.iter().enumerate() {
            engine.packet(Packet { ts: i as f64, linktype: *lt, data, wirelen: data.len() as u32 });
        }
        engine.finish();
        prop_assert_eq!(engine.stats.packets, frames.len() as u64);
    }
}

proptest! {
    // each case reads two files through a reader's 4 MiB buffer: fewer cases
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mutated_headers_never_refuse_intact_records(
        pcap_header in prop::collection::vec(any::<u8>(), 20),
        shb in prop::collection::vec(any::<u8>(), 12),
        idb in prop::collection::vec(any::<u8>(), 8),
        tsresol in any::<u8>(),
        tsoffset in any::<i64>(),
        ticks in prop::collection::vec(any::<u64>(), 0..3),
    ) {
        // a pcap file's header after its magic: any version, zone, snap length, link type
        let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1];
        file.extend_from_slice(&pcap_header);
        for i in 0..8u32 {
            for v in [1_700_000_000 + i, i * 1000, 40, 40] {
                file.extend_from_slice(&v.to_le_bytes());
            }
            file.extend_from_slice(&[i as u8; 40]);
        }
        let (n, times, corrupt) = read(file);
        prop_assert_eq!((n, corrupt), (8, false));
        prop_assert!(times.iter().all(|t| (1.7e9..1.8e9).contains(t)));
        // a pcapng file: any version, section length, link type, snap length and timestamp
        // options; a few records with any time
        let block = |btype: u32, body: &[u8]| -> Vec<u8> {
            let n = (body.len() + 12) as u32;
            let mut b = btype.to_le_bytes().to_vec();
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(body);
            b.extend_from_slice(&n.to_le_bytes());
            b
        };
        let mut head = vec![0x4d, 0x3c, 0x2b, 0x1a];
        head.extend_from_slice(&shb);
        let mut file = block(0x0A0D0D0A, &head);
        let mut iface = idb.clone();
        iface.extend_from_slice(&[9, 0, 1, 0, tsresol, 0, 0, 0, 14, 0, 8, 0]);
        iface.extend_from_slice(&tsoffset.to_le_bytes());
        iface.extend_from_slice(&[0; 4]);
        file.extend(block(1, &iface));
        for i in 0..8u64 {
            let t = ticks.get(i as usize % 4).copied().unwrap_or(1_700_000_000_000_000 + i);
            let mut epb = 0u32.to_le_bytes().to_vec();
            epb.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(t as u32).to_le_bytes());
            epb.extend_from_slice(&40u32.to_le_bytes());
            epb.extend_from_slice(&40u32.to_le_bytes());
            epb.extend_from_slice(&[i as u8; 40]);
            file.extend(block(6, &epb));
        }
        let (n, times, corrupt) = read(file);
        prop_assert_eq!((n, corrupt), (8, false));
        prop_assert!(times.iter().all(|t| (0.0..=_core::reader::MAX_TS).contains(t)));
    }
}
