//! Siemens S7comm and S7comm-plus over ISO-on-TCP (RFC 1006 TPKT + ISO 8073 COTP).
//!
//! S7comm (0x32) is decoded in depth: job/ack/ack_data/userdata, read/write var items,
//! block download/upload, PI services, PLC stop, userdata groups with SZL ids, and the
//! device identity in SZL 0x0011/0x001C answers; jobs are paired with answers by PDU
//! reference. S7comm-plus (0x72): version, integrity digest, opcode and function from the
//! clear header; the object model behind it is not decoded.

use super::Sniff;
use crate::events::{Body, Event, Points, Proto, Req, MAX_POINTS};
use crate::json::latin1;
use crate::json::*;
use crate::meaning::{Evidence, Table, Use, USERDATA_BASE};
use crate::pending::Pending;
use crate::rules::{f, int, Val};

/// The TSAPs of a COTP connection (source, destination), as big-endian bytes.
pub type Tsaps = (Option<Vec<u8>>, Option<Vec<u8>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S7Item {
    pub area: u8,
    pub db: u16,
    pub byte: u32,
    pub bit: u8,
    pub length: u16,
    pub transport_size: u8,
}

#[derive(Clone, Debug, Default)]
pub struct S7Pdu {
    pub rosctr: u8,
    pub pdu_reference: u16,
    pub function_code: Option<u8>,
    pub error_class: Option<u8>,
    pub error_code: Option<u8>,
    pub group: Option<u8>,
    pub subfunction: Option<u8>,
    pub userdata_type: Option<u8>,
    pub szl_id: Option<u16>,
    pub szl_index: Option<u16>,
    pub pi_service: Option<String>,
    pub block_type: Option<String>,
    pub block_number: Option<u32>,
    pub items: Vec<S7Item>,
    pub return_codes: Vec<u8>,
    /// from SZL 0x0011 / 0x001C answers, in the order found
    pub identity: Option<Vec<(&'static str, String)>>,
    /// TSAPs of the COTP connection request (big-endian bytes)
    pub tsaps: Option<Tsaps>,
    pub anomalies: Vec<&'static str>,
}

impl S7Pdu {
    /// Job, or userdata of type request (the client side of the exchange).
    pub fn from_request(&self) -> bool {
        self.rosctr == 1 || (self.rosctr == 7 && self.userdata_type == Some(4))
    }
}

#[derive(Clone, Debug, Default)]
pub struct S7PlusPdu {
    pub version: u8,
    pub opcode: Option<u8>,
    pub function_code: Option<u16>,
    pub sequence: Option<u16>,
    pub integrity: bool,
    pub anomalies: Vec<&'static str>,
}

pub const PORT: u16 = 102;

pub const DISSECTOR: super::Dissector = super::Dissector {
    proto: Proto::S7comm,
    tcp_port: PORT,
    udp_port: None,
    looks_like,
    parser: || Box::<Parser>::default(),
};

const CR: u8 = 0xE0;
const CC: u8 = 0xD0;
const DT: u8 = 0xF0;
const MAX_REASSEMBLY: usize = 64 * 1024;
pub const MAX_PENDING: usize = 256;

pub const INVALID_TPKT: &str = "invalid_tpkt";
pub const INVALID_COTP: &str = "invalid_cotp";
pub const INVALID_HEADER: &str = "invalid_header";
pub const TRUNCATED_PDU: &str = "truncated_pdu";
pub const UNKNOWN_ROSCTR: &str = "unknown_rosctr";
pub const FRAGMENT_OVERFLOW: &str = "fragment_overflow";
pub const UNSOLICITED_RESPONSE: &str = "unsolicited_response";
pub const FLOODED: &str = "flooded";
pub const RESYNCHRONISED: &str = "resynchronised";

fn cotp_type(b: u8) -> bool {
    matches!(
        b & 0xF0,
        0xE0 | 0xD0 | 0xF0 | 0x80 | 0xC0 | 0x10 | 0x20 | 0x50 | 0x60 | 0x70
    )
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// TPKTs (version 3) with COTP inside, up to the first data TPDU, which must carry S7comm
/// (0x32) or S7comm-plus (0x72): ISO connection requests and confirms before it are
/// walked over (MMS and other ISO protocols share port 102 and its connection setup).
/// `More` while the bytes so far fit. `strict` (off port 102) also wants the data TPDU's
/// usual 2-byte COTP header.
pub fn looks_like(p: &[u8], strict: bool) -> Sniff {
    let n = p.len();
    let mut pos = 0;
    loop {
        let q = &p[pos..];
        let m = q.len();
        if m == 0 {
            return Sniff::More;
        }
        if q[0] != 3 || (m > 1 && q[1] != 0) {
            return Sniff::No;
        }
        if m < 4 {
            return Sniff::More;
        }
        let length = be16(q, 2) as usize;
        if length < 7 || (m >= 5 && q[4] as usize + 5 > length) {
            return Sniff::No;
        }
        if m < 6 {
            return Sniff::More;
        }
        if !cotp_type(q[5]) {
            return Sniff::No;
        }
        let li = q[4] as usize;
        if q[5] & 0xF0 == DT {
            if strict && li != 2 {
                return Sniff::No;
            }
            return match q.get(5 + li) {
                None if length > 5 + li => Sniff::More,
                Some(0x32) | Some(0x72) => Sniff::Yes,
                _ => Sniff::No,
            };
        }
        // a connection request, confirm or other TPDU: judged on the data that follows
        if pos + length > n {
            return Sniff::More;
        }
        pos += length;
    }
}

enum Unit {
    Data(Vec<u8>),
    Connect {
        cr: bool,
        src: Option<Vec<u8>>,
        dst: Option<Vec<u8>>,
    },
    Other,
}

/// A TSAP parameter of the connection request; longer than 4 bytes it is no number a
/// document can hold (real ones have 2), so it is left out.
fn tsap(params: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut pos = 0;
    while pos + 2 <= params.len() {
        let (pcode, plen) = (params[pos], params[pos + 1] as usize);
        let value = &params[(pos + 2).min(params.len())..(pos + 2 + plen).min(params.len())];
        if pcode == code && !value.is_empty() {
            return (value.len() <= 4).then(|| value.to_vec());
        }
        pos += 2 + plen;
    }
    None
}

/// TPKT/COTP framer for one direction.
#[derive(Default)]
struct CotpStream {
    buf: Vec<u8>,
    fragments: Vec<u8>,
    fragmenting: bool,
    resync: bool,
}

fn find_tpkt(buf: &[u8], pos: usize) -> Option<usize> {
    let n = buf.len();
    let mut i = pos;
    while i + 1 < n {
        if buf[i] == 3 && buf[i + 1] == 0 {
            if i + 6 > n {
                return None;
            }
            let length = be16(buf, i + 2) as usize;
            if length >= 7 && buf[i + 4] as usize + 5 <= length && cotp_type(buf[i + 5]) {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

impl CotpStream {
    fn feed(
        &mut self,
        data: &[u8],
        gap: bool,
        units: &mut Vec<Unit>,
        problems: &mut Vec<&'static str>,
    ) {
        if gap {
            self.buf.clear();
            self.fragments.clear();
            self.fragmenting = false;
            self.resync = true;
        }
        self.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf);
        let n = buf.len();
        let mut pos = 0;
        while n - pos >= 4 {
            if self.resync || buf[pos] != 3 || buf[pos + 1] != 0 {
                match find_tpkt(&buf, pos) {
                    None => {
                        if n - pos > 4096 {
                            problems.push(RESYNCHRONISED);
                            pos = n - 4;
                        }
                        break;
                    }
                    Some(found) => {
                        if found > pos {
                            problems.push(RESYNCHRONISED);
                        }
                        pos = found;
                        self.resync = false;
                    }
                }
            }
            let length = be16(&buf, pos + 2) as usize;
            if length < 7 {
                problems.push(INVALID_TPKT);
                self.resync = true;
                pos += 1;
                continue;
            }
            if pos + length > n {
                break;
            }
            if let Some(u) = self.cotp(&buf[pos + 4..pos + length], problems) {
                units.push(u);
            }
            pos += length;
        }
        let mut buf = buf;
        buf.drain(..pos);
        self.buf = buf;
    }

    fn cotp(&mut self, b: &[u8], problems: &mut Vec<&'static str>) -> Option<Unit> {
        let li = b[0] as usize;
        if 1 + li > b.len() || li < 1 {
            problems.push(INVALID_COTP);
            return None;
        }
        let tpdu = b[1] & 0xF0;
        if tpdu == DT {
            let eot = li >= 2 && b[2] & 0x80 != 0;
            let part = &b[1 + li..];
            if self.fragmenting || !eot {
                if self.fragments.len() + part.len() > MAX_REASSEMBLY {
                    problems.push(FRAGMENT_OVERFLOW);
                    self.fragments.clear();
                    self.fragmenting = false;
                    return None;
                }
                self.fragments.extend_from_slice(part);
                self.fragmenting = true;
                if !eot {
                    return None;
                }
                self.fragmenting = false;
                return Some(Unit::Data(std::mem::take(&mut self.fragments)));
            }
            return Some(Unit::Data(part.to_vec()));
        }
        if tpdu == CR || tpdu == CC {
            let params = &b[7.min(1 + li)..1 + li];
            return Some(Unit::Connect {
                cr: tpdu == CR,
                src: tsap(params, 0xC1),
                dst: tsap(params, 0xC2),
            });
        }
        Some(Unit::Other)
    }
}

/// Per-connection state: a COTP framer per direction and the open jobs.
pub struct Parser {
    streams: [CotpStream; 2],
    /// open jobs: reference -> (token, rosctr, function, userdata group)
    pending: Pending<u16, Job>,
    txns: u32,
    tsaps: Option<Tsaps>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            streams: Default::default(),
            pending: Pending::new(MAX_PENDING),
            txns: 0,
            tsaps: None,
        }
    }
}

impl super::Dissect for Parser {
    fn held(&self) -> super::Held {
        let buffered = self.streams.iter().map(|s| s.buf.len()).max().unwrap_or(0);
        let fragments = self
            .streams
            .iter()
            .map(|s| s.fragments.len())
            .max()
            .unwrap_or(0);
        (buffered, self.pending.len(), fragments)
    }

    fn feed(&mut self, data: &[u8], from_client: bool, gap: bool, out: &mut Vec<Event>) {
        let mut units = Vec::new();
        let mut problems = Vec::new();
        self.streams[if from_client { 0 } else { 1 }].feed(data, gap, &mut units, &mut problems);
        for p in problems {
            out.push(Event::anomaly(
                from_client,
                Proto::S7comm,
                p,
                "TPKT/COTP framing".into(),
            ));
        }
        for unit in units {
            match unit {
                Unit::Connect { cr, src, dst } => {
                    let unset = matches!(&self.tsaps, None | Some((None, None)));
                    if cr || unset {
                        self.tsaps = Some((src, dst));
                    }
                }
                Unit::Data(d) if !d.is_empty() => self.data(&d, from_client, out),
                _ => {}
            }
        }
    }

    fn feed_datagram(&mut self, data: &[u8], from_client: bool, out: &mut Vec<Event>) {
        self.feed(data, from_client, true, out);
    }
}

impl Parser {
    fn data(&mut self, data: &[u8], from_client: bool, out: &mut Vec<Event>) {
        match data[0] {
            0x32 => {
                let mut pdu = decode_s7(data);
                pdu.tsaps = self.tsaps.clone();
                self.pair(pdu, data, from_client, out);
            }
            0x72 => {
                out.push(Event::new(from_client, Body::S7commPlus(decode_plus(data))));
            }
            other => out.push(Event::anomaly(
                from_client,
                Proto::S7comm,
                INVALID_HEADER,
                format!("protocol id 0x{other:02x} in a COTP data unit"),
            )),
        }
    }

    fn pair(&mut self, mut pdu: S7Pdu, data: &[u8], from_client: bool, out: &mut Vec<Event>) {
        if pdu.rosctr == 7 && pdu.userdata_type == Some(0) {
            out.push(Event::new(from_client, Body::S7comm(pdu)));
            return; // push messages (alarms, cyclic data) answer nothing
        }
        if pdu.from_request() {
            self.txns = self.txns.wrapping_add(1).max(1);
            let read = pdu.rosctr == 1 && pdu.function_code == Some(0x04);
            let items = if read { pdu.items.clone() } else { Vec::new() };
            let open = (self.txns, pdu.rosctr, pdu.function_code, pdu.group, items);
            let r = pdu.pdu_reference;
            let points = if pdu.rosctr == 1 && pdu.function_code == Some(0x05) {
                points(&pdu.items, body(data), 0x00)
            } else {
                Vec::new()
            };
            let mut ev = Event::new(from_client, Body::S7comm(pdu));
            ev.txn = self.txns;
            ev.points = points;
            out.push(ev);
            if self.pending.open(r, open) {
                let detail = format!("over {MAX_PENDING} jobs without an answer");
                out.push(Event::anomaly(from_client, Proto::S7comm, FLOODED, detail));
            }
            return;
        }
        if !matches!(pdu.rosctr, 2 | 3 | 7) {
            out.push(Event::new(from_client, Body::S7comm(pdu)));
            return;
        }
        match self.pending.close(&pdu.pdu_reference) {
            None => {
                let r = pdu.pdu_reference;
                out.push(Event::new(from_client, Body::S7comm(pdu)));
                let detail = format!("answer to PDU {r} without a job");
                out.push(Event::anomaly(
                    from_client,
                    Proto::S7comm,
                    UNSOLICITED_RESPONSE,
                    detail,
                ));
            }
            Some((txn, rosctr, req_fc, group, items)) => {
                if pdu.function_code.is_none() && req_fc.is_some() && pdu.rosctr != 7 {
                    pdu.function_code = req_fc;
                }
                let accepted = pdu.error_class.unwrap_or(0) == 0
                    && pdu.error_code.unwrap_or(0) == 0
                    && pdu.return_codes.iter().all(|&rc| rc == 0xFF);
                let info = Req {
                    txn,
                    rosctr,
                    function_code: req_fc.map(u16::from),
                    group,
                    accepted,
                    ..Default::default()
                };
                let answered = pdu.rosctr == 3 && pdu.function_code == Some(0x04);
                let points = if answered {
                    points(&items, body(data), 0xFF)
                } else {
                    Vec::new()
                };
                let mut ev = Event::new(from_client, Body::S7comm(pdu));
                ev.req = Some(info);
                ev.points = points;
                out.push(ev);
            }
        }
    }
}

// -- process values ----------------------------------------------------------------

/// The data part of an S7 PDU (after header and parameters); empty when it does not fit.
fn body(data: &[u8]) -> &[u8] {
    if data.len() < 10 {
        return &[];
    }
    let hlen = if matches!(data[1], 2 | 3) { 12 } else { 10 };
    let (plen, dlen) = (be16(data, 6) as usize, be16(data, 8) as usize);
    data.get(hlen + plen..hlen + plen + dlen)
        .unwrap_or_default()
}

/// Bytes per element of an item's type, for the types whose values are numbers (BYTE,
/// CHAR, WORD, INT, DWORD, DINT, REAL); bits, counters, timers and strings are not kept.
fn element_size(transport_size: u8) -> Option<usize> {
    match transport_size {
        2 | 3 => Some(1),
        4 | 5 => Some(2),
        6..=8 => Some(4),
        _ => None,
    }
}

fn element(transport_size: u8, b: &[u8]) -> f64 {
    match transport_size {
        4 => u16::from_be_bytes([b[0], b[1]]) as f64,
        5 => i16::from_be_bytes([b[0], b[1]]) as f64,
        6 => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
        7 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
        8 => f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
        _ => b[0] as f64,
    }
}

/// The values of a write job's or a read answer's data items (`ok`: the return code a
/// good item has: 0x00 in a job, 0xFF in an answer), by the items the job named; each
/// element at its byte address in its area.
fn points(items: &[S7Item], body: &[u8], ok: u8) -> Vec<Points> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    for (i, item) in items.iter().enumerate() {
        if pos + 4 > body.len() {
            break;
        }
        let (rc, ts, length) = (body[pos], body[pos + 1], be16(body, pos + 2) as usize);
        let size = if matches!(ts, 3..=5) {
            length.div_ceil(8)
        } else {
            length
        };
        let data = body.get(pos + 4..pos + 4 + size).unwrap_or_default();
        pos += 4 + size + (size % 2 == 1 && i + 1 < items.len()) as usize;
        let Some(width) = element_size(item.transport_size) else {
            continue;
        };
        if rc != ok || data.is_empty() {
            continue;
        }
        let values: Vec<f64> = data
            .chunks_exact(width)
            .take(MAX_POINTS)
            .map(|b| element(item.transport_size, b))
            .collect();
        out.push(Points {
            table: Table::S7 {
                area: item.area,
                db: item.db,
            },
            start: item.byte,
            step: width as u32,
            values,
        });
    }
    out
}

/// An open job: (txn, rosctr, function, group, the items of a read, whose answer carries
/// their values).
type Job = (u32, u8, Option<u8>, Option<u8>, Vec<S7Item>);

/// Python's `str.isdigit` over Latin-1 text: ASCII digits and the superscripts.
fn latin_isdigit(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_digit() || matches!(c, 0xB2 | 0xB3 | 0xB9))
}

struct Truncated;

/// Decode one S7comm PDU; problems become anomalies on the PDU, never errors.
pub fn decode_s7(data: &[u8]) -> S7Pdu {
    let n = data.len();
    if n < 10 {
        return S7Pdu {
            rosctr: if n > 1 { data[1] } else { 0 },
            anomalies: vec![TRUNCATED_PDU],
            ..Default::default()
        };
    }
    let rosctr = data[1];
    let mut pdu = S7Pdu {
        rosctr,
        pdu_reference: be16(data, 4),
        ..Default::default()
    };
    let (plen, dlen) = (be16(data, 6) as usize, be16(data, 8) as usize);
    let mut hlen = 10;
    if rosctr == 2 || rosctr == 3 {
        if n < 12 {
            pdu.anomalies = vec![TRUNCATED_PDU];
            return pdu;
        }
        pdu.error_class = Some(data[10]);
        pdu.error_code = Some(data[11]);
        hlen = 12;
    } else if rosctr != 1 && rosctr != 7 {
        pdu.anomalies = vec![UNKNOWN_ROSCTR];
        return pdu;
    }
    let mut bad = false;
    if hlen + plen + dlen > n {
        bad = true;
    }
    let params = &data[hlen.min(n)..(hlen + plen).min(n)];
    let body = &data[(hlen + plen).min(n)..(hlen + plen + dlen).min(n)];
    let result = if rosctr == 7 {
        userdata(&mut pdu, params, body)
    } else if !params.is_empty() {
        pdu.function_code = Some(params[0]);
        if rosctr == 1 {
            job(&mut pdu, params)
        } else if rosctr == 3 {
            ack_data(&mut pdu, params, body);
            Ok(())
        } else {
            Ok(())
        }
    } else {
        Ok(())
    };
    if result.is_err() {
        bad = true;
    }
    if bad {
        pdu.anomalies = vec![TRUNCATED_PDU];
    }
    pdu
}

fn at(p: &[u8], i: usize) -> Result<u8, Truncated> {
    p.get(i).copied().ok_or(Truncated)
}

fn job(pdu: &mut S7Pdu, p: &[u8]) -> Result<(), Truncated> {
    let fc = p[0];
    match fc {
        0x04 | 0x05 => pdu.items = items(p)?,
        0x1A..=0x1D if p.len() > 9 => {
            let end = (9 + p[8] as usize).min(p.len());
            block(pdu, &p[9..end])?;
        }
        0x28 if p.len() >= 10 => {
            let blen = be16(p, 8) as usize;
            let block_arg = &p[10.min(p.len())..(10 + blen).min(p.len())];
            let pos = 10 + blen;
            if pos < p.len() {
                let len = p[pos] as usize;
                pdu.pi_service = Some(latin1(
                    &p[(pos + 1).min(p.len())..(pos + 1 + len).min(p.len())],
                ));
            }
            // a block named in the arguments: "0A00001P"
            let t = block_arg;
            if t.len() > 7 {
                for start in 0..t.len() - 7 {
                    let ty = &t[start..start + 2];
                    let known = matches!(ty, b"08" | b"0A" | b"0B" | b"0C" | b"0D" | b"0E" | b"0F");
                    if known && latin_isdigit(&t[start + 2..start + 7]) {
                        let mut name = vec![b'_'];
                        name.extend_from_slice(&t[start..start + 8]);
                        block(pdu, &name)?;
                        break;
                    }
                }
            }
        }
        0x29 if p.len() > 6 => {
            let len = p[6] as usize;
            pdu.pi_service = Some(latin1(&p[7.min(p.len())..(7 + len).min(p.len())]));
        }
        _ => {}
    }
    Ok(())
}

fn items(p: &[u8]) -> Result<Vec<S7Item>, Truncated> {
    let mut out = Vec::new();
    let mut pos = 2;
    for _ in 0..at(p, 1)? {
        if pos + 2 > p.len() {
            return Err(Truncated);
        }
        let spec_len = p[pos + 1] as usize;
        if p[pos] == 0x12 && spec_len >= 10 && at(p, pos + 2)? == 0x10 {
            let s = pos + 3;
            if s + 9 > p.len() {
                return Err(Truncated);
            }
            let address = ((p[s + 6] as u32) << 16) | ((p[s + 7] as u32) << 8) | p[s + 8] as u32;
            out.push(S7Item {
                transport_size: p[s],
                length: be16(p, s + 1),
                db: be16(p, s + 3),
                area: p[s + 5],
                byte: address >> 3,
                bit: (address & 7) as u8,
            });
        }
        pos += 2 + spec_len;
    }
    Ok(out)
}

fn block_name(code: &[u8]) -> String {
    match code {
        b"08" => "OB".into(),
        b"0A" => "DB".into(),
        b"0B" => "SDB".into(),
        b"0C" => "FC".into(),
        b"0D" => "SFC".into(),
        b"0E" => "FB".into(),
        b"0F" => "SFB".into(),
        other => latin1(other),
    }
}

/// A block file name: '_' + type (2 hex characters) + number (5 digits) + file system.
fn block(pdu: &mut S7Pdu, name: &[u8]) -> Result<(), Truncated> {
    if name.len() >= 8 && name[0] == b'_' {
        pdu.block_type = Some(block_name(&name[1..3]));
        let digits = &name[3..8];
        if latin_isdigit(digits) {
            if !digits.iter().all(|c| c.is_ascii_digit()) {
                return Err(Truncated); // Python's int() refuses superscript digits
            }
            pdu.block_number = Some(std::str::from_utf8(digits).unwrap().parse().unwrap());
        }
    }
    Ok(())
}

fn ack_data(pdu: &mut S7Pdu, p: &[u8], body: &[u8]) {
    let fc = p[0];
    if fc == 0x04 {
        pdu.return_codes = read_results(body, if p.len() > 1 { p[1] } else { 0 });
    } else if fc == 0x05 && p.len() > 1 {
        pdu.return_codes = body[..(p[1] as usize).min(body.len())].to_vec();
    }
}

fn read_results(body: &[u8], count: u8) -> Vec<u8> {
    let mut codes = Vec::new();
    let mut pos = 0usize;
    for i in 0..count {
        if pos + 4 > body.len() {
            if pos < body.len() {
                codes.push(body[pos]);
            }
            break;
        }
        let (rc, ts, length) = (body[pos], body[pos + 1], be16(body, pos + 2) as usize);
        codes.push(rc);
        let size = if matches!(ts, 3..=5) {
            length.div_ceil(8)
        } else {
            length
        };
        pos += 4 + size;
        if size % 2 == 1 && i < count - 1 {
            pos += 1;
        }
    }
    codes
}

fn userdata(pdu: &mut S7Pdu, p: &[u8], body: &[u8]) -> Result<(), Truncated> {
    if p.len() < 8 {
        return Err(Truncated);
    }
    let tg = p[5];
    pdu.userdata_type = Some(tg >> 4);
    pdu.group = Some(tg & 0x0F);
    pdu.subfunction = Some(p[6]);
    if p.len() >= 12 {
        let code = be16(p, 10);
        if code != 0 {
            pdu.error_class = Some((code >> 8) as u8);
            pdu.error_code = Some((code & 0xFF) as u8);
        }
    }
    if body.len() < 4 {
        return Ok(());
    }
    let rc = body[0];
    pdu.return_codes = vec![rc];
    if pdu.group == Some(4) && pdu.subfunction == Some(1) && body.len() >= 8 {
        let id = be16(body, 4);
        pdu.szl_id = Some(id);
        pdu.szl_index = Some(be16(body, 6));
        if pdu.userdata_type == Some(8) && rc == 0xFF {
            let found = szl_identity(id, &body[4..]);
            pdu.identity = if found.is_empty() { None } else { Some(found) };
        }
    }
    Ok(())
}

/// Python's `str.isspace` over Latin-1 characters.
fn latin_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c'..='\x1f' | '\u{85}' | '\u{a0}'
    )
}

