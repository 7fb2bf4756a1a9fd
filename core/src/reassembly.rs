//! TCP stream reassembly for one direction of a connection.
//!
//! Retransmissions and overlaps are trimmed, out-of-order segments wait (bounded) for
//! the hole to fill, and a hole that will not fill (the peer acknowledged past it, or too
//! much waits behind it) becomes a *gap*: the stream jumps ahead, counts what it skipped,
//! and tells the dissector to resynchronise on the next PDU boundary.
//!
//! Overlap policy: the bytes seen first are kept ("first"). Data that overlaps bytes
//! already seen and differs from them is the ambiguity an insertion or evasion attack
//! creates (the receiver may have kept either copy, by its operating system's policy): the
//! stream counts it as a *conflict* for the engine to report. Bytes already delivered are
//! compared while they are among the stream's last `RECENT`; bytes still waiting behind a
//! hole, always. (Choosing per target operating system which copy a host keeps, as some
//! stream engines do, is not done.)

const HALF: u32 = 0x8000_0000;
/// Segments waiting behind one hole before it is declared lost.
pub const MAX_SEGMENTS: usize = 64;
/// Bytes waiting behind one hole before it is declared lost.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;
/// Bytes waiting behind holes in all the streams of an engine together: beyond this, the
/// stream that wants to hold more gives up its holes (thousands of stalled connections
/// cannot take the memory).
pub const MAX_HELD_BYTES: u64 = 64 * 1024 * 1024;
/// Delivered bytes a stream keeps to compare retransmissions against (a Modbus ADU or a
/// DNP3 frame fits).
pub const RECENT: usize = 512;

/// Counters shared by every stream of an engine.
#[derive(Default, Clone, Copy, Debug)]
pub struct ReassemblyStats {
    pub gaps: u64,
    pub skipped_bytes: u64,
    pub retransmitted_bytes: u64,
    pub out_of_order_segments: u64,
    /// bytes waiting behind holes right now, all streams together
    pub held_bytes: u64,
    /// holes given up because the engine held `MAX_HELD_BYTES`
    pub over_budget_gaps: u64,
    /// segments whose overlapping data differed from the bytes seen first
    pub overlap_conflicts: u64,
    /// bytes that differed
    pub overlap_conflict_bytes: u64,
}

/// Overlapping data that differed from what the stream kept, not yet reported.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct Conflicts {
    /// segments
    pub segments: u32,
    /// bytes that differed
    pub bytes: u32,
    /// sequence number of the first differing byte of the first such segment
    pub seq: u32,
}

/// Where a segment came from: its packet's timestamp and frame number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tag {
    pub ts: f64,
    pub frame: u64,
}

/// In-order bytes ready to parse; `gap` says bytes before them were lost.
pub struct Chunk {
    pub data: Vec<u8>,
    pub gap: bool,
    pub tag: Tag,
}

#[derive(Default)]
pub struct TcpStream {
    pub next_seq: Option<u32>,
    /// waiting segments, in arrival order: (seq, data, tag)
    pending: Vec<(u32, Vec<u8>, Tag)>,
    pending_bytes: usize,
    pub acked: Option<u32>,
    /// the last bytes delivered, a ring: `recent_len` of them (at most `RECENT`) end at
    /// `next_seq`, the newest just before `recent_at`
    /// (grown as bytes come, up to `RECENT`: a flood of one-request flows holds a few each)
    recent: Vec<u8>,
    recent_len: u16,
    recent_at: u16,
    /// overlaps that differed since the engine last took them
    pub conflicts: Conflicts,
}

impl TcpStream {
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The next in-order segment, delivered by the caller itself (the steady state).
    pub fn advance(&mut self, seq: u32, data: &[u8]) {
        self.next_seq = Some(seq.wrapping_add(data.len() as u32));
        self.remember(data, false);
    }

    /// Keep the tail of what was delivered; after a gap the bytes kept restart.
    #[inline]
    fn remember(&mut self, data: &[u8], gap: bool) {
        if gap {
            self.recent_len = 0;
        }
        let data = &data[data.len().saturating_sub(RECENT)..];
        let at = self.recent_at as usize;
        let ring = &mut self.recent;
        // until it is full the ring ends where the next byte goes (`at` is its length)
        let need = (at + data.len()).min(RECENT);
        if ring.len() < need {
            ring.resize(need, 0);
        }
        let first = (RECENT - at).min(data.len());
        ring[at..at + first].copy_from_slice(&data[..first]);
        ring[..data.len() - first].copy_from_slice(&data[first..]);
        self.recent_at = ((at + data.len()) % RECENT) as u16;
        self.recent_len = (self.recent_len as usize + data.len()).min(RECENT) as u16;
    }

