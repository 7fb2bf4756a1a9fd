//! DNP3 (IEEE 1815) over TCP and UDP: link frames, transport, application layer.
//!
//! Link frames are found by their 0x05 0x64 start bytes and checked block by block (a
//! CRC every 16 bytes). A bad data CRC is an anomaly and the frame is still used when its
//! header is sound, so one corrupted block does not blind the sensor. Transport segments
//! are reassembled per address pair into fragments, whose function code, IIN bits and
//! object headers (group, variation, qualifier, range) are decoded.

use rustc_hash::FxHashMap;

use super::Sniff;
use crate::events::{Body, Event, Points, Proto, Req, MAX_POINTS};
use crate::json::*;
use crate::meaning::{Evidence, Table, Use};
use crate::pending::Pending;
use crate::rules::{f, int, Val};

/// One DNP3 application fragment, with the link header it came in.
#[derive(Clone, Debug, PartialEq)]
pub struct Dnp3Object {
    pub group: u8,
    pub variation: u8,
    pub qualifier: u8,
    pub count: u64,
    pub start: Option<u64>,
    /// the point indexes of index-prefixed objects: controls (g12, g41; at most 32) and
    /// events (g2, g22, g32)
    pub indexes: Vec<u32>,
    /// their values, one per index: g41 the analog value, g12 the control code, an event's
    /// value; or, for a range of static points in a response, one per point from `start`
    pub values: Vec<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct Dnp3Pdu {
    pub source_address: u16,
    pub destination_address: u16,
    pub function_code: u8,
    pub app_control: u8,
    pub iin: Option<u16>,
    pub objects: Vec<Dnp3Object>,
    pub link_function: u8,
    pub anomalies: Vec<&'static str>,
}

pub const PORT: u16 = 20000;

pub const DISSECTOR: super::Dissector = super::Dissector {
    proto: Proto::Dnp3,
    tcp_port: PORT,
    udp_port: Some(PORT),
    looks_like,
    parser: || Box::<Parser>::default(),
};

const MAX_FRAGMENT: usize = 64 * 1024;
const MAX_OBJECTS: usize = 256;
pub const MAX_PENDING: usize = 64;
const MAX_REASSEMBLIES: usize = 256;

pub const BAD_HEADER_CRC: &str = "bad_header_crc";
pub const BAD_DATA_CRC: &str = "bad_data_crc";
pub const INVALID_LENGTH: &str = "invalid_length";
pub const TRANSPORT_SEQUENCE: &str = "transport_sequence";
pub const FRAGMENT_TOO_LONG: &str = "fragment_too_long";
pub const RESERVED_FUNCTION: &str = "reserved_function";
pub const TRUNCATED_OBJECTS: &str = "truncated_objects";
pub const RESYNCHRONISED: &str = "resynchronised";

/// Function codes with a name (the rest are reserved).
pub fn assigned(fc: u8) -> bool {
    fc <= 33 || matches!(fc, 129..=131)
}

/// Requests whose object headers carry no object data.
fn headers_only(fc: u8) -> bool {
    matches!(fc, 0 | 1 | 7..=14 | 20..=24)
}

const fn crc_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u16;
        let mut i = 0;
        while i < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA6BC
            } else {
                crc >> 1
            };
            i += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

static TABLE: [u16; 256] = crc_table();

/// DNP3's CRC-16 (polynomial 0x3D65, reflected, complemented).
pub fn crc(data: &[u8]) -> u16 {
    let mut c: u16 = 0;
    for &b in data {
        c = (c >> 8) ^ TABLE[((c ^ b as u16) & 0xFF) as usize];
    }
    !c
}

/// Bytes on the wire of a link frame whose LEN field is `length` (>= 5).
pub fn frame_size(length: usize) -> usize {
    let user = length - 5;
    10 + user + 2 * user.div_ceil(16)
}