fn set(out: &mut Vec<(&'static str, String)>, k: &'static str, v: String) {
    match out.iter_mut().find(|(n, _)| *n == k) {
        Some(slot) => slot.1 = v,
        None => out.push((k, v)),
    }
}

/// Device identity from SZL 0x0011 (module identification) and 0x001C (components).
pub fn szl_identity(szl_id: u16, data: &[u8]) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    if data.len() < 8 {
        return out;
    }
    let mut rec_len = be16(data, 4) as usize;
    let mut count = be16(data, 6) as usize;
    let base = szl_id & 0xFF;
    if rec_len == 0 && base == 0x1C {
        rec_len = 34; // some stacks leave the list header empty
        count = (data.len() - 8) / rec_len;
    }
    let mut pos = 8;
    for position in 0..count.min(64) {
        let end = (pos + rec_len).min(data.len());
        let rec = &data[pos.min(end)..end];
        if rec.len() < rec_len || rec_len < 4 {
            break;
        }
        pos += rec_len;
        let mut index = be16(rec, 0) as usize;
        if index == 0 {
            index = position + 1;
        }
        if base == 0x11 && rec_len >= 22 {
            let order = latin1(&rec[2..22]);
            let order = order.trim_matches(|c| c == ' ' || c == '\0').to_string();
            let (ausbg, ausbe) = if rec_len >= 28 {
                (be16(rec, 24), be16(rec, 26))
            } else {
                (0, 0)
            };
            let has_order = out.iter().any(|(k, _)| *k == "order_number");
            let first = index == 1 || (index == 6 && !has_order);
            if !order.is_empty() && first {
                set(&mut out, "order_number", order);
            } else if index == 7 && ausbg >> 8 == b'V' as u16 {
                set(
                    &mut out,
                    "firmware_version",
                    format!("V{}.{}.{}", ausbg & 0xFF, ausbe >> 8, ausbe & 0xFF),
                );
            }
        } else if base == 0x1C {
            let raw = &rec[2..];
            let raw = match raw.iter().position(|&b| b == 0) {
                Some(i) => &raw[..i],
                None => raw,
            };
            let text = latin1(raw);
            let text = text.trim_matches(latin_space).to_string();
            let field = match index {
                1 => Some("plant_name"),
                2 => Some("module_name"),
                3 => Some("plant_designation"),
                4 => Some("copyright"),
                5 => Some("serial_number"),
                7 => Some("module_type"),
                8 => Some("memory_card_serial"),
                11 => Some("location"),
                _ => None,
            };
            if let (Some(f), false) = (field, text.is_empty()) {
                set(&mut out, f, text);
            }
        }
    }
    out
}

