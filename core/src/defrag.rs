//! IPv4 and IPv6 fragment reassembly, bounded.
//!
//! Fragments are kept per datagram (addresses, protocol, identification) until the
//! datagram is whole; it is then decoded like any packet. Overlap policy: the bytes that
//! arrived first are kept ("first"); an overlap that carries different bytes is the
//! ambiguity evasion relies on (receivers differ in which copy they keep) and is reported
//! with the datagram. Bounds: fragments per datagram, datagrams in progress, bytes held
//! together, and a timeout; what goes over them is dropped and counted.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::decode::Addr;

/// Fragments of one datagram kept at most (a 64 KiB datagram over a 1500-byte MTU needs
/// 45); more drop the datagram.
pub const MAX_FRAGMENTS: usize = 64;
/// Datagrams in progress at most; a new one beyond it drops the oldest.
pub const MAX_DATAGRAMS: usize = 4096;
/// Bytes held by all datagrams in progress together; beyond it the oldest go.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Seconds of capture time a datagram may take to complete (Linux waits 30 s).
pub const TIMEOUT: f64 = 30.0;
/// The largest datagram IP can carry.
const MAX_DATAGRAM: usize = 65_535;

#[derive(Default, Clone, Copy, Debug)]
pub struct DefragStats {
    /// datagrams put together from fragments
    pub reassembled: u64,
    /// datagrams dropped incomplete: timed out, or pushed out by the bounds
    pub timed_out: u64,
    pub evicted: u64,
    /// datagrams with more than `MAX_FRAGMENTS` fragments
    pub too_many_fragments: u64,
    /// fragments reaching past 65,535 bytes, or contradicting the datagram's end
    pub invalid: u64,
    /// fragments whose overlap with earlier ones carried different bytes
    pub overlap_conflicts: u64,
    /// fragments wholly or partly repeating bytes already held
    pub overlaps: u64,
    /// datagrams in progress now, and the bytes they hold
    pub in_progress: u64,
    pub held_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    src: Addr,
    dst: Addr,
    id: u32,
    proto: u8,
}

struct Datagram {
    /// its place in the arrival order (tells a later datagram under the same key apart)
    serial: u64,
    first_ts: f64,
    /// the IP header the whole datagram gets (the first fragment's, without options)
    header: Vec<u8>,
    data: Vec<u8>,
    /// byte ranges held, sorted and disjoint
    have: Vec<(usize, usize)>,
    /// where the datagram ends, once its last fragment came
    total: Option<usize>,
    fragments: usize,
    conflict: bool,
}

/// A datagram put together.
pub struct Whole {
    /// the datagram with an IP header of its own (IPv4 without options; IPv6 without
    /// extension headers before the fragment header)
    pub bytes: Vec<u8>,
    /// overlapping fragments carried different bytes (the first were kept)
    pub conflict: bool,
}

#[derive(Default)]
pub struct Defrag {
    table: FxHashMap<Key, Datagram>,
    /// (key, serial), oldest first; entries of datagrams gone are skipped
    order: VecDeque<(Key, u64)>,
    serial: u64,
    bytes: usize,
    pub stats: DefragStats,
}