/// Start bytes, a sane length and (`strict`) a valid header CRC.
pub fn looks_like(p: &[u8], strict: bool) -> Sniff {
    let fits = |i: usize, ok: fn(u8) -> bool| p.get(i).is_none_or(|&b| ok(b));
    if !fits(0, |b| b == 0x05) || !fits(1, |b| b == 0x64) || !fits(2, |b| b >= 5) {
        return Sniff::No;
    }
    if p.len() < 10 {
        return Sniff::More;
    }
    Sniff::from(!strict || crc(&p[..8]) == u16::from_le_bytes([p[8], p[9]]))
}

/// Per-connection (or per UDP flow) state: buffers, transport reassembly, requests.
pub struct Parser {
    buf: [Vec<u8>; 2],
    segments: FxHashMap<(u16, u16), (u8, Vec<u8>)>,
    /// open requests: (source, destination, sequence) -> (token, function)
    pending: Pending<(u16, u16, u8), (u32, u8)>,
    txns: u32,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            buf: [Vec::new(), Vec::new()],
            segments: FxHashMap::default(),
            pending: Pending::new(MAX_PENDING),
            txns: 0,
        }
    }
}

fn anomaly(from_client: bool, kind: &'static str, detail: String) -> Event {
    Event::anomaly(from_client, Proto::Dnp3, kind, detail)
}

impl super::Dissect for Parser {
    fn held(&self) -> super::Held {
        (
            self.buf[0].len().max(self.buf[1].len()),
            self.pending.len(),
            self.segments.len(),
        )
    }

    fn feed(&mut self, data: &[u8], from_client: bool, gap: bool, out: &mut Vec<Event>) {
        let side = if from_client { 0 } else { 1 };
        if gap {
            self.buf[side].clear();
        }
        self.buf[side].extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf[side]);
        let n = buf.len();
        let mut pos = 0;
        while n - pos >= 10 {
            if buf[pos] != 0x05 || buf[pos + 1] != 0x64 {
                let found = buf[pos + 1..]
                    .windows(2)
                    .position(|w| w == [0x05, 0x64])
                    .map(|i| i + pos + 1);
                let skipped = found.unwrap_or(n - 1) - pos;
                out.push(anomaly(
                    from_client,
                    RESYNCHRONISED,
                    format!("skipped {skipped} bytes to the next 0x05 0x64"),
                ));
                pos += skipped;
                continue;
            }
            let length = buf[pos + 2] as usize;
            if length < 5 {
                out.push(anomaly(
                    from_client,
                    INVALID_LENGTH,
                    format!("link length {length}"),
                ));
                pos += 2;
                continue;
            }
            let size = frame_size(length);
            if pos + size > n {
                break;
            }
            self.frame(&buf[pos..pos + size], from_client, out);
            pos += size;
        }
        let mut buf = buf;
        buf.drain(..pos);
        self.buf[side] = buf;
    }

    fn feed_datagram(&mut self, data: &[u8], from_client: bool, out: &mut Vec<Event>) {
        self.feed(data, from_client, true, out);
    }
}

impl Parser {
    fn frame(&mut self, frame: &[u8], from_client: bool, out: &mut Vec<Event>) {
        let control = frame[3];
        let dst = u16::from_le_bytes([frame[4], frame[5]]);
        let src = u16::from_le_bytes([frame[6], frame[7]]);
        if crc(&frame[..8]) != u16::from_le_bytes([frame[8], frame[9]]) {
            out.push(anomaly(
                from_client,
                BAD_HEADER_CRC,
                format!("link header {src}->{dst}"),
            ));
            return; // addresses and length cannot be trusted
        }
        let mut user = Vec::with_capacity(frame.len());
        let mut bad_blocks = 0;
        let mut pos = 10;
        while pos < frame.len() {
            let end = (pos + 16).min(frame.len() - 2);
            let block = &frame[pos..end];
            let check = u16::from_le_bytes([frame[end], frame[end + 1]]);
            if crc(block) != check {
                bad_blocks += 1;
            }
            user.extend_from_slice(block);
            pos = end + 2;
        }
        if bad_blocks > 0 {
            out.push(anomaly(
                from_client,
                BAD_DATA_CRC,
                format!("{bad_blocks} user data block(s) {src}->{dst}"),
            ));
        }
        if user.is_empty() || control & 0x40 == 0 {
            return; // link-layer only (reset, link status) or a secondary frame (ack)
        }
        self.transport(&user, src, dst, control & 0x0F, from_client, out);
    }