/// The header of an S7comm-plus PDU: version, integrity digest, opcode and function.
pub fn decode_plus(data: &[u8]) -> S7PlusPdu {
    let version = if data.len() > 1 { data[1] } else { 0 };
    let mut pdu = S7PlusPdu {
        version,
        ..Default::default()
    };
    if data.len() < 4 {
        pdu.anomalies = vec![TRUNCATED_PDU];
        return pdu;
    }
    let mut pos = 4;
    if version == 3 && data.len() > pos && data[pos] == 0x20 {
        pdu.integrity = true; // a 32-byte integrity digest
        pos += 33;
    }
    if version == 0xFE || version == 0xFF || data.len() < pos + 5 {
        return pdu; // keep-alive frames carry no opcode
    }
    let op = data[pos];
    pdu.opcode = Some(op);
    if matches!(op, 0x31 | 0x32 | 0x02) {
        pdu.function_code = Some(be16(data, pos + 3));
        if data.len() >= pos + 9 {
            pdu.sequence = Some(be16(data, pos + 7));
        }
    }
    pdu
}

// -- the `otsec.s7comm` object of the PDU event document ------------------------------

fn tsap_value(out: &mut Vec<u8>, v: &Option<Vec<u8>>) {
    match v {
        Some(b) => big_uint(out, b),
        None => out.extend_from_slice(b"null"),
    }
}