    /// Compare the part of a segment at `seq` that lies before `nxt` (already delivered)
    /// with the bytes kept; a difference is a conflict. A one-byte keep-alive probe
    /// (sequence number one before `nxt`, any byte) is no conflict.
    fn compare(&mut self, st: &mut ReassemblyStats, seq: u32, data: &[u8], nxt: u32) {
        let before = nxt.wrapping_sub(seq) as usize;
        if data.len() == 1 && before == 1 {
            return;
        }
        let kept = self.recent_len as usize;
        let lo = before.saturating_sub(kept);
        let hi = data.len().min(before);
        let ring = self.recent.as_slice();
        if lo >= hi || ring.is_empty() {
            return;
        }
        // data[i] lies `before - i` bytes before `nxt`, as does the ring's byte that far
        // behind `recent_at`
        let at = self.recent_at as usize;
        let theirs: Vec<u8> = (lo..hi)
            .map(|i| ring[(at + RECENT - (before - i)) % RECENT])
            .collect();
        let theirs = theirs.as_slice();
        conflict(
            st,
            &mut self.conflicts,
            seq.wrapping_add(lo as u32),
            &data[lo..hi],
            theirs,
        );
    }

    /// A SYN fixes the initial sequence number; data starts one after it.
    pub fn syn(&mut self, seq: u32) {
        if self.next_seq.is_none() || self.pending.is_empty() {
            self.next_seq = Some(seq.wrapping_add(1));
        }
    }

    /// Accept one segment; append the chunks now in stream order to `out`.
    pub fn add(
        &mut self,
        st: &mut ReassemblyStats,
        seq: u32,
        data: &[u8],
        tag: Tag,
        out: &mut Vec<Chunk>,
    ) {
        let nxt = match self.next_seq {
            None => {
                // picked up mid-connection
                self.next_seq = Some(seq.wrapping_add(data.len() as u32));
                self.remember(data, true);
                out.push(Chunk {
                    data: data.to_vec(),
                    gap: true,
                    tag,
                });
                return;
            }
            Some(n) => n,
        };
        let diff = seq.wrapping_sub(nxt);
        if diff == 0 {
            self.advance(seq, data);
            out.push(Chunk {
                data: data.to_vec(),
                gap: false,
                tag,
            });
            if !self.pending.is_empty() {
                self.drain(st, out);
            }
            return;
        }
        if diff >= HALF {
            // starts before what we have: a retransmission or an overlap
            let overlap = nxt.wrapping_sub(seq) as usize;
            self.compare(st, seq, data, nxt);
            if overlap >= data.len() {
                st.retransmitted_bytes += data.len() as u64;
                return;
            }
            st.retransmitted_bytes += overlap as u64;
            let rest = &data[overlap..];
            self.advance(nxt, rest);
            out.push(Chunk {
                data: rest.to_vec(),
                gap: false,
                tag,
            });
            if !self.pending.is_empty() {
                self.drain(st, out);
            }
            return;
        }
        // a hole before this segment: keep it until the hole fills or is proven lost
        st.out_of_order_segments += 1;
        match self.pending.iter().position(|p| p.0 == seq) {
            Some(i) => {
                // the bytes that came first stay; a longer copy only adds its tail
                let old = std::mem::take(&mut self.pending[i].1);
                conflict(st, &mut self.conflicts, seq, data, &old);
                let mut old = old;
                if old.len() < data.len() {
                    self.pending_bytes += data.len() - old.len();
                    st.held_bytes += (data.len() - old.len()) as u64;
                    old.extend_from_slice(&data[old.len()..]);
                }
                self.pending[i].1 = old;
            }
            None => {
                self.pending.push((seq, data.to_vec(), tag));
                self.pending_bytes += data.len();
                st.held_bytes += data.len() as u64;
            }
        }
        if self.pending_bytes > MAX_PENDING_BYTES
            || self.pending.len() > MAX_SEGMENTS
            || self.hole_acked()
        {
            self.skip_gap(st, out);
        }
        while st.held_bytes > MAX_HELD_BYTES && !self.pending.is_empty() {
            st.over_budget_gaps += 1;
            self.skip_gap(st, out);
        }
    }