    fn transport(
        &mut self,
        seg: &[u8],
        src: u16,
        dst: u16,
        link_fn: u8,
        from_client: bool,
        out: &mut Vec<Event>,
    ) {
        let th = seg[0];
        let (fir, fin, seq) = (th & 0x40 != 0, th & 0x80 != 0, th & 0x3F);
        let key = (src, dst);
        let mut parts: Vec<u8>;
        let mut held = 0; // the entry taken out below still counts towards the bound
        if fir {
            if self.segments.contains_key(&key) {
                out.push(anomaly(
                    from_client,
                    TRANSPORT_SEQUENCE,
                    "new first segment before the last one ended".into(),
                ));
            }
            parts = seg[1..].to_vec();
        } else {
            match self.segments.remove(&key) {
                Some((last, p)) if (last + 1) & 0x3F == seq => {
                    held = 1;
                    parts = p;
                    parts.extend_from_slice(&seg[1..]);
                }
                _ => {
                    out.push(anomaly(
                        from_client,
                        TRANSPORT_SEQUENCE,
                        format!("segment {seq} out of sequence {src}->{dst}"),
                    ));
                    return;
                }
            }
        }
        if parts.len() > MAX_FRAGMENT {
            self.segments.remove(&key);
            out.push(anomaly(
                from_client,
                FRAGMENT_TOO_LONG,
                format!("fragment over {MAX_FRAGMENT} bytes"),
            ));
            return;
        }
        if !fin {
            if self.segments.len() + held > MAX_REASSEMBLIES {
                self.segments.clear();
            }
            self.segments.insert(key, (seq, parts));
            return;
        }
        self.segments.remove(&key);
        if parts.len() >= 2 {
            let mut pdu = decode_fragment(&parts, src, dst);
            pdu.link_function = link_fn;
            let points = point_values(&pdu);
            let mut ev = Event::new(from_client, Body::Dnp3(pdu));
            ev.points = points;
            self.pair(&mut ev);
            out.push(ev);
        }
    }

    fn pair(&mut self, ev: &mut Event) {
        let Body::Dnp3(pdu) = &ev.body else { return };
        let fc = pdu.function_code;
        let seq = pdu.app_control & 0x0F;
        if fc < 0x80 && fc != 0 {
            self.txns = self.txns.wrapping_add(1).max(1);
            ev.txn = self.txns;
            let key = (pdu.source_address, pdu.destination_address, seq);
            self.pending.open(key, (self.txns, fc));
        } else if fc == 0x81 {
            let key = (pdu.destination_address, pdu.source_address, seq);
            if let Some((txn, req_fc)) = self.pending.close(&key) {
                // IIN2 bits 0-2: function not supported, object unknown, parameter error
                let accepted = pdu.iin.is_none_or(|iin| iin & 0x0007 == 0);
                ev.req = Some(Req {
                    txn,
                    function_code: Some(req_fc as u16),
                    accepted,
                    ..Default::default()
                });
            }
        }
    }
}

/// Decode an application fragment (at least 2 bytes).
pub fn decode_fragment(frag: &[u8], src: u16, dst: u16) -> Dnp3Pdu {
    let (control, fc) = (frag[0], frag[1]);
    let mut pdu = Dnp3Pdu {
        source_address: src,
        destination_address: dst,
        function_code: fc,
        app_control: control,
        ..Default::default()
    };
    let mut pos = 2;
    if fc >= 0x80 {
        if frag.len() < 4 {
            pdu.anomalies = vec![TRUNCATED_OBJECTS];
            return pdu;
        }
        pdu.iin = Some(((frag[2] as u16) << 8) | frag[3] as u16);
        pos = 4;
    }
    if !assigned(fc) {
        pdu.anomalies.push(RESERVED_FUNCTION);
    }
    let ok = objects(frag, pos, !headers_only(fc), &mut pdu.objects);
    if !ok {
        pdu.anomalies.push(TRUNCATED_OBJECTS);
    }
    pdu
}