fn json(out: &mut Vec<u8>, p: &S7Pdu) {
    out.push(b'{');
    field_u(out, "rosctr", p.rosctr as u64);
    field_u(out, "pdu_reference", p.pdu_reference as u64);
    field_some_u(out, "function_code", p.function_code.map(u64::from));
    if let Some(g) = p.group {
        key(out, "userdata");
        out.push(b'{');
        field_opt_u(out, "type", p.userdata_type.map(u64::from));
        field_u(out, "group", g as u64);
        field_opt_u(out, "subfunction", p.subfunction.map(u64::from));
        if let Some(id) = p.szl_id {
            field_u(out, "szl_id", id as u64);
            field_opt_u(out, "szl_index", p.szl_index.map(u64::from));
        }
        out.push(b'}');
    }
    if let Some(s) = &p.pi_service {
        field_s(out, "pi_service", s);
    }
    if let Some(t) = &p.block_type {
        key(out, "block");
        out.push(b'{');
        field_s(out, "type", t);
        field_opt_u(out, "number", p.block_number.map(u64::from));
        out.push(b'}');
    }
    if let Some(c) = p.error_class {
        field_u(out, "error_class", c as u64);
        field_opt_u(out, "error_code", p.error_code.map(u64::from));
    }
    if !p.items.is_empty() {
        list(out, "items", p.items.iter().take(64), |out, it| {
            out.push(b'{');
            field_u(out, "area", it.area as u64);
            field_u(out, "db", it.db as u64);
            field_u(out, "byte", it.byte as u64);
            field_u(out, "bit", it.bit as u64);
            field_u(out, "length", it.length as u64);
            field_u(out, "transport_size", it.transport_size as u64);
            out.push(b'}');
        });
    }
    if !p.return_codes.is_empty() {
        list(
            out,
            "return_codes",
            p.return_codes.iter().take(64),
            |out, rc| uint(out, *rc as u64),
        );
    }
    if let Some(ident) = &p.identity {
        key(out, "identity");
        out.push(b'{');
        for (k, v) in ident {
            field_s(out, k, v);
        }
        out.push(b'}');
    }
    if let Some((src, Some(dst))) = &p.tsaps {
        key(out, "tsap");
        out.push(b'{');
        key(out, "source");
        tsap_value(out, src);
        key(out, "destination");
        big_uint(out, dst);
        out.push(b'}');
    }
    if !p.anomalies.is_empty() {
        str_list(out, "anomalies", &p.anomalies);
    }
    out.push(b'}');
}

