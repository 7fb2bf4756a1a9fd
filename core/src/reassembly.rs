//! TCP stream reassembly for one direction of a connection.
//!
//! Retransmissions and overlaps are trimmed, out-of-order segments wait (bounded) for
//! the hole to fill, and a hole that will not fill (the peer acknowledged past it, or too
//! much waits behind it) becomes a *gap*: the stream jumps ahead, counts what it skipped,
//! and tells the dissector to resynchronise on the next PDU boundary.

const HALF: u32 = 0x8000_0000;
/// Segments waiting behind one hole before it is declared lost.
pub const MAX_SEGMENTS: usize = 64;
/// Bytes waiting behind one hole before it is declared lost.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;
/// Bytes waiting behind holes in all the streams of an engine together: beyond this, the
/// stream that wants to hold more gives up its holes (thousands of stalled connections
/// cannot take the memory).
pub const MAX_HELD_BYTES: u64 = 64 * 1024 * 1024;

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
}

impl TcpStream {
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
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
            self.next_seq = Some(seq.wrapping_add(data.len() as u32));
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
            if overlap >= data.len() {
                st.retransmitted_bytes += data.len() as u64;
                return;
            }
            st.retransmitted_bytes += overlap as u64;
            let rest = &data[overlap..];
            self.next_seq = Some(nxt.wrapping_add(rest.len() as u32));
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
        match self.pending.iter_mut().find(|p| p.0 == seq) {
            Some(old) => {
                if old.1.len() < data.len() {
                    self.pending_bytes += data.len() - old.1.len();
                    st.held_bytes += (data.len() - old.1.len()) as u64;
                    old.1 = data.to_vec();
                    old.2 = tag;
                }
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
                        nxt.wrapping_sub(seq) as usize
                    };
                    if overlap < data.len() {
                        st.retransmitted_bytes += overlap as u64;
                        let rest = data[overlap..].to_vec();
                        self.next_seq = Some(nxt.wrapping_add(rest.len() as u32));
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
