//! Property tests of the per-packet path on stable Rust (proptest): hostile bytes never
//! panic and never grow the parsers' state beyond their bounds; any segmentation gives the
//! same PDUs, to a dissector and through the whole engine (TCP segments of any size, IP
//! fragments in any order, from a connection's first byte on); reassembly gives back the
//! stream whatever the order of its segments.

use _core::defrag::{self, Defrag};
use _core::engine::{Config, Engine, Fact};
use _core::events::{Body, Event};
use _core::protocols::{dnp3, modbus, REGISTRY};
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

/// One side of a connection: what it sends, in order.
struct Side {
    ip: [u8; 4],
    port: u16,
    seq: u32,
}

/// A frame of `from` to `to`: Ethernet, IPv4 (identification `id`), TCP.
fn tcp_frame(
    from: &Side,
    to: &Side,
    flags: u8,
    seq: u32,
    ack: u32,
    id: u16,
    data: &[u8],
) -> Vec<u8> {
    let mut f = vec![
        0, 0x80, 0xF4, 0, 0, to.ip[3], 0, 0x0C, 0x29, 0, 0, from.ip[3], 8, 0,
    ];
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((40 + data.len()) as u16).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&[0, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&from.ip);
    f.extend_from_slice(&to.ip);
    f.extend_from_slice(&from.port.to_be_bytes());
    f.extend_from_slice(&to.port.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0x20, 0, 0, 0, 0, 0]);
    f.extend_from_slice(data);
    f
}

/// An IPv4 frame (as `tcp_frame` makes them) in fragments of `size` bytes (a multiple of
/// 8), last first when `reverse`.
fn fragments(frame: &[u8], size: usize, reverse: bool) -> Vec<Vec<u8>> {
    let (head, body) = (&frame[..34], &frame[34..]);
    let mut out: Vec<Vec<u8>> = body
        .chunks(size)
        .enumerate()
        .map(|(i, piece)| {
            let mut f = head.to_vec();
            f[16..18].copy_from_slice(&((20 + piece.len()) as u16).to_be_bytes());
            let more = if (i + 1) * size < body.len() {
                0x2000
            } else {
                0
            };
            f[20..22].copy_from_slice(&(((i * size) / 8) as u16 | more).to_be_bytes());
            f.extend_from_slice(piece);
            f
        })
        .collect();
    if reverse {
        out.reverse();
    }
    out
}

/// How a session is cut: segment sizes (taken in turn, from the first byte on) and, per
/// segment, a fragment size (0: not fragmented) and order.
#[derive(Debug, Clone)]
struct Cutting {
    sizes: Vec<usize>,
    frags: Vec<(usize, bool)>,
}

impl Cutting {
    fn whole() -> Cutting {
        Cutting {
            sizes: vec![usize::MAX],
            frags: vec![(0, false)],
        }
    }
}

/// The frames of a TCP connection to `port` carrying `exchanges` (request, answer), cut
/// as `cut` says.
fn session(port: u16, exchanges: &[(Vec<u8>, Vec<u8>)], cut: &Cutting) -> Vec<Vec<u8>> {
    let mut c = Side {
        ip: [10, 0, 0, 20],
        port: 40000,
        seq: 1000,
    };
    let mut s = Side {
        ip: [10, 0, 0, 10],
        port,
        seq: 5000,
    };
    let mut frames = vec![
        tcp_frame(&c, &s, 0x02, c.seq - 1, 0, 1, &[]),
        tcp_frame(&s, &c, 0x12, s.seq - 1, c.seq, 1, &[]),
    ];
    let (mut n, mut id) = (0usize, 100u16);
    for (req, answer) in exchanges {
        for (from_client, bytes) in [(true, req), (false, answer)] {
            let mut pos = 0;
            while pos < bytes.len() {
                let size = cut.sizes[n % cut.sizes.len()].clamp(1, bytes.len() - pos);
                let (frag, reverse) = cut.frags[n % cut.frags.len()];
                n += 1;
                id = id.wrapping_add(1);
                let piece = &bytes[pos..pos + size];
                let (from, to) = if from_client {
                    (&mut c, &mut s)
                } else {
                    (&mut s, &mut c)
                };
                let f = tcp_frame(from, to, 0x18, from.seq, to.seq, id, piece);
                from.seq = from.seq.wrapping_add(size as u32);
                pos += size;
                if frag > 0 && 20 + size > frag {
                    frames.extend(fragments(&f, frag, reverse));
                } else {
                    frames.push(f);
                }
            }
        }
    }
    frames
}