/// Names of S7comm-plus functions, for the event's `function_name`.
pub fn plus_function_name(fc: u16) -> &'static str {
    match fc {
        0x04B1 => "Error",
        0x04BB => "Explore",
        0x04CA => "CreateObject",
        0x04D4 => "DeleteObject",
        0x04F2 => "SetVariable",
        0x04FC => "GetVariable",
        0x0506 => "AddLink",
        0x051A => "RemoveLink",
        0x0524 => "GetLink",
        0x0542 => "SetMultiVariables",
        0x054C => "GetMultiVariables",
        0x0556 => "BeginSequence",
        0x0560 => "EndSequence",
        0x056B => "Invoke",
        0x057C => "SetVarSubStreamed",
        0x0586 => "GetVarSubStreamed",
        0x0590 => "GetVariablesAddress",
        0x059A => "Abort",
        0x05A9 => "Error2",
        0x05B3 => "InitSsl",
        _ => "unknown",
    }
}

fn plus_json(out: &mut Vec<u8>, p: &S7PlusPdu) {
    out.push(b'{');
    field_u(out, "version", p.version as u64);
    field_b(out, "integrity", p.integrity);
    field_some_u(out, "opcode", p.opcode.map(u64::from));
    if let Some(v) = p.function_code {
        field_u(out, "function_code", v as u64);
        field_s(out, "function_name", plus_function_name(v));
    }
    field_some_u(out, "sequence", p.sequence.map(u64::from));
    if !p.anomalies.is_empty() {
        str_list(out, "anomalies", &p.anomalies);
    }
    out.push(b'}');
}

