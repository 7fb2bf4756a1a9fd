//! Capture readers: pcap (both byte orders, µs/ns) and pcapng (several interfaces), either
//! of them gzipped, from a file, a FIFO or standard input (read as a stream, never seeked).
//!
//! Records are handed out as slices of one chunk buffer: no allocation per packet.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::readahead::ReadAhead;

/// Where a capture's bytes come from: a file, standard input, memory.
pub type Source = Box<dyn Read + Send + Sync>;

pub const CHUNK: usize = 4 * 1024 * 1024;
/// Larger records mean a corrupt file, not a jumbo frame.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;
/// Timestamps outside 1970-01-01 .. 9999-12-31 are corrupt fields, not times.
pub const MAX_TS: f64 = 253_402_300_799.0;

fn possible(ts: f64) -> bool {
    (0.0..=MAX_TS).contains(&ts)
}

/// What reading repaired in a damaged capture: each kind is counted, and warned once
/// with its count when the capture ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// records with an impossible time, given the last possible one before them
    pub times: u64,
    /// interfaces whose timestamp resolution or offset made their times impossible,
    /// read as the format's default (microseconds) or without the offset
    pub interfaces: u64,
    /// blocks skipped by their length (an unknown interface, data past the block, a
    /// length that is no multiple of 4) and bytes passed over to find the next block
    pub blocks: u64,
    pub bytes: u64,
    /// records of no bytes (Wireshark shows them; a file of nothing else is corrupt)
    pub empty: u64,
}

/// One packet as the reader sees it.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub ts: f64,
    pub linktype: u32,
    pub data: &'a [u8],
    pub wirelen: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    Pcapng,
}

/// Counts the bytes taken from the underlying source (compressed bytes for gzip).
struct Counting<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    unit: f64,
    offset: f64,
    /// its first packet's time was checked (bad options are repaired there, once)
    judged: bool,
}

/// Where the time of the packets stands: the last possible time read, and the repairs.
#[derive(Default)]
struct Clock {
    last: Option<f64>,
    repairs: Repairs,
    notes: Vec<String>,
}

impl Clock {
    /// The time of a record of `iface` (`ticks` of its unit); an impossible one is
    /// repaired: a first packet whose interface options give impossible times makes the
    /// interface read as microseconds or without its offset (what gives a possible time),
    /// any other takes the last possible time.
    fn time(&mut self, iface: &mut Iface, index: usize, ticks: u64, packet: u64) -> f64 {
        let ts = ticks as f64 * iface.unit + iface.offset;
        let judged = std::mem::replace(&mut iface.judged, true);
        if possible(ts) {
            self.last = Some(ts);
            return ts;
        }
        if !judged {
            for (unit, offset) in [(1e-6, iface.offset), (iface.unit, 0.0), (1e-6, 0.0)] {
                let t = ticks as f64 * unit + offset;
                if possible(t) {
                    let mut how = Vec::new();
                    if unit != iface.unit {
                        how.push("as microseconds");
                    }
                    if offset != iface.offset {
                        how.push("without its offset");
                    }
                    self.notes.push(format!(
                        "interface {index}: its timestamp options give impossible times \
                         (from packet {packet}); read {}",
                        how.join(", ")
                    ));
                    (iface.unit, iface.offset) = (unit, offset);
                    self.repairs.interfaces += 1;
                    self.last = Some(t);
                    return t;
                }
            }
        }
        self.repairs.times += 1;
        self.last.unwrap_or(0.0)
    }
}

enum State {
    Pcap { big: bool, unit: f64, linktype: u32 },
    Pcapng { big: bool, ifaces: Vec<Iface> },
}