/// Every record the engine makes of these frames, without time or frame number.
fn records(frames: &[Vec<u8>]) -> Vec<String> {
    let mut engine = Engine::new(Config {
        max_flows: 100,
        threads: false,
        cross_all: true,
        learn_for: None,
    });
    for (i, f) in frames.iter().enumerate() {
        engine.packet(Packet {
            ts: 1000.0 + i as f64 * 1e-3,
            linktype: 1,
            data: f,
            wirelen: f.len() as u32,
        });
    }
    engine.finish();
    engine
        .ledger
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Event { ev, .. } => Some(format!(
                "{} {:?} {:?} {:?}",
                ev.from_client, ev.body, ev.req, ev.points
            )),
            _ => None,
        })
        .collect()
}

fn modbus_exchanges() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for tid in 1..5u16 {
        let write = [6, 0, tid as u8, 0, 100 + tid as u8];
        out.push((mbap(tid, &write), mbap(tid, &write)));
    }
    out.push((
        mbap(9, &[16, 0, 10, 0, 2, 4, 1, 2, 3, 4]),
        mbap(9, &[16, 0, 10, 0, 2]),
    ));
    out.push((mbap(10, &[3, 0, 0, 0, 2]), mbap(10, &[3, 4, 0, 7, 0, 8])));
    out
}

fn tpkt(cotp_and_data: &[u8]) -> Vec<u8> {
    let mut v = vec![3, 0];
    v.extend_from_slice(&((4 + cotp_and_data.len()) as u16).to_be_bytes());
    v.extend_from_slice(cotp_and_data);
    v
}