// -- what a PDU does (see meaning.rs) --------------------------------------------

const PLUS_WRITES: [u16; 5] = [0x04CA, 0x04D4, 0x04F2, 0x0542, 0x056B];

/// Download, upload, PI services, PLC stop.
fn programming(fc: u8) -> bool {
    matches!(fc, 0x1A..=0x1F | 0x28 | 0x29)
}

fn describe(p: &S7Pdu) -> Option<Use> {
    if let (7, Some(group)) = (p.rosctr, p.group) {
        let code = USERDATA_BASE + group as u32 * 0x100 + p.subfunction.unwrap_or(0) as u32;
        let command = p.userdata_type == Some(4) && matches!(group, 1 | 5 | 7);
        return Some(Use {
            code,
            command,
            ..Default::default()
        });
    }
    let fc = p.function_code?;
    let job = p.rosctr == 1;
    let mut ranges = Vec::new();
    if job {
        for it in p.items.iter().take(32) {
            let table = Table::S7 {
                area: it.area,
                db: if it.area == 0x84 { it.db } else { 0 },
            };
            ranges.push((table, it.byte as i64, (it.length as i64).max(1)));
        }
    }
    Some(Use {
        code: fc as u32,
        writes: job && fc == 0x05,
        command: job && (fc == 0x05 || programming(fc)),
        ranges,
        ..Default::default()
    })
}