fn le(b: &[u8], pos: usize, w: usize) -> u64 {
    b[pos..pos + w]
        .iter()
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

/// Object headers in order; stops (still ok) at an object whose size it cannot know.
fn objects(frag: &[u8], mut pos: usize, with_data: bool, out: &mut Vec<Dnp3Object>) -> bool {
    let n = frag.len();
    while pos < n && out.len() < MAX_OBJECTS {
        if pos + 3 > n {
            return false;
        }
        let (group, var, qual) = (frag[pos], frag[pos + 1], frag[pos + 2]);
        pos += 3;
        let range_code = qual & 0x0F;
        let mut start = None;
        let count: u64;
        match range_code {
            0..=2 => {
                let w = [1, 2, 4][range_code as usize];
                if pos + 2 * w > n {
                    return false;
                }
                let a = le(frag, pos, w);
                let b = le(frag, pos + w, w);
                start = Some(a);
                pos += 2 * w;
                count = if b >= a { b - a + 1 } else { 0 };
            }
            7 | 8 | 9 | 0x0B => {
                let w = match range_code {
                    8 => 2,
                    9 => 4,
                    _ => 1,
                };
                if pos + w > n {
                    return false;
                }
                count = le(frag, pos, w);
                pos += w;
            }
            6 => count = 0,
            _ => {
                out.push(Dnp3Object {
                    group,
                    variation: var,
                    qualifier: qual,
                    count: 0,
                    start: None,
                    indexes: Vec::new(),
                    values: Vec::new(),
                });
                return true;
            }
        }
        out.push(Dnp3Object {
            group,
            variation: var,
            qualifier: qual,
            count,
            start,
            indexes: Vec::new(),
            values: Vec::new(),
        });
        if !with_data || range_code == 6 || group == 60 {
            continue;
        }
        if matches!(group, 2 | 12 | 22 | 32 | 41) {
            let o = out.last_mut().unwrap();
            (o.indexes, o.values) = prefixed(frag, pos, group, var, qual, count).unzip();
        } else if range_code <= 2 {
            out.last_mut().unwrap().values = static_values(group, var, &frag[pos..], count);
        }
        match data_size(group, var, qual, count, frag, pos) {
            None => return true, // unknown object size: the headers after it stay unread
            Some(size) => {
                pos = pos.saturating_add(usize::try_from(size).unwrap_or(usize::MAX));
                if pos > n {
                    return false;
                }
            }
        }
    }
    true
}

/// Points named by index prefix (1, 2 or 4 bytes before each object), with the value of
/// each: a control request's (g41 the analog value, g12 the control code, at most 32) or an
/// answer's events (binary input, counter and analog input events).
fn prefixed(
    frag: &[u8],
    pos: usize,
    group: u8,
    var: u8,
    qual: u8,
    count: u64,
) -> impl Iterator<Item = (u32, f64)> + '_ {
    let prefix = match (qual >> 4) & 0x07 {
        1 => 1,
        2 => 2,
        3 => 4,
        _ => 0,
    };
    let control = matches!(group, 12 | 41);
    let size = fixed_size(group, var).filter(|_| prefix > 0).unwrap_or(0) as usize;
    let step = prefix + size;
    let limit = if control { 32 } else { MAX_POINTS };
    let n = if size == 0 {
        0
    } else {
        count.min(limit as u64) as usize
    };
    (0..n)
        .map(move |k| pos + k * step)
        .take_while(move |&at| at + step <= frag.len())
        .filter_map(move |at| {
            let v = &frag[at + prefix..at + step];
            let value = if control {
                control_value(group, var, v)
            } else {
                let (at, kind) = event_layout(group, var)?;
                decode(kind, &v[at..])
            };
            Some((le(frag, at, prefix) as u32, value))
        })
}