fn s7(rosctr: u8, reference: u16, params: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0xF0, 0x80, 0x32, rosctr, 0, 0];
    v.extend_from_slice(&reference.to_be_bytes());
    v.extend_from_slice(&(params.len() as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    if rosctr == 3 {
        v.extend_from_slice(&[0, 0]);
    }
    v.extend_from_slice(params);
    tpkt(&v)
}

fn s7_exchanges() -> Vec<(Vec<u8>, Vec<u8>)> {
    let cr = tpkt(&[
        17, 0xE0, 0, 0, 0, 1, 0, 0xC1, 2, 1, 0, 0xC2, 2, 1, 2, 0xC0, 1, 10,
    ]);
    let cc = tpkt(&[
        17, 0xD0, 0, 1, 0, 1, 0, 0xC0, 1, 10, 0xC1, 2, 1, 0, 0xC2, 2, 1, 2,
    ]);
    let setup = [0xF0, 0, 0, 1, 0, 1, 1, 0xE0];
    let mut stop = vec![0x29, 0, 0, 0, 0, 0, 9];
    stop.extend_from_slice(b"P_PROGRAM");
    vec![
        (cr, cc),
        (s7(1, 1, &setup), s7(3, 1, &setup)),
        (s7(1, 2, &stop), s7(3, 2, &[0x29])),
    ]
}

fn dnp3_frame(dst: u16, src: u16, apdu: &[u8]) -> Vec<u8> {
    let mut user = vec![0xC0 | 0x01];
    user.extend_from_slice(apdu);
    let mut f = vec![0x05, 0x64, (5 + user.len()) as u8, 0xC4];
    f.extend_from_slice(&dst.to_le_bytes());
    f.extend_from_slice(&src.to_le_bytes());
    f.extend_from_slice(&dnp3::crc(&f).to_le_bytes());
    for block in user.chunks(16) {
        f.extend_from_slice(block);
        f.extend_from_slice(&dnp3::crc(block).to_le_bytes());
    }
    f
}

fn dnp3_exchanges() -> Vec<(Vec<u8>, Vec<u8>)> {
    let operate = [
        0xC1, 5, 12, 1, 0x28, 1, 0, 3, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut answer = vec![0xC1, 129, 0, 0];
    answer.extend_from_slice(&operate[2..]);
    vec![
        (
            dnp3_frame(10, 1, &[0xC0, 1, 60, 1, 6]),
            dnp3_frame(1, 10, &[0xC0, 129, 0, 0]),
        ),
        (dnp3_frame(10, 1, &operate), dnp3_frame(1, 10, &answer)),
        (
            dnp3_frame(10, 1, &[0xC2, 13]),
            dnp3_frame(1, 10, &[0xC2, 129, 0, 0]),
        ),
    ]
}

fn cutting() -> impl Strategy<Value = Cutting> {
    (
        prop::collection::vec(
            prop_oneof![3 => 1usize..4, 2 => 4usize..11, 1 => 11usize..300],
            1..40,
        ),
        prop::collection::vec(
            (
                prop::sample::select(vec![0usize, 0, 8, 16, 24, 48]),
                any::<bool>(),
            ),
            1..8,
        ),
    )
        .prop_map(|(sizes, frags)| Cutting { sizes, frags })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any segmentation (from one byte a segment on, cuts in the first bytes included)
    /// and any IP fragmentation of a session: the same records as the session whole.
    #[test]
    fn any_cutting_of_a_session_gives_the_same_records(cut in cutting(), which in 0usize..3) {
        let (port, exchanges) = match which {
            0 => (502, modbus_exchanges()),
            1 => (102, s7_exchanges()),
            _ => (20000, dnp3_exchanges()),
        };
        let whole = records(&session(port, &exchanges, &Cutting::whole()));
        prop_assert!(whole.len() >= 4, "{:?}", whole);
        prop_assert!(!whole.iter().any(|r| r.contains("Anomaly")), "{:?}", whole);
        let cut_up = records(&session(port, &exchanges, &cut));
        prop_assert_eq!(whole, cut_up);
    }
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
    fn defrag_survives_any_fragments(frags in prop::collection::vec(
        (0u16..4, 0u16..8192, any::<bool>(), prop::collection::vec(any::<u8>(), 0..64), any::<bool>()), 0..200)) {
        let mut d = Defrag::default();
        for (i, (id, offset, more, data, v6)) in frags.iter().enumerate() {
            let f = if *v6 {
                let mut f = vec![0x60, 0, 0, 0];
                f.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
                f.extend_from_slice(&[44, 64]);
                f.extend_from_slice(&[1; 32]);
                f.extend_from_slice(&[6, 0]);
                f.extend_from_slice(&((offset << 3) | *more as u16).to_be_bytes());
                f.extend_from_slice(&(*id as u32).to_be_bytes());
                f.extend_from_slice(data);
                f
            } else {
                let mut f = vec![0x45, 0];
                f.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
                f.extend_from_slice(&id.to_be_bytes());
                f.extend_from_slice(&(offset | if *more { 0x2000 } else { 0 }).to_be_bytes());
                f.extend_from_slice(&[64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
                f.extend_from_slice(data);
                f
            };
            if let Some(whole) = d.add(&f, 0, if *v6 { 0x86DD } else { 0x0800 }, i as f64) {
                prop_assert!(whole.bytes.len() <= 65_535 + 40);
            }
            prop_assert!(d.stats.held_bytes <= defrag::MAX_BYTES as u64);
            prop_assert!(d.stats.in_progress <= defrag::MAX_DATAGRAMS as u64);
        }
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