fn plus_describe(p: &S7PlusPdu, request: bool) -> Option<Use> {
    let fc = p.function_code?;
    let writes = request && PLUS_WRITES.contains(&fc);
    Some(Use {
        code: fc as u32,
        writes,
        command: writes,
        ..Default::default()
    })
}

fn evidence(p: &S7Pdu, from_client: bool, req: Option<&Req>) -> Evidence {
    if p.from_request() {
        if !from_client {
            return Evidence::default(); // the PLC's own download-block jobs
        }
        if p.rosctr == 1 {
            let fc = p.function_code;
            if fc.is_some_and(programming) {
                return Evidence::default();
            }
            let b = if fc == Some(0x05) {
                "s7comm-write"
            } else {
                "s7comm-read"
            };
            return Evidence {
                client: Some(b),
                server: None,
            };
        }
        return Evidence {
            client: Some("s7comm-read"),
            server: None,
        };
    }
    if from_client {
        return Evidence::default(); // the station answering the PLC's download-block jobs
    }
    let programmed = req.filter(|r| r.accepted).is_some_and(|r| {
        r.function_code
            .is_some_and(|fc| fc <= 0xFF && programming(fc as u8))
            || (r.rosctr == 7 && r.group.is_some_and(|g| matches!(g, 1 | 3 | 5)))
    });
    Evidence {
        client: programmed.then_some("s7comm-programming"),
        server: Some("s7comm-server"),
    }
}

fn plus_evidence(p: &S7PlusPdu, request: bool) -> Evidence {
    if !request {
        return Evidence {
            client: None,
            server: Some("s7comm_plus-server"),
        };
    }
    let write = p.function_code.is_some_and(|fc| PLUS_WRITES.contains(&fc));
    Evidence {
        client: Some(if write {
            "s7comm_plus-write"
        } else {
            "s7comm_plus-read"
        }),
        server: None,
    }
}

// -- the record as the rest of the core reads it: meaning, output, rule fields ---------