    /// The peer acknowledged up to `ack`: a hole it acknowledged was lost by the capture.
    pub fn ack(&mut self, st: &mut ReassemblyStats, ack: u32, out: &mut Vec<Chunk>) {
        match self.acked {
            Some(a) if ack.wrapping_sub(a) >= HALF => {}
            _ => self.acked = Some(ack),
        }
        if !self.pending.is_empty() && self.hole_acked() {
            self.skip_gap(st, out);
        }
    }

    fn hole_acked(&self) -> bool {
        match (self.acked, self.next_seq) {
            (Some(a), Some(n)) => {
                let d = a.wrapping_sub(n);
                d > 0 && d < HALF
            }
            _ => false,
        }
    }

    /// Jump to the earliest waiting segment, counting the bytes never seen.
    pub fn skip_gap(&mut self, st: &mut ReassemblyStats, out: &mut Vec<Chunk>) {
        let nxt = match self.next_seq {
            Some(n) if !self.pending.is_empty() => n,
            _ => return,
        };
        let mut best = 0;
        for (i, p) in self.pending.iter().enumerate() {
            if p.0.wrapping_sub(nxt) < self.pending[best].0.wrapping_sub(nxt) {
                best = i;
            }
        }
        let (first, data, tag) = self.pending.remove(best);
        st.gaps += 1;
        st.skipped_bytes += first.wrapping_sub(nxt) as u64;
        self.pending_bytes -= data.len();
        st.held_bytes -= data.len() as u64;
        self.next_seq = Some(first.wrapping_add(data.len() as u32));
        self.remember(&data, true);
        out.push(Chunk {
            data,
            gap: true,
            tag,
        });
        self.drain(st, out);
    }

    /// Move waiting segments that now continue the stream into `out`.
    fn drain(&mut self, st: &mut ReassemblyStats, out: &mut Vec<Chunk>) {
        loop {
            let nxt = match self.next_seq {
                Some(n) => n,
                None => return,
            };
            let mut progressed = false;
            let mut i = 0;
            while i < self.pending.len() {
                let diff = self.pending[i].0.wrapping_sub(nxt);
                if diff == 0 || diff >= HALF {
                    let (seq, data, tag) = self.pending.remove(i);
                    self.pending_bytes -= data.len();
                    st.held_bytes -= data.len() as u64;
                    let overlap = if diff == 0 {
                        0
                    } else {
                        self.compare(st, seq, &data, nxt);
                        nxt.wrapping_sub(seq) as usize
                    };
                    if overlap < data.len() {
                        st.retransmitted_bytes += overlap as u64;
                        let rest = data[overlap..].to_vec();
                        self.advance(nxt, &rest);
                        out.push(Chunk {
                            data: rest,
                            gap: false,
                            tag,
                        });
                        progressed = true;
                        break;
                    }
                    st.retransmitted_bytes += data.len() as u64;
                    continue;
                }
                i += 1;
            }
            if !progressed || self.pending.is_empty() {
                return;
            }
        }
    }

    /// At the end of the flow: deliver whatever still waits behind holes.
    pub fn flush(&mut self, st: &mut ReassemblyStats, out: &mut Vec<Chunk>) {
        while !self.pending.is_empty() {
            self.skip_gap(st, out);
        }
    }

    /// Forget what waits (the stream ends unparsed).
    pub fn release(&mut self, st: &mut ReassemblyStats) {
        st.held_bytes -= self.pending_bytes as u64;
        self.pending_bytes = 0;
        self.pending.clear();
    }
}

