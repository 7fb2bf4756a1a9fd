//! Which protocol a flow speaks, judged on the first bytes of its streams.
//!
//! A stream's first PDU may arrive in segments of any size (one byte each is legal TCP),
//! so a verdict waits until the protocol's header can be judged: the bytes of each
//! direction are held (bounded) while every candidate says `More`, and all of them are
//! dissected once the protocol is known, so no PDU is lost to recognition.

use crate::protocols::{is_other_protocol, Dissector, Kind, Sniff, REGISTRY};
use crate::reassembly::Tag;

/// Bytes one direction of a flow may hold before its protocol is known: beyond them it
/// is judged on what it holds (a whole Modbus ADU, a DNP3 frame, or an ISO connection
/// request before the first S7 header fit).
pub const MAX_HELD: usize = 512;
/// Bytes all flows together may hold that way: a flow that would hold more is judged on
/// what it holds (thousands of connections trickling bytes cannot take the memory).
pub const MAX_HELD_TOTAL: u64 = 16 * 1024 * 1024;

/// What the streams of a flow delivered before its protocol was known: each direction's
/// bytes (judged together), and the pieces in the order they came, to be dissected in
/// that order once the protocol is known (their records as if it had been known at once).
#[derive(Default)]
pub struct Held {
    pub data: [Vec<u8>; 2],
    pub pieces: Vec<Piece>,
    /// the next bytes of that side do not continue what was held (lost, or judged)
    pub gap: [bool; 2],
}

/// One delivery of stream bytes: its side, length, the gap before it and its packet.
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    pub side: u8,
    pub gap: bool,
    pub len: u32,
    pub tag: Tag,
}

impl Held {
    /// What it takes of memory, for the engine's budget.
    pub fn bytes(&self) -> usize {
        self.data[0].len() + self.data[1].len() + self.pieces.len() * size_of::<Piece>()
    }

    /// Stream bytes of `side`; `gap`: bytes before them were lost.
    pub fn push(&mut self, side: usize, data: &[u8], gap: bool, tag: Tag) {
        if gap {
            self.forget(side);
        }
        let gap = std::mem::take(&mut self.gap[side]) || gap;
        self.data[side].extend_from_slice(data);
        self.pieces.push(Piece {
            side: side as u8,
            gap,
            len: data.len() as u32,
            tag,
        });
    }

    /// Drop what `side` holds (judged, or cut off by a gap): what it sends next follows a
    /// gap.
    pub fn forget(&mut self, side: usize) {
        self.data[side].clear();
        self.pieces.retain(|p| p.side as usize != side);
        self.gap[side] = true;
    }

    /// The pieces in the order they came, each with its bytes.
    pub fn replay(self, mut each: impl FnMut(usize, &[u8], bool, Tag)) {
        let mut at = [0usize; 2];
        for p in &self.pieces {
            let s = p.side as usize;
            let end = at[s] + p.len as usize;
            each(s, &self.data[s][at[s]..end], p.gap, p.tag);
            at[s] = end;
        }
    }
}

/// What the bytes of one direction say.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Judgement {
    /// this protocol; the server is on that side
    Is(Kind, usize),
    /// none of ours
    Not,
    /// too few bytes to tell
    Wait,
}

/// Judge the first bytes `data` that `side` of a flow sent. A protocol's well-known port
/// (at either end) asks that protocol alone; on any other port every protocol is asked,
/// strictly.
pub fn judge(
    ports: [u16; 2],
    client: Option<usize>,
    side: usize,
    data: &[u8],
    tcp: bool,
) -> Judgement {
    for s in [1 - side, side] {
        if let Some(k) = Dissector::by_port(tcp, ports[s]) {
            return match (k.looks_like)(data, false) {
                Sniff::Yes => Judgement::Is(k, s),
                Sniff::No => Judgement::Not,
                Sniff::More => Judgement::Wait,
            };
        }
    }
    let mut more = false;
    for k in &REGISTRY {
        match (k.looks_like)(data, true) {
            Sniff::Yes => {
                let server = match client {
                    None => 1 - side,
                    Some(c) => 1 - c,
                };
                return Judgement::Is(k, server);
            }
            Sniff::More => more = true,
            Sniff::No => {}
        }
    }
    if more && !(data.len() >= 4 && is_other_protocol(data)) {
        Judgement::Wait
    } else {
        Judgement::Not
    }
}

/// Is a protocol of ours registered on either port?
pub fn on_our_port(ports: [u16; 2], tcp: bool) -> bool {
    ports.iter().any(|&p| Dissector::by_port(tcp, p).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: [u8; 12] = [0, 1, 0, 0, 0, 6, 1, 6, 0, 10, 0, 42];

    #[test]
    fn no_verdict_before_the_header_can_be_judged() {
        for n in 0..8 {
            let j = judge([40000, 502], Some(0), 0, &WRITE[..n], true);
            assert_eq!(j, Judgement::Wait, "{n} bytes");
        }
        assert!(matches!(
            judge([40000, 502], Some(0), 0, &WRITE[..8], true),
            Judgement::Is(_, 1)
        ));
        // off the port: whole PDUs only
        for n in 1..12 {
            let j = judge([40000, 1502], None, 0, &WRITE[..n], true);
            assert_eq!(j, Judgement::Wait, "{n} bytes");
        }
        assert!(matches!(
            judge([40000, 1502], None, 0, &WRITE, true),
            Judgement::Is(_, 1)
        ));
        assert_eq!(
            judge([40000, 80], None, 0, b"GET / HTTP/1.1", true),
            Judgement::Not
        );
        assert_eq!(
            judge([40000, 502], None, 0, b"\x16\x03\x01\x02\x00", true),
            Judgement::Not
        );
    }

    #[test]
    fn s7_and_dnp3_wait_for_their_headers() {
        let mut s = vec![
            3, 0, 0, 22, 17, 0xE0, 0, 0, 0, 1, 0, 0xC1, 2, 1, 0, 0xC2, 2, 1, 2,
        ];
        s.extend_from_slice(&[0xC0, 1, 10]);
        let setup = [3, 0, 0, 25, 2, 0xF0, 0x80, 0x32, 1, 0, 0, 0, 0, 0, 8, 0, 0];
        s.extend_from_slice(&setup);
        s.extend_from_slice(&[0xF0, 0, 0, 1, 0, 1, 3, 0xC0]);
        // the connection request says nothing yet: MMS opens the same way
        for n in 0..30 {
            assert_eq!(
                judge([40000, 102], None, 0, &s[..n], true),
                Judgement::Wait,
                "{n}"
            );
            assert_eq!(
                judge([40000, 1102], None, 0, &s[..n], true),
                Judgement::Wait,
                "{n}"
            );
        }
        assert!(matches!(
            judge([40000, 102], None, 0, &s[..30], true),
            Judgement::Is(..)
        ));
        assert!(matches!(
            judge([40000, 1102], None, 0, &s, true),
            Judgement::Is(..)
        ));
        let mut mms = s[..22].to_vec();
        mms.extend_from_slice(&[3, 0, 0, 12, 2, 0xF0, 0x80, 0x0D, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(judge([40000, 102], None, 0, &mms, true), Judgement::Not);
        let link = [0x05, 0x64, 0x05, 0xC0, 1, 0, 10, 0, 0x8B, 0x2D];
        for n in 0..10 {
            assert_eq!(
                judge([40000, 20000], None, 0, &link[..n], true),
                Judgement::Wait
            );
        }
    }
}