impl super::Record for S7Pdu {
    fn anomalies(&self) -> &[&'static str] {
        &self.anomalies
    }
    fn is_request(&self, _from_client: bool) -> bool {
        self.from_request()
    }
    fn code(&self) -> Option<u32> {
        match (self.rosctr, self.group) {
            (7, Some(group)) => {
                Some(USERDATA_BASE + group as u32 * 0x100 + self.subfunction.unwrap_or(0) as u32)
            }
            _ => self.function_code.map(u32::from),
        }
    }
    fn describe(&self, _from_client: bool) -> Option<Use> {
        describe(self)
    }
    fn evidence(&self, from_client: bool, req: Option<&Req>) -> Evidence {
        evidence(self, from_client, req)
    }
    fn roles_follow_connection(&self) -> bool {
        true
    }
    fn identifies(&self) -> bool {
        self.identity.is_some()
    }
    fn refusal(&self) -> Option<String> {
        let (class, code) = (self.error_class.unwrap_or(0), self.error_code.unwrap_or(0));
        if class != 0 || code != 0 {
            return Some(format!("s7:{class}:{code}"));
        }
        self.return_codes
            .iter()
            .find(|&&rc| rc != 0xFF)
            .map(|rc| format!("s7rc:{rc}"))
    }
    fn json(&self, out: &mut Vec<u8>, _req: Option<&Req>) {
        json(out, self)
    }
    fn field(&self, name: u8) -> Val {
        match name {
            f::ROSCTR => Val::Int(self.rosctr.into()),
            f::PDU_REFERENCE => Val::Int(self.pdu_reference.into()),
            f::FUNCTION_CODE => int(self.function_code),
            f::ERROR_CLASS => int(self.error_class),
            f::ERROR_CODE => int(self.error_code),
            f::GROUP => int(self.group),
            f::SUBFUNCTION => int(self.subfunction),
            f::USERDATA_TYPE => int(self.userdata_type),
            f::SZL_ID => int(self.szl_id),
            f::SZL_INDEX => int(self.szl_index),
            f::PI_SERVICE => self.pi_service.clone().map_or(Val::None, Val::Str),
            f::BLOCK_TYPE => self.block_type.clone().map_or(Val::None, Val::Str),
            f::BLOCK_NUMBER => int(self.block_number),
            f::ITEMS_AREA => {
                Val::List(self.items.iter().map(|i| Val::Int(i.area.into())).collect())
            }
            f::ITEMS_DB => Val::List(self.items.iter().map(|i| Val::Int(i.db.into())).collect()),
            _ => Val::None,
        }
    }
    #[cfg(feature = "python")]
    fn py_fields(&self, d: &pyo3::Bound<'_, pyo3::types::PyDict>) -> pyo3::PyResult<()> {
        use crate::python::opt;
        use pyo3::prelude::*;
        use pyo3::types::{PyBytes, PyDict, PyTuple};
        let py = d.py();
        d.set_item("rosctr", self.rosctr)?;
        d.set_item("pdu_reference", self.pdu_reference)?;
        opt(d, "function_code", self.function_code)?;
        opt(d, "error_class", self.error_class)?;
        opt(d, "error_code", self.error_code)?;
        opt(d, "group", self.group)?;
        opt(d, "subfunction", self.subfunction)?;
        opt(d, "userdata_type", self.userdata_type)?;
        opt(d, "szl_id", self.szl_id)?;
        opt(d, "szl_index", self.szl_index)?;
        opt(d, "pi_service", self.pi_service.clone())?;
        opt(d, "block_type", self.block_type.clone())?;
        opt(d, "block_number", self.block_number)?;
        if !self.items.is_empty() {
            let items: Vec<(u8, u16, u32, u8, u16, u8)> = self
                .items
                .iter()
                .map(|i| (i.area, i.db, i.byte, i.bit, i.length, i.transport_size))
                .collect();
            d.set_item("items", items)?;
        }
        if !self.return_codes.is_empty() {
            d.set_item("return_codes", PyTuple::new(py, &self.return_codes)?)?;
        }
        if let Some(ident) = &self.identity {
            let id = PyDict::new(py);
            for (k, v) in ident {
                id.set_item(*k, v)?;
            }
            d.set_item("identity", id)?;
        }
        if let Some((src, dst)) = &self.tsaps {
            opt(d, "src_tsap", src.as_ref().map(|b| PyBytes::new(py, b)))?;
            opt(d, "dst_tsap", dst.as_ref().map(|b| PyBytes::new(py, b)))?;
        }
        Ok(())
    }
}

impl super::Record for S7PlusPdu {
    fn anomalies(&self) -> &[&'static str] {
        &self.anomalies
    }
    fn is_request(&self, from_client: bool) -> bool {
        match self.opcode {
            None => from_client,
            Some(op) => op == 0x31,
        }
    }
    fn code(&self) -> Option<u32> {
        self.function_code.map(u32::from)
    }
    fn describe(&self, from_client: bool) -> Option<Use> {
        plus_describe(self, self.is_request(from_client))
    }
    fn evidence(&self, from_client: bool, _req: Option<&Req>) -> Evidence {
        plus_evidence(self, self.is_request(from_client))
    }
    fn roles_follow_connection(&self) -> bool {
        true
    }
    fn json(&self, out: &mut Vec<u8>, _req: Option<&Req>) {
        plus_json(out, self)
    }
    fn field(&self, name: u8) -> Val {
        match name {
            f::VERSION => Val::Int(self.version.into()),
            f::OPCODE => int(self.opcode),
            f::FUNCTION_CODE => int(self.function_code),
            f::SEQUENCE => int(self.sequence),
            f::INTEGRITY => Val::Int(self.integrity as i64),
            _ => Val::None,
        }
    }
    #[cfg(feature = "python")]
    fn py_fields(&self, d: &pyo3::Bound<'_, pyo3::types::PyDict>) -> pyo3::PyResult<()> {
        use crate::python::opt;
        use pyo3::prelude::*;
        d.set_item("version", self.version)?;
        opt(d, "opcode", self.opcode)?;
        opt(d, "function_code", self.function_code)?;
        opt(d, "sequence", self.sequence)?;
        d.set_item("integrity", self.integrity)?;
        Ok(())
    }
}