/// Where an event's value lies after its flags, and its kind (see ``decode``).
fn event_layout(group: u8, var: u8) -> Option<(usize, u8)> {
    Some(match (group, var) {
        (2, 1..=3) => (0, b's'),
        (22, 1 | 5) => (1, b'U'),
        (22, 2 | 6) => (1, b'u'),
        (32, 1 | 3) => (1, b'I'),
        (32, 2 | 4) => (1, b'i'),
        (32, 5 | 7) => (1, b'f'),
        (32, 6 | 8) => (1, b'd'),
        _ => return None,
    })
}

/// A value by its kind: a binary point's state bit (`s`), unsigned 32/16-bit (`U`/`u`),
/// signed 32/16-bit (`I`/`i`), float 32/64-bit (`f`/`d`), little-endian.
fn decode(kind: u8, v: &[u8]) -> f64 {
    match kind {
        b's' => ((v[0] >> 7) & 1) as f64,
        b'U' => u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as f64,
        b'u' => u16::from_le_bytes([v[0], v[1]]) as f64,
        b'I' => i32::from_le_bytes([v[0], v[1], v[2], v[3]]) as f64,
        b'i' => i16::from_le_bytes([v[0], v[1]]) as f64,
        b'f' => f32::from_le_bytes([v[0], v[1], v[2], v[3]]) as f64,
        _ => f64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]),
    }
}

/// The values of a range of static points (binary inputs and outputs, counters, analog
/// inputs and output statuses) by their variation; empty for other objects. Binary points
/// are 0/1 (their state bit), the rest their value without the flags byte.
fn static_values(group: u8, var: u8, data: &[u8], count: u64) -> Vec<f64> {
    let n = (count as usize).min(MAX_POINTS);
    if matches!((group, var), (1, 1) | (10, 1)) {
        let n = n.min(data.len() * 8);
        return (0..n)
            .map(|i| ((data[i / 8] >> (i % 8)) & 1) as f64)
            .collect();
    }
    // (bytes per point, where the value starts, its kind)
    let (size, at, kind) = match (group, var) {
        (1, 2) | (10, 2) => (1, 0, b's'),
        (20, 1) | (21, 1) => (5, 1, b'U'),
        (20, 2) | (21, 2) => (3, 1, b'u'),
        (20, 5) | (21, 9) => (4, 0, b'U'),
        (20, 6) | (21, 10) => (2, 0, b'u'),
        (30, 1) | (40, 1) => (5, 1, b'I'),
        (30, 2) | (40, 2) => (3, 1, b'i'),
        (30, 3) => (4, 0, b'I'),
        (30, 4) => (2, 0, b'i'),
        (30, 5) | (40, 3) => (5, 1, b'f'),
        (30, 6) | (40, 4) => (9, 1, b'd'),
        _ => return Vec::new(),
    };
    data.chunks_exact(size)
        .take(n)
        .map(|p| decode(kind, &p[at..]))
        .collect()
}

fn control_value(group: u8, var: u8, v: &[u8]) -> f64 {
    match (group, var) {
        (41, 1) => i32::from_le_bytes([v[0], v[1], v[2], v[3]]) as f64,
        (41, 2) => i16::from_le_bytes([v[0], v[1]]) as f64,
        (41, 3) => f32::from_le_bytes([v[0], v[1], v[2], v[3]]) as f64,
        (41, 4) => f64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]),
        _ => v[0] as f64, // g12: the control code
    }
}

/// The values a response reports (static points of a range, events by index), or an
/// operate or direct operate sets (a select only names them).
fn point_values(p: &Dnp3Pdu) -> Vec<Points> {
    if matches!(p.function_code, 0x81 | 0x82) {
        let mut out = Vec::new();
        for o in p.objects.iter().filter(|o| !o.values.is_empty()) {
            if o.indexes.is_empty() {
                if let Some(start) = o.start.and_then(|s| u32::try_from(s).ok()) {
                    out.push(Points {
                        table: Table::Dnp3(o.group),
                        start,
                        step: 1,
                        values: o.values.clone(),
                    });
                }
            } else {
                out.extend(o.indexes.iter().zip(&o.values).map(|(&i, &v)| Points {
                    table: Table::Dnp3(o.group),
                    start: i,
                    step: 1,
                    values: vec![v],
                }));
            }
        }
        return out;
    }
    if !matches!(p.function_code, 4..=6) {
        return Vec::new();
    }
    p.objects
        .iter()
        .filter(|o| matches!(o.group, 12 | 41))
        .flat_map(|o| {
            o.indexes.iter().zip(&o.values).map(|(&i, &v)| Points {
                table: Table::Dnp3(o.group),
                start: i,
                step: 1,
                values: vec![v],
            })
        })
        .collect()
}