/// One fragment: what the datagram needs of it.
struct Piece<'a> {
    key: Key,
    header: Vec<u8>,
    offset: usize,
    more: bool,
    payload: &'a [u8],
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// The fragment whose IP header starts at `off` (ethertype `et`).
fn piece(b: &[u8], off: usize, et: u16) -> Option<Piece<'_>> {
    if et == 0x0800 {
        let ihl = ((*b.get(off)? & 0x0F) as usize) * 4;
        if ihl < 20 || b.len() < off + ihl {
            return None;
        }
        let total = be16(b, off + 2) as usize;
        let end = (off + total).min(b.len());
        if total < ihl {
            return None;
        }
        let frag = be16(b, off + 6);
        let mut header = b[off..off + 20].to_vec();
        header[0] = 0x45;
        header[6] = 0;
        header[7] = 0;
        return Some(Piece {
            key: Key {
                src: Addr::new(&b[off + 12..off + 16]),
                dst: Addr::new(&b[off + 16..off + 20]),
                id: be16(b, off + 4) as u32,
                proto: b[off + 9],
            },
            header,
            offset: (frag & 0x1FFF) as usize * 8,
            more: frag & 0x2000 != 0,
            payload: &b[off + ihl..end],
        });
    }
    // IPv6: the extension headers before the fragment header are dropped
    if b.len() < off + 40 {
        return None;
    }
    let plen = be16(b, off + 4) as usize;
    let end = (off + 40 + plen).min(b.len());
    let mut next = b[off + 6];
    let mut p = off + 40;
    while matches!(next, 0 | 43 | 60) {
        if p + 8 > end {
            return None;
        }
        next = b[p];
        p += (b[p + 1] as usize + 1) * 8;
    }
    if next != 44 || p + 8 > end {
        return None;
    }
    let frag = be16(b, p + 2);
    let mut header = b[off..off + 40].to_vec();
    header[6] = b[p];
    Some(Piece {
        key: Key {
            src: Addr::new(&b[off + 8..off + 24]),
            dst: Addr::new(&b[off + 24..off + 40]),
            id: u32::from_be_bytes([b[p + 4], b[p + 5], b[p + 6], b[p + 7]]),
            proto: b[p],
        },
        header,
        offset: (frag & 0xFFF8) as usize,
        more: frag & 1 != 0,
        payload: &b[p + 8..end],
    })
}

impl Defrag {
    /// A fragment whose IP header starts at `off`; the whole datagram when this one
    /// completes it.
    pub fn add(&mut self, b: &[u8], off: usize, et: u16, ts: f64) -> Option<Whole> {
        let Some(p) = piece(b, off, et) else {
            self.stats.invalid += 1;
            return None;
        };
        let end = p.offset + p.payload.len();
        if end > MAX_DATAGRAM - p.header.len() {
            self.stats.invalid += 1;
            return None;
        }
        let stale = self
            .table
            .get(&p.key)
            .is_some_and(|d| ts - d.first_ts > TIMEOUT || ts < d.first_ts - TIMEOUT);
        if stale {
            self.stats.timed_out += 1;
            self.drop_datagram(&p.key);
        }
        if !self.table.contains_key(&p.key) {
            while self.table.len() >= MAX_DATAGRAMS {
                self.evict_oldest();
            }
            self.serial += 1;
            self.order.push_back((p.key, self.serial));
            self.table.insert(
                p.key,
                Datagram {
                    serial: self.serial,
                    first_ts: ts,
                    header: p.header.clone(),
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    fragments: 0,
                    conflict: false,
                },
            );
        }
        let d = self.table.get_mut(&p.key).unwrap();
        d.fragments += 1;
        if d.fragments > MAX_FRAGMENTS {
            self.stats.too_many_fragments += 1;
            self.drop_datagram(&p.key);
            return None;
        }
        if p.offset == 0 {
            d.header = p.header;
        }
        if !p.more {
            match d.total {
                Some(t) if t != end => {
                    self.stats.invalid += 1;
                    return None;
                }
                _ => d.total = Some(end),
            }
        }
        if d.total.is_some_and(|t| end > t) {
            self.stats.invalid += 1;
            return None;
        }
        let grown = end.saturating_sub(d.data.len());
        if grown > 0 {
            d.data.resize(end, 0);
        }
        let (overlapped, conflict) = put(d, p.offset, p.payload);
        self.bytes += grown;
        self.stats.overlaps += overlapped as u64;
        self.stats.overlap_conflicts += conflict as u64;
        let whole = d.total.is_some_and(|t| d.have.as_slice() == [(0, t)]);
        if whole {
            let d = self.take(&p.key).unwrap();
            self.stats.reassembled += 1;
            self.note();
            return Some(assemble(d));
        }
        while self.bytes > MAX_BYTES && !self.table.is_empty() {
            self.evict_oldest();
        }
        self.note();
        None
    }