/// The reader: feed it with `next_chunk`, which calls back once per packet.
pub struct Reader {
    name: String,
    src: Source,
    consumed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    done: bool,
    state: State,
    pub format: Format,
    pub compressed: bool,
    pub packets: u64,
    pub warnings: Vec<String>,
    /// reading stopped at a record or block that cannot be a packet
    pub corrupt: bool,
    clock: Clock,
    pub size: u64,
    /// the callback asked to stop before the end of the buffered records
    interrupted: bool,
    /// a thread decompresses ahead of the reading
    reads_ahead: bool,
}

fn u32_at(b: &[u8], off: usize, big: bool) -> u32 {
    let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn u16_at(b: &[u8], off: usize, big: bool) -> u16 {
    let a = [b[off], b[off + 1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

impl Reader {
    /// Open a capture file; `-` is standard input. Errors are one line for the user.
    pub fn open(path: &str) -> Result<Reader, String> {
        let (src, size): (Source, u64) = if path == "-" {
            (Box::new(io::stdin()), 0)
        } else {
            let (f, size) = open_file(path)?;
            (Box::new(f), size)
        };
        Reader::from_source(path.to_string(), src, size, true)
    }

    /// Is `path` a capture otsec reads? (Its headers are read; nothing is read ahead.)
    pub fn check(path: &str) -> Result<(), String> {
        let (f, size) = open_file(path)?;
        Reader::from_source(path.to_string(), Box::new(f), size, false).map(|_| ())
    }

    /// A capture in memory or any other source, read on the calling thread.
    pub fn from_reader(name: String, raw: Source, size: u64) -> Result<Reader, String> {
        Reader::from_source(name, raw, size, false)
    }

    /// `ahead`: decompress a gzipped source on a thread of its own (on another core, it
    /// overlaps with the dissection; an uncompressed file gains nothing from it).
    fn from_source(name: String, raw: Source, size: u64, ahead: bool) -> Result<Reader, String> {
        let consumed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut counting = BufReader::with_capacity(
            1 << 20,
            Counting {
                inner: raw,
                count: consumed.clone(),
            },
        );
        let mut head = [0u8; 2];
        let got = read_full(&mut counting, &mut head).map_err(|e| format!("{name}: {e}"))?;
        let compressed = got == 2 && head == [0x1f, 0x8b];
        let chained = io::Cursor::new(head[..got].to_vec()).chain(counting);
        let mut src: Source = if compressed {
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                chained,
            )))
        } else {
            Box::new(chained)
        };
        let mut reads_ahead = false;
        if ahead && compressed {
            src = match ReadAhead::spawn(src) {
                Ok(r) => {
                    reads_ahead = true;
                    Box::new(r)
                }
                Err(src) => src,
            };
        }
        let mut magic = [0u8; 4];
        let got = read_full(&mut src, &mut magic)
            .map_err(|e| format!("{name}: corrupt gzip data ({e})"))?;
        let (format, state) = match &magic[..got] {
            [0xd4, 0xc3, 0xb2, 0xa1] => (
                Format::Pcap,
                State::Pcap {
                    big: false,
                    unit: 1e-6,
                    linktype: 0,
                },
            ),
            [0xa1, 0xb2, 0xc3, 0xd4] => (
                Format::Pcap,
                State::Pcap {
                    big: true,
                    unit: 1e-6,
                    linktype: 0,
                },
            ),
            [0x4d, 0x3c, 0xb2, 0xa1] => (
                Format::Pcap,
                State::Pcap {
                    big: false,
                    unit: 1e-9,
                    linktype: 0,
                },
            ),
            [0xa1, 0xb2, 0x3c, 0x4d] => (
                Format::Pcap,
                State::Pcap {
                    big: true,
                    unit: 1e-9,
                    linktype: 0,
                },
            ),
            [0x0a, 0x0d, 0x0d, 0x0a] => (
                Format::Pcapng,
                State::Pcapng {
                    big: false,
                    ifaces: Vec::new(),
                },
            ),
            _ => return Err(format!("{name}: not a pcap or pcapng capture")),
        };
        let mut r = Reader {
            name,
            src,
            consumed,
            buf: magic[..got].to_vec(),
            pos: 0,
            eof: false,
            done: false,
            state,
            format,
            compressed,
            packets: 0,
            warnings: Vec::new(),
            corrupt: false,
            clock: Clock::default(),
            size,
            interrupted: false,
            reads_ahead,
        };
        if r.format == Format::Pcap {
            r.fill_by(24, 24 - r.buf.len()); // the header alone: opening reads no packets
            if r.buf.len() < 24 {
                return Err(format!("{}: pcap header truncated", r.name));
            }
            let big = matches!(r.state, State::Pcap { big: true, .. });
            let lt = u32_at(&r.buf, 20, big) & 0x0FFF_FFFF;
            if let State::Pcap { linktype, .. } = &mut r.state {
                *linktype = lt;
            }
            r.pos = 24;
        }
        Ok(r)
    }

    /// Bytes of the source consumed so far (compressed bytes for gzip), for progress.
    pub fn position(&self) -> u64 {
        self.consumed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a thread of its own decompresses the capture (it takes a core).
    pub fn reads_ahead(&self) -> bool {
        self.reads_ahead
    }

    pub fn finished(&self) -> bool {
        self.done
    }

    /// What reading repaired so far.
    pub fn repairs(&self) -> Repairs {
        self.clock.repairs
    }

    /// The capture ended: what was repaired, warned once per kind with its count.
    fn ended(&mut self) {
        self.done = true;
        let r = self.clock.repairs;
        if r.times > 0 {
            let n = r.times;
            self.warn(format!(
                "{n} records with an impossible time were given the last possible time before them"
            ));
        }
        if r.blocks > 0 {
            let n = r.blocks;
            self.warn(format!("{n} damaged blocks skipped by their length"));
        }
        if r.bytes > 0 {
            let n = r.bytes;
            self.warn(format!(
                "{n} damaged bytes passed over to find the next record"
            ));
        }
    }

    fn warn(&mut self, msg: String) {
        self.warnings.push(format!("{}: {}", self.name, msg));
    }

    /// Read until at least `want` bytes are buffered past `pos`, or the source ends.
    fn fill(&mut self, want: usize) {
        self.fill_by(want, CHUNK.max(want));
    }

    /// `fill`, reading at most `step` bytes at a time.
    fn fill_by(&mut self, want: usize, step: usize) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        while !self.eof && self.buf.len() - self.pos < want {
            let old = self.buf.len();
            self.buf.resize(old + step, 0);
            match self.src.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    self.eof = true;
                }
                Ok(n) => self.buf.truncate(old + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(old),
                Err(e) => {
                    self.buf.truncate(old);
                    self.eof = true;
                    let n = self.packets;
                    self.warn(format!("read error after {n} packets: {}", io_text(&e)));
                }
            }
        }
    }

    /// Read one chunk of the source and call `f` for every whole record in it, until `f`
    /// says stop (false). Returns false once the capture has ended.
    pub fn next_chunk(&mut self, f: &mut dyn FnMut(Packet<'_>) -> bool) -> bool {
        if self.done {
            return false;
        }
        self.fill(CHUNK);
        let more = loop {
            let before = (self.pos, self.buf.len());
            let more = match self.format {
                Format::Pcap => self.pcap_records(f),
                Format::Pcapng => self.pcapng_blocks(f),
            };
            // a record longer than what is buffered: read on until it fits or the source ends
            if !more || self.eof || self.pos != before.0 || self.interrupted {
                break more;
            }
            let have = self.buf.len() - self.pos;
            self.fill(have + CHUNK);
        };
        for note in std::mem::take(&mut self.clock.notes) {
            self.warn(note);
        }
        if !more {
            self.ended();
            return false;
        }
        if std::mem::take(&mut self.interrupted) {
            return true;
        }
        if self.eof && self.pos >= self.buf.len() {
            self.ended();
        } else if self.eof {
            // what is left cannot form a record
            let left = self.buf.len() - self.pos;
            let what = if self.format == Format::Pcap {
                "record"
            } else {
                "block"
            };
            let n = self.packets;
            self.warn(format!(
                "truncated last {what} ({left} bytes) after {n} packets"
            ));
            self.ended();
        }
        !self.done
    }

    fn pcap_records(&mut self, f: &mut dyn FnMut(Packet<'_>) -> bool) -> bool {
        let (big, unit, linktype) = match self.state {
            State::Pcap {
                big,
                unit,
                linktype,
            } => (big, unit, linktype),
            _ => unreachable!(),
        };
        let buf = &self.buf;
        let end = buf.len();
        let mut pos = self.pos;
        let mut packets = self.packets;
        let mut corrupt = None;
        while pos + 16 <= end {
            let sec = u32_at(buf, pos, big);
            let frac = u32_at(buf, pos + 4, big);
            let caplen = u32_at(buf, pos + 8, big) as usize;
            let wirelen = u32_at(buf, pos + 12, big);
            if caplen > MAX_RECORD {
                match next_record(buf, pos, big, unit, self.clock.last, self.eof) {
                    Seek::Found(next) => {
                        self.clock.repairs.bytes += (next - pos) as u64;
                        pos = next;
                        continue;
                    }
                    Seek::More => break,
                    Seek::None => {
                        corrupt = Some("a corrupt record header");
                        break;
                    }
                }
            }
            if pos + 16 + caplen > end {
                break;
            }
            let mut ts = sec as f64 + frac as f64 * unit;
            if possible(ts) {
                self.clock.last = Some(ts);
            } else {
                self.clock.repairs.times += 1;
                ts = self.clock.last.unwrap_or(0.0);
            }
            let packet = Packet {
                ts,
                linktype,
                data: &buf[pos + 16..pos + 16 + caplen],
                wirelen,
            };
            self.clock.repairs.empty += (caplen == 0) as u64;
            packets += 1;
            let go = f(packet);
            pos += 16 + caplen;
            if !go {
                self.interrupted = true;
                break;
            }
        }
        self.pos = pos;
        self.packets = packets;
        if let Some(why) = corrupt {
            let n = self.packets + 1;
            self.corrupt = true;
            self.warn(format!(
                "{why} at packet {n}: the file is corrupt from there"
            ));
            return false;
        }
        true
    }

    fn pcapng_blocks(&mut self, f: &mut dyn FnMut(Packet<'_>) -> bool) -> bool {
        let (mut big, mut ifaces) = match &mut self.state {
            State::Pcapng { big, ifaces } => (*big, std::mem::take(ifaces)),
            _ => unreachable!(),
        };
        let end = self.buf.len();
        let eof = self.eof;
        let mut pos = self.pos;
        let mut corrupt = None;
        let mut warnings: Vec<String> = Vec::new();
        let mut packets = self.packets;
        let mut interrupted = false;
        let clock = &mut self.clock;
        {
            let buf = &self.buf;
            let mut go = true;
            while pos + 12 <= end {
                if buf[pos..pos + 4] == SHB {
                    match &buf[pos + 8..pos + 12] {
                        [0x4d, 0x3c, 0x2b, 0x1a] => big = false,
                        [0x1a, 0x2b, 0x3c, 0x4d] => big = true,
                        _ => {
                            corrupt = Some("a bad byte-order magic");
                            break;
                        }
                    }
                    ifaces.clear();
                }
                let btype = u32_at(buf, pos, big);
                let blen = u32_at(buf, pos + 4, big) as usize;
                let sane = (12..=MAX_RECORD).contains(&blen) && blen.is_multiple_of(4);
                if sane && pos + blen > end && !eof {
                    break; // read on
                }
                // a block whose length its copy at the end confirms, or a known block
                // followed by another (its copy alone was damaged)
                let whole = sane
                    && pos + blen <= end
                    && (u32_at(buf, pos + blen - 4, big) as usize == blen
                        || (known(btype) && block_at(buf, pos + blen, big).is_some()));
                if !whole {
                    let cut = sane && pos + blen > end; // at the end of the capture
                    match next_block(buf, pos, big, eof) {
                        Seek::Found(next) => {
                            // a length its copy at the block's end confirms is skipped by;
                            // otherwise the bytes up to the next whole block are passed over
                            if next == pos + blen {
                                clock.repairs.blocks += 1;
                            } else {
                                clock.repairs.bytes += (next - pos) as u64;
                            }
                            pos = next;
                            continue;
                        }
                        Seek::More => break,
                        Seek::None if cut => break, // a truncated last block
                        Seek::None => {
                            corrupt = Some("a corrupt block header");
                            break;
                        }
                    }
                }
                let body = pos + 8;
                let bend = pos + blen;
                match btype {
                    6 | 2 => {
                        // enhanced (32-bit interface id) or obsolete (16-bit) packet block
                        let iface = match (btype, blen) {
                            (6, 32..) => u32_at(buf, body, big) as usize,
                            (2, 32..) => u16_at(buf, body, big) as usize,
                            _ => usize::MAX,
                        };
                        match timed(buf, body, bend, big, iface < ifaces.len()) {
                            Some((ticks, mut p)) => {
                                packets += 1;
                                clock.repairs.empty += p.data.is_empty() as u64;
                                p.linktype = ifaces[iface].linktype;
                                p.ts = clock.time(&mut ifaces[iface], iface, ticks, packets);
                                go = f(p);
                            }
                            None => {
                                clock.repairs.blocks += 1;
                                if clock.repairs.blocks <= MAX_BLOCK_WARNINGS {
                                    let n = packets + 1;
                                    warnings
                                        .push(format!("bad packet block at packet {n} skipped"));
                                }
                            }
                        }
                    }
                    3 if !ifaces.is_empty() && blen >= 16 => {
                        let wirelen = u32_at(buf, body, big);
                        let caplen = (wirelen as usize).min(blen - 16);
                        let p = Packet {
                            ts: 0.0,
                            linktype: ifaces[0].linktype,
                            data: &buf[body + 4..body + 4 + caplen],
                            wirelen,
                        };
                        clock.repairs.empty += (caplen == 0) as u64;
                        packets += 1;
                        go = f(p);
                    }
                    1 if blen >= 16 => ifaces.push(interface(buf, body, bend - 4, big)),
                    _ => {}
                }
                pos += blen;
                if !go {
                    interrupted = true;
                    break;
                }
            }
        }
        self.pos = pos;
        self.packets = packets;
        for w in warnings {
            self.warn(w);
        }
        self.state = State::Pcapng { big, ifaces };
        self.interrupted = interrupted;
        if let Some(why) = corrupt {
            let n = packets + 1;
            self.corrupt = true;
            self.warn(format!(
                "{why} at packet {n}: the file is corrupt from there"
            ));
            return false;
        }
        true
    }
}

/// The packet of an enhanced or obsolete packet block (the same layout after the interface
/// id: timestamp high and low, captured and wire length, data) with its time in ticks of
/// its interface, or None when its interface is unknown or its data runs past the block.
fn timed(
    buf: &[u8],
    body: usize,
    bend: usize,
    big: bool,
    known: bool,
) -> Option<(u64, Packet<'_>)> {
    if !known || bend < body + 20 {
        return None;
    }
    let caplen = u32_at(buf, body + 12, big) as usize;
    if body + 20 + caplen > bend {
        return None;
    }
    let hi = u32_at(buf, body + 4, big) as u64;
    let lo = u32_at(buf, body + 8, big) as u64;
    let wirelen = u32_at(buf, body + 16, big);
    Some((
        (hi << 32) | lo,
        Packet {
            ts: 0.0,
            linktype: 0,
            data: &buf[body + 20..body + 20 + caplen],
            wirelen,
        },
    ))
}

const SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// Bad packet blocks warned one by one; the rest are in the count at the end.
const MAX_BLOCK_WARNINGS: u64 = 10;
/// How far past a damaged block header the next whole block is looked for.
const MAX_SCAN: usize = 1 << 20;

/// Where reading goes on after a block header whose length cannot be right.
enum Seek {
    Found(usize),
    /// not in what is buffered: read more first
    More,
    None,
}

/// The next whole block after a damaged header at `pos`: the block itself when the copy
/// of its length at the end confirms it (a length that is no multiple of 4), else the
/// first 4-aligned position after it holding a block of a known type whose two lengths
/// agree (within `MAX_SCAN` bytes).
fn next_block(buf: &[u8], pos: usize, big: bool, eof: bool) -> Seek {
    let block = |at: usize| block_at(buf, at, big);
    let blen = u32_at(buf, pos + 4, big) as usize;
    if (12..=MAX_RECORD).contains(&blen) {
        if pos + blen > buf.len() && !eof {
            return Seek::More;
        }
        if pos + blen <= buf.len() && u32_at(buf, pos + blen - 4, big) as usize == blen {
            return Seek::Found(pos + blen);
        }
    }
    // byte by byte: what damaged the file may have added or removed any number of bytes
    for at in pos + 1..(pos + MAX_SCAN).min(buf.len().saturating_sub(11)) {
        let Some(n) = block(at) else {
            continue;
        };
        if at + n > buf.len() {
            if !eof {
                return Seek::More; // its end decides
            }
        } else if u32_at(buf, at + n - 4, big) as usize == n {
            return Seek::Found(at);
        }
    }
    if !eof && buf.len() < pos + MAX_SCAN {
        Seek::More
    } else {
        Seek::None
    }
}

/// Block types a damaged file's next block is recognised by.
fn known(btype: u32) -> bool {
    matches!(btype, 1..=10 | 0x0A0D0D0A | 0xBAD | 0x4000_0BAD)
}

/// The length of the block at `at` if a block of a known type with a possible length
/// starts there (0 past what is buffered: nothing tells against one).
fn block_at(buf: &[u8], at: usize, big: bool) -> Option<usize> {
    if at + 8 > buf.len() {
        return Some(0);
    }
    let blen = u32_at(buf, at + 4, big) as usize;
    (known(u32_at(buf, at, big)) && (12..=MAX_RECORD).contains(&blen) && blen.is_multiple_of(4))
        .then_some(blen)
}

/// The next record after a damaged pcap record header at `pos`: the first position where
/// a header could stand (lengths within bounds, a sub-second part below a second, a time
/// within a day of the last possible one) whose data is followed by another such header
/// or by the end of the capture (within `MAX_SCAN` bytes).
fn next_record(buf: &[u8], pos: usize, big: bool, unit: f64, last: Option<f64>, eof: bool) -> Seek {
    const MAX_SNAP: usize = 262_144;
    let header = |at: usize| -> Option<usize> {
        let sec = u32_at(buf, at, big) as f64;
        let frac = u32_at(buf, at + 4, big) as f64 * unit;
        let caplen = u32_at(buf, at + 8, big) as usize;
        let wirelen = u32_at(buf, at + 12, big) as usize;
        let near = last.is_none_or(|t| (sec - t).abs() <= 86_400.0);
        (frac < 1.0
            && (1..=MAX_SNAP).contains(&caplen)
            && (caplen..=MAX_RECORD).contains(&wirelen)
            && near)
            .then_some(at + 16 + caplen)
    };
    for at in pos + 1..(pos + MAX_SCAN).min(buf.len().saturating_sub(15)) {
        let Some(next) = header(at) else {
            continue;
        };
        if next + 16 > buf.len() {
            if eof && next == buf.len() {
                return Seek::Found(at); // the last record
            }
            if !eof {
                return Seek::More; // what follows decides
            }
            continue;
        }
        if header(next).is_some() {
            return Seek::Found(at);
        }
    }
    if !eof && buf.len() < pos + MAX_SCAN {
        Seek::More
    } else {
        Seek::None
    }
}

/// An interface description block: link type, timestamp unit and offset.
fn interface(buf: &[u8], body: usize, end: usize, big: bool) -> Iface {
    let linktype = u16_at(buf, body, big) as u32;
    let mut unit = 1e-6;
    let mut offset = 0.0;
    let mut pos = body + 8;
    while pos + 4 <= end {
        let code = u16_at(buf, pos, big);
        let length = u16_at(buf, pos + 2, big) as usize;
        if code == 0 {
            break;
        }
        let vend = (pos + 4 + length).min(buf.len());
        let value = &buf[(pos + 4).min(vend)..vend];
        if code == 9 && !value.is_empty() {
            let v = value[0];
            unit = if v & 0x80 != 0 {
                2f64.powf(-((v & 0x7f) as f64))
            } else {
                10f64.powf(-(v as f64))
            };
        } else if code == 14 && length == 8 && value.len() == 8 {
            let a: [u8; 8] = value.try_into().unwrap();
            offset = if big {
                i64::from_be_bytes(a)
            } else {
                i64::from_le_bytes(a)
            } as f64;
        }
        pos += 4 + ((length + 3) & !3);
    }
    Iface {
        linktype,
        unit,
        offset,
        judged: false,
    }
}

/// Read until `buf` is full or the source ends (a pipe gives less per read). The bytes
/// before an error come first: a lasting error comes again on the next read.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if got > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A capture file and its size (0 when it is no regular file: a FIFO).
fn open_file(path: &str) -> Result<(File, u64), String> {
    let p = Path::new(path);
    if p.is_dir() {
        return Err(format!("{path}: is a directory, not a capture file"));
    }
    let f = File::open(p).map_err(|e| format!("cannot open {path}: {}", io_text(&e)))?;
    let size = f
        .metadata()
        .map(|m| if m.is_file() { m.len() } else { 0 })
        .unwrap_or(0);
    Ok((f, size))
}

fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(records: &[(u32, &[u8])]) -> Vec<u8> {
        let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        for (sec, data) in records {
            v.extend_from_slice(&sec.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
        }
        v
    }

    fn all(bytes: Vec<u8>) -> (Vec<(f64, usize)>, Vec<String>) {
        let mut r = Reader::from_reader("t".into(), Box::new(io::Cursor::new(bytes)), 0).unwrap();
        let mut out = Vec::new();
        while r.next_chunk(&mut |p| {
            out.push((p.ts, p.data.len()));
            true
        }) {}
        (out, r.warnings)
    }

    #[test]
    fn reads_pcap_and_warns_on_a_truncated_tail() {
        let mut bytes = pcap(&[(1, b"abc"), (2, b"defg")]);
        let (pkts, warns) = all(bytes.clone());
        assert_eq!(pkts, vec![(1.0, 3), (2.0, 4)]);
        assert!(warns.is_empty());
        bytes.truncate(bytes.len() - 2);
        let (pkts, warns) = all(bytes);
        assert_eq!(pkts.len(), 1);
        assert!(warns[0].contains("truncated last record"));
    }

    #[test]
    fn reads_gzip_of_pcap() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&pcap(&[(5, b"xy")])).unwrap();
        let (pkts, _) = all(enc.finish().unwrap());
        assert_eq!(pkts, vec![(5.0, 2)]);
    }

    #[test]
    fn rejects_what_is_not_a_capture() {
        let r = Reader::from_reader("t".into(), Box::new(io::Cursor::new(b"hello".to_vec())), 0);
        assert!(r.err().unwrap().contains("not a pcap or pcapng"));
    }
}