fn fixed_size(group: u8, var: u8) -> Option<u64> {
    Some(match (group, var) {
        (1, 2) | (2, 1) | (3, 2) | (4, 1) | (10, 2) | (11, 1) | (13, 1) => 1,
        (2, 2) | (4, 2) | (11, 2) | (13, 2) => 7,
        (2, 3) | (4, 3) => 3,
        (12, 1) | (12, 2) => 11,
        (20, 1) | (21, 1) | (22, 1) | (23, 1) | (30, 1) | (30, 5) | (31, 1) | (31, 7) => 5,
        (20, 2) | (21, 2) | (22, 2) | (23, 2) | (30, 2) | (31, 2) => 3,
        (20, 5) | (30, 3) | (31, 5) => 4,
        (20, 6) | (30, 4) | (31, 6) => 2,
        (21, 5) | (22, 5) | (23, 5) | (31, 3) => 11,
        (21, 6) | (22, 6) | (23, 6) | (30, 6) | (31, 4) | (31, 8) => 9,
        (21, 9) => 4,
        (21, 10) => 2,
        (32, 1) | (33, 1) | (32, 5) | (33, 5) | (40, 1) | (41, 1) | (40, 3) | (41, 3) => 5,
        (32, 2) | (33, 2) | (40, 2) | (41, 2) => 3,
        (32, 3) | (33, 3) | (32, 7) | (33, 7) => 11,
        (32, 4) | (33, 4) | (32, 6) | (33, 6) | (40, 4) | (41, 4) => 9,
        (32, 8) | (33, 8) => 15,
        (34, 1) => 2,
        (34, 2) | (34, 3) => 4,
        (42, 1) | (43, 1) | (42, 5) | (43, 5) => 5,
        (42, 2) | (43, 2) => 3,
        (42, 3) | (43, 3) | (42, 7) | (43, 7) => 11,
        (42, 4) | (43, 4) | (42, 6) | (43, 6) => 9,
        (42, 8) | (43, 8) => 15,
        (50, 1) | (50, 3) | (51, 1) | (51, 2) => 6,
        (50, 2) => 10,
        (50, 4) => 11,
        (52, 1) | (52, 2) => 2,
        _ => return None,
    })
}

fn data_size(group: u8, var: u8, qual: u8, count: u64, frag: &[u8], pos: usize) -> Option<u64> {
    let pcode = (qual >> 4) & 0x07;
    let prefix: u64 = match pcode {
        0 => 0,
        1 | 4 => 1,
        2 | 5 => 2,
        3 | 6 => 4,
        _ => return None,
    };
    if matches!(pcode, 4..=6) {
        // each object preceded by its own size
        let mut total: u64 = 0;
        let n = frag.len() as u64;
        for _ in 0..count {
            let at = pos as u64 + total;
            if at + prefix > n {
                return Some(n - pos as u64 + 1);
            }
            total += prefix + le(frag, at as usize, prefix as usize);
        }
        return Some(total);
    }
    let bits = match (group, var) {
        (1, 1) | (10, 1) | (12, 3) | (80, 1) => Some(1),
        (3, 1) => Some(2),
        _ => None,
    };
    if let Some(bits) = bits {
        return Some(if prefix == 0 {
            (count * bits).div_ceil(8)
        } else {
            count * (prefix + 1)
        });
    }
    if (110..=113).contains(&group) {
        return Some(count * (prefix + var as u64)); // octet strings: the variation is the length
    }
    fixed_size(group, var).map(|size| count * (prefix + size))
}