/// Count the bytes of `new` that differ from `kept` (both at `seq`).
fn conflict(st: &mut ReassemblyStats, c: &mut Conflicts, seq: u32, new: &[u8], kept: &[u8]) {
    let mut first = None;
    let mut differ = 0u32;
    for (i, (a, b)) in new.iter().zip(kept).enumerate() {
        if a != b {
            differ += 1;
            first.get_or_insert(i);
        }
    }
    let Some(first) = first else {
        return;
    };
    st.overlap_conflicts += 1;
    st.overlap_conflict_bytes += differ as u64;
    if c.segments == 0 {
        c.seq = seq.wrapping_add(first as u32);
    }
    c.segments += 1;
    c.bytes = c.bytes.saturating_add(differ);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag() -> Tag {
        Tag { ts: 0.0, frame: 0 }
    }

    fn joined(chunks: &[Chunk]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.data.clone()).collect()
    }

    #[test]
    fn reorders_and_trims_retransmissions() {
        let mut st = ReassemblyStats::default();
        let mut s = TcpStream::default();
        s.syn(99);
        let mut out = Vec::new();
        s.add(&mut st, 103, b"def", tag(), &mut out);
        assert!(out.is_empty());
        s.add(&mut st, 100, b"abc", tag(), &mut out);
        s.add(&mut st, 101, b"bcdefg", tag(), &mut out);
        assert_eq!(joined(&out), b"abcdefg");
        assert_eq!(st.retransmitted_bytes, 5);
    }

    #[test]
    fn overlapping_data_that_differs_is_a_conflict_and_the_first_stays() {
        let mut st = ReassemblyStats::default();
        let mut s = TcpStream::default();
        s.syn(99);
        let mut out = Vec::new();
        s.add(
            &mut st,
            100,
            b"\x00\x01\x00\x00\x00\x06\x01\x06",
            tag(),
            &mut out,
        );
        // a plain retransmission, and a keep-alive probe: no conflict
        s.add(&mut st, 100, b"\x00\x01\x00\x00", tag(), &mut out);
        s.add(&mut st, 107, b"\xFF", tag(), &mut out);
        assert_eq!(s.conflicts.segments, 0);
        // the same positions with other bytes, reaching past what was delivered
        s.add(&mut st, 104, b"\x00\x07\x09\x06tail", tag(), &mut out);
        assert_eq!(
            s.conflicts,
            Conflicts {
                segments: 1,
                bytes: 2,
                seq: 105
            }
        );
        assert_eq!(joined(&out), b"\x00\x01\x00\x00\x00\x06\x01\x06tail");
        // waiting segments: the first copy stays, a differing one is a conflict
        s.add(&mut st, 120, b"first", tag(), &mut out);
        s.add(&mut st, 120, b"FIRST!", tag(), &mut out);
        s.add(&mut st, 112, b"12345678", tag(), &mut out);
        assert_eq!(&joined(&out)[12..], b"12345678first!");
        assert_eq!((st.overlap_conflicts, st.overlap_conflict_bytes), (2, 7));
    }

    #[test]
    fn delivered_bytes_are_compared_while_recent() {
        let mut st = ReassemblyStats::default();
        let mut s = TcpStream::default();
        s.syn(0);
        let mut out = Vec::new();
        let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        for (i, piece) in data.chunks(12).enumerate() {
            s.add(&mut st, 1 + 12 * i as u32, piece, tag(), &mut out);
        }
        // the last 512 bytes are kept: a forged copy of them is seen
        let end = 1 + data.len() as u32;
        s.add(&mut st, end - 512, &[0xEE; 512], tag(), &mut out);
        assert_eq!(s.conflicts.segments, 1);
        assert_eq!(s.recent_len as usize, RECENT);
        // further back, nothing is known
        s.add(&mut st, end - 600, &[0xEE; 80], tag(), &mut out);
        assert_eq!(s.conflicts.segments, 1);
    }

    #[test]
    fn an_acknowledged_hole_becomes_a_gap() {
        let mut st = ReassemblyStats::default();
        let mut s = TcpStream::default();
        s.syn(99);
        let mut out = Vec::new();
        s.add(&mut st, 110, b"xyz", tag(), &mut out);
        s.ack(&mut st, 113, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].gap);
        assert_eq!(st.skipped_bytes, 10);
    }

    #[test]
    fn stalled_streams_together_hold_at_most_the_budget() {
        let mut st = ReassemblyStats::default();
        let segment = vec![7u8; 1400];
        let mut streams: Vec<TcpStream> = (0..2000).map(|_| TcpStream::default()).collect();
        let mut out = Vec::new();
        for s in streams.iter_mut() {
            s.syn(0);
            // a hole at the start, then as much as one stream may hold behind it
            for k in 0..MAX_SEGMENTS as u32 {
                s.add(&mut st, 1000 + k * 1400, &segment, tag(), &mut out);
            }
            assert!(st.held_bytes <= MAX_HELD_BYTES);
        }
        assert!(st.over_budget_gaps > 0);
        let held: usize = streams.iter().map(|s| s.pending_bytes()).sum();
        assert_eq!(held as u64, st.held_bytes);
        for s in streams.iter_mut() {
            s.release(&mut st);
        }
        assert_eq!(st.held_bytes, 0);
    }
}