    /// Drop datagrams older than `TIMEOUT` at `now` (the engine's sweep).
    pub fn expire(&mut self, now: f64) {
        while let Some(&(key, serial)) = self.order.front() {
            match self.table.get(&key) {
                Some(d) if d.serial == serial => {
                    if now - d.first_ts <= TIMEOUT {
                        break;
                    }
                    self.stats.timed_out += 1;
                    self.take(&key);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
        self.note();
    }

    fn evict_oldest(&mut self) {
        while let Some((key, serial)) = self.order.pop_front() {
            if self.table.get(&key).is_some_and(|d| d.serial == serial) {
                self.stats.evicted += 1;
                self.take(&key);
                return;
            }
        }
    }

    fn drop_datagram(&mut self, key: &Key) {
        self.take(key);
        self.note();
    }

    fn take(&mut self, key: &Key) -> Option<Datagram> {
        let d = self.table.remove(key)?;
        self.bytes -= d.data.len();
        if self.order.len() > 2 * self.table.len() + 64 {
            // forget the entries of datagrams gone
            let table = &self.table;
            self.order
                .retain(|(k, s)| table.get(k).is_some_and(|d| d.serial == *s));
        }
        Some(d)
    }

    fn note(&mut self) {
        self.stats.in_progress = self.table.len() as u64;
        self.stats.held_bytes = self.bytes as u64;
    }
}

/// Write the bytes of `payload` at `offset` that the datagram does not hold yet (the
/// first copy wins); (it overlapped bytes held, some of those differed).
fn put(d: &mut Datagram, offset: usize, payload: &[u8]) -> (bool, bool) {
    let end = offset + payload.len();
    let (mut overlapped, mut differed) = (false, false);
    let mut pos = offset;
    for &(a, b) in &d.have {
        if b <= pos || a >= end {
            continue;
        }
        let (lo, hi) = (a.max(pos), b.min(end));
        if pos < lo {
            d.data[pos..lo].copy_from_slice(&payload[pos - offset..lo - offset]);
        }
        overlapped = true;
        differed |= d.data[lo..hi] != payload[lo - offset..hi - offset];
        pos = hi;
    }
    if pos < end {
        d.data[pos..end].copy_from_slice(&payload[pos - offset..]);
    }
    d.conflict |= differed;
    // the ranges held, merged
    d.have.push((offset, end));
    d.have.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(d.have.len());
    for &(a, b) in &d.have {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    d.have = merged;
    (overlapped, differed)
}

/// The datagram with its header's lengths set.
fn assemble(d: Datagram) -> Whole {
    let total = d.total.unwrap_or(d.data.len());
    let mut bytes = d.header;
    let hl = bytes.len();
    if hl == 20 {
        let len = (hl + total) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
    } else {
        bytes[4..6].copy_from_slice(&(total as u16).to_be_bytes());
    }
    bytes.extend_from_slice(&d.data[..total]);
    Whole {
        bytes,
        conflict: d.conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 fragment (id 7, protocol TCP) of `data` at byte `offset`.
    fn v4(offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x45, 0];
        v.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        let frag = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        v.extend_from_slice(&[0, 7]);
        v.extend_from_slice(&frag.to_be_bytes());
        v.extend_from_slice(&[64, 6, 0, 0, 10, 0, 0, 20, 10, 0, 0, 10]);
        v.extend_from_slice(data);
        v
    }

    /// An IPv6 fragment (id 9, next header TCP) behind a hop-by-hop header.
    fn v6(offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&((16 + data.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 64]);
        v.extend_from_slice(&[0xFD; 16]);
        v.extend_from_slice(&[0xFE; 16]);
        v.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        let frag = offset as u16 | more as u16;
        v.extend_from_slice(&[6, 0]);
        v.extend_from_slice(&frag.to_be_bytes());
        v.extend_from_slice(&9u32.to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn payload() -> Vec<u8> {
        (0..40u8).collect()
    }

    #[test]
    fn fragments_in_any_order_give_the_datagram() {
        let p = payload();
        let frags = [
            v4(0, true, &p[..16]),
            v4(16, true, &p[16..32]),
            v4(32, false, &p[32..]),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut d = Defrag::default();
            let mut got = None;
            for (n, &i) in order.iter().enumerate() {
                let out = d.add(&frags[i], 0, 0x0800, 1.0);
                assert_eq!(out.is_some(), n == 2);
                got = got.or(out);
            }
            let whole = got.unwrap();
            assert!(!whole.conflict);
            assert_eq!(&whole.bytes[20..], &p[..]);
            assert_eq!(u16::from_be_bytes([whole.bytes[2], whole.bytes[3]]), 60);
            assert_eq!(&whole.bytes[6..8], &[0, 0]);
            assert_eq!(
                (d.stats.reassembled, d.stats.in_progress, d.bytes),
                (1, 0, 0)
            );
        }
        let frags = [v6(0, true, &p[..24]), v6(24, false, &p[24..])];
        let mut d = Defrag::default();
        assert!(d.add(&frags[1], 0, 0x86DD, 1.0).is_none());
        let whole = d.add(&frags[0], 0, 0x86DD, 1.0).unwrap();
        assert_eq!((whole.bytes[6], whole.bytes.len()), (6, 40 + 40));
        assert_eq!(&whole.bytes[40..], &p[..]);
    }

    #[test]
    fn the_first_copy_of_an_overlap_stays_and_a_difference_is_reported() {
        let p = payload();
        let mut forged = p.clone();
        forged[20] ^= 0xFF;
        let mut d = Defrag::default();
        d.add(&v4(0, true, &p[..24]), 0, 0x0800, 1.0);
        d.add(&v4(16, true, &p[16..32]), 0, 0x0800, 1.0); // the same bytes again
        assert_eq!((d.stats.overlaps, d.stats.overlap_conflicts), (1, 0));
        d.add(&v4(16, true, &forged[16..32]), 0, 0x0800, 1.0);
        let whole = d.add(&v4(32, false, &p[32..]), 0, 0x0800, 1.0).unwrap();
        assert!(whole.conflict);
        assert_eq!(&whole.bytes[20..], &p[..]);
        assert_eq!(d.stats.overlap_conflicts, 1);
    }

    #[test]
    fn datagrams_in_progress_stay_within_their_bounds() {
        let mut d = Defrag::default();
        // one datagram in more fragments than allowed
        for i in 0..=MAX_FRAGMENTS {
            d.add(&v4(i * 8, true, &[0; 8]), 0, 0x0800, 1.0);
        }
        assert_eq!((d.stats.too_many_fragments, d.table.len()), (1, 0));
        // many datagrams, each missing its end
        for id in 0..(MAX_DATAGRAMS as u32 + 100) {
            let mut f = v4(0, true, &[1; 1024]);
            f[4..6].copy_from_slice(&(id as u16).to_be_bytes());
            f[12] = (id >> 16) as u8;
            d.add(&f, 0, 0x0800, 2.0);
            assert!(d.table.len() <= MAX_DATAGRAMS && d.bytes <= MAX_BYTES);
        }
        assert!(d.stats.evicted >= 100);
        assert!(d.order.len() <= 2 * d.table.len() + 64 + 1);
        // the rest time out
        d.expire(2.0 + TIMEOUT + 1.0);
        assert_eq!((d.table.len(), d.bytes, d.stats.in_progress), (0, 0, 0));
        // past 65,535 bytes is no datagram
        assert!(d.add(&v4(65528, false, &[0; 16]), 0, 0x0800, 9.0).is_none());
        assert_eq!(d.stats.invalid, 1);
    }
}