// -- the `otsec.dnp3` object of the PDU event document ------------------------------

fn json(out: &mut Vec<u8>, p: &Dnp3Pdu) {
    out.push(b'{');
    field_u(out, "source_address", p.source_address as u64);
    field_u(out, "destination_address", p.destination_address as u64);
    field_u(out, "function_code", p.function_code as u64);
    field_u(out, "application_control", p.app_control as u64);
    field_b(out, "unsolicited", p.app_control & 0x10 != 0);
    field_some_u(out, "iin", p.iin.map(u64::from));
    if !p.objects.is_empty() {
        list(out, "objects", p.objects.iter().take(64), |out, o| {
            out.push(b'{');
            field_u(out, "group", o.group as u64);
            field_u(out, "variation", o.variation as u64);
            field_u(out, "qualifier", o.qualifier as u64);
            field_u(out, "count", o.count);
            out.push(b'}');
        });
    }
    if !p.anomalies.is_empty() {
        str_list(out, "anomalies", &p.anomalies);
    }
    out.push(b'}');
}

// -- what a PDU does (see meaning.rs) --------------------------------------------

const WRITES: [u8; 13] = [2, 3, 4, 5, 6, 15, 16, 17, 18, 19, 25, 27, 31];

fn describe(p: &Dnp3Pdu) -> Use {
    let fc = p.function_code;
    let request = fc < 0x80;
    let unit = if request {
        p.destination_address
    } else {
        p.source_address
    };
    let mut groups: Vec<u8> = if request {
        p.objects.iter().map(|o| o.group).collect()
    } else {
        Vec::new()
    };
    groups.sort_unstable();
    groups.dedup();
    Use {
        code: fc as u32,
        writes: WRITES.contains(&fc),
        command: fc > 1 && fc < 0x80 && fc != 23,
        unit: Some(unit as u32),
        ranges: if (3..=6).contains(&fc) {
            control_points(p)
        } else {
            Vec::new()
        },
        groups,
    }
}

/// The points a control (select, operate, direct operate) acts on, one range per index.
fn control_points(p: &Dnp3Pdu) -> Vec<(Table, i64, i64)> {
    let mut out = Vec::new();
    for o in p.objects.iter().filter(|o| matches!(o.group, 12 | 41)) {
        match o.start {
            Some(start) if o.count > 0 => {
                out.push((Table::Dnp3(o.group), start as i64, o.count as i64))
            }
            _ => out.extend(
                o.indexes
                    .iter()
                    .map(|&i| (Table::Dnp3(o.group), i as i64, 1)),
            ),
        }
    }
    out
}

fn evidence(p: &Dnp3Pdu) -> Evidence {
    let fc = p.function_code;
    if fc >= 0x80 {
        Evidence {
            client: None,
            server: Some("dnp3-outstation"),
        }
    } else if fc == 0 {
        Evidence::default() // a confirm says nothing about roles
    } else if WRITES.contains(&fc) {
        Evidence {
            client: Some("dnp3-write"),
            server: None,
        }
    } else {
        Evidence {
            client: Some("dnp3-read"),
            server: None,
        }
    }
}

// -- the record as the rest of the core reads it: meaning, output, rule fields ---------

impl super::Record for Dnp3Pdu {
    fn anomalies(&self) -> &[&'static str] {
        &self.anomalies
    }
    fn is_request(&self, _from_client: bool) -> bool {
        self.function_code < 0x80
    }
    fn code(&self) -> Option<u32> {
        Some(self.function_code as u32)
    }
    fn describe(&self, _from_client: bool) -> Option<Use> {
        Some(describe(self))
    }
    fn evidence(&self, _from_client: bool, _req: Option<&Req>) -> Evidence {
        evidence(self)
    }
    fn station_address(&self) -> Option<u16> {
        Some(self.source_address)
    }
    fn refusal(&self) -> Option<String> {
        self.iin.map(|iin| format!("dnp3:{}", iin & 0x7))
    }
    fn json(&self, out: &mut Vec<u8>, _req: Option<&Req>) {
        json(out, self)
    }
    fn field(&self, name: u8) -> Val {
        match name {
            f::SOURCE_ADDRESS => Val::Int(self.source_address.into()),
            f::DESTINATION_ADDRESS => Val::Int(self.destination_address.into()),
            f::FUNCTION_CODE => Val::Int(self.function_code.into()),
            f::APP_CONTROL => Val::Int(self.app_control.into()),
            f::IIN => int(self.iin),
            f::LINK_FUNCTION => Val::Int(self.link_function.into()),
            f::OBJECTS_GROUP => Val::List(
                self.objects
                    .iter()
                    .map(|o| Val::Int(o.group.into()))
                    .collect(),
            ),
            f::OBJECTS_VARIATION => Val::List(
                self.objects
                    .iter()
                    .map(|o| Val::Int(o.variation.into()))
                    .collect(),
            ),
            f::OBJECTS_QUALIFIER => Val::List(
                self.objects
                    .iter()
                    .map(|o| Val::Int(o.qualifier.into()))
                    .collect(),
            ),
            _ => Val::None,
        }
    }
    #[cfg(feature = "python")]
    fn py_fields(&self, d: &pyo3::Bound<'_, pyo3::types::PyDict>) -> pyo3::PyResult<()> {
        use crate::python::opt;
        use pyo3::prelude::*;
        d.set_item("source_address", self.source_address)?;
        d.set_item("destination_address", self.destination_address)?;
        d.set_item("function_code", self.function_code)?;
        d.set_item("app_control", self.app_control)?;
        opt(d, "iin", self.iin)?;
        if !self.objects.is_empty() {
            let objs: Vec<(u8, u8, u8, u64, Option<u64>)> = self
                .objects
                .iter()
                .map(|o| (o.group, o.variation, o.qualifier, o.count, o.start))
                .collect();
            d.set_item("objects", objs)?;
        }
        d.set_item("link_function", self.link_function)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_points_by_their_variation() {
        // g30v1: flags then a signed 32-bit value, little-endian
        let mut data = vec![0x01];
        data.extend_from_slice(&(-1234i32).to_le_bytes());
        data.push(0x01);
        data.extend_from_slice(&70000i32.to_le_bytes());
        assert_eq!(static_values(30, 1, &data, 2), vec![-1234.0, 70000.0]);
        // g30v5: flags then a 32-bit float
        let mut data = vec![0x01];
        data.extend_from_slice(&21.5f32.to_le_bytes());
        assert_eq!(static_values(30, 5, &data, 1), vec![21.5]);
        // g1v2: the state is bit 7 of the flags; g1v1: packed bits, least significant first
        assert_eq!(static_values(1, 2, &[0x81, 0x01], 2), vec![1.0, 0.0]);
        assert_eq!(static_values(1, 1, &[0b0000_0101], 3), vec![1.0, 0.0, 1.0]);
        // g20v5: a 32-bit counter without flags; truncated data gives what is there
        assert_eq!(static_values(20, 5, &[1, 0, 0, 0, 2, 0], 2), vec![1.0]);
        assert!(static_values(50, 1, &[0; 6], 1).is_empty()); // time: not a process value
    }

    #[test]
    fn events_by_index_prefix() {
        // g32v1 with 1-byte index prefixes (qualifier 0x17): index 3 = -5, index 9 = 42
        let mut frag = vec![3, 0x01];
        frag.extend_from_slice(&(-5i32).to_le_bytes());
        frag.extend_from_slice(&[9, 0x01]);
        frag.extend_from_slice(&42i32.to_le_bytes());
        let got: Vec<_> = prefixed(&frag, 0, 32, 1, 0x17, 2).collect();
        assert_eq!(got, vec![(3, -5.0), (9, 42.0)]);
        // g2v2 (flags and a 48-bit time) with 2-byte prefixes: the state bit
        let frag = [7, 0, 0x81, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            prefixed(&frag, 0, 2, 2, 0x28, 1).collect::<Vec<_>>(),
            vec![(7, 1.0)]
        );
    }
}
