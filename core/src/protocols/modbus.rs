//! Modbus/TCP (sans-IO): reassembled stream bytes in, PDUs and anomalies out.
//!
//! PDUs are framed by their MBAP header across and within segments; every public
//! function code's fields are decoded; responses are paired with requests by transaction
//! id; a malformation becomes an anomaly and parsing resynchronises on the next header.

use std::collections::BTreeMap;

use super::Sniff;
use crate::events::{Body, Event, Points, Proto, Req, MAX_POINTS};
use crate::json::latin1;
use crate::json::*;
use crate::meaning::{Evidence, Table, Use};
use crate::pending::Pending;
use crate::rules::{f, int, Val};

/// One Modbus/TCP application PDU (MBAP header, function code, data).
#[derive(Clone, Debug, Default)]
pub struct ModbusPdu {
    pub transaction_id: u16,
    pub unit_id: u8,
    /// the raw byte: exception responses carry code | 0x80
    pub function_code: u8,
    pub length: u16,
    pub exception_code: Option<u8>,
    pub subfunction: Option<u16>,
    pub mei_type: Option<u8>,
    pub address: Option<u16>,
    pub quantity: Option<u16>,
    pub value: Option<u16>,
    pub write_address: Option<u16>,
    pub write_quantity: Option<u16>,
    pub umas_function: Option<u8>,
    pub device_id: Option<BTreeMap<u8, String>>,
    pub server_id: Option<String>,
    pub run_indicator: Option<bool>,
    pub anomalies: Vec<&'static str>,
}

pub const PORT: u16 = 502;

pub const DISSECTOR: super::Dissector = super::Dissector {
    proto: Proto::Modbus,
    tcp_port: PORT,
    udp_port: Some(PORT),
    looks_like,
    parser: || Box::<Parser>::default(),
};

pub const MAX_LENGTH: usize = 254;
/// longer frames (some UMAS stacks) are parsed but flagged
pub const OVERSIZE_LENGTH: usize = 2048;
pub const MAX_PENDING: usize = 512;
/// bytes kept while looking for a header
pub const MAX_BUFFER: usize = 4096;
pub const UMAS: u8 = 90;

pub const INVALID_PROTOCOL_ID: &str = "invalid_protocol_id";
pub const INVALID_LENGTH: &str = "invalid_length";
pub const LENGTH_MISMATCH: &str = "length_mismatch";
pub const INVALID_FUNCTION_CODE: &str = "invalid_function_code";
pub const UNSOLICITED_RESPONSE: &str = "unsolicited_response";
pub const FUNCTION_MISMATCH: &str = "function_mismatch";
pub const FLOODED: &str = "flooded";
pub const RESYNCHRONISED: &str = "resynchronised";

pub fn is_public(fc: u8) -> bool {
    matches!(fc, 1..=8 | 11 | 12 | 15 | 16 | 17 | 20..=24 | 43)
}

fn probe_function(fc: u8) -> bool {
    is_public(fc) || matches!(fc, UMAS | 40 | 41 | 42 | 125 | 126)
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Do a stream's first bytes start with Modbus/TCP PDUs? Judged on the MBAP header (8
/// bytes; `More` before that while the bytes so far fit one). `strict` (used off port 502)
/// also wants known function codes and whole PDUs, ending where the bytes end (`More`
/// while the last one is incomplete).
pub fn looks_like(payload: &[u8], strict: bool) -> Sniff {
    let n = payload.len();
    let mut pos = 0;
    while pos < n {
        let avail = n - pos;
        let pid_ok = match avail {
            0..=2 => true,
            3 => payload[pos + 2] == 0,
            _ => be16(payload, pos + 2) == 0,
        };
        if !pid_ok {
            return Sniff::No;
        }
        if avail >= 6 && !(2..=MAX_LENGTH).contains(&(be16(payload, pos + 4) as usize)) {
            return Sniff::No;
        }
        if avail < 8 {
            return Sniff::More;
        }
        if strict && !probe_function(payload[pos + 7] & 0x7F) {
            return Sniff::No;
        }
        if !strict {
            return Sniff::Yes;
        }
        pos += 6 + be16(payload, pos + 4) as usize;
    }
    if pos == n && n > 0 {
        Sniff::Yes
    } else {
        Sniff::More
    }
}

/// What a response needs of its request.
struct Open {
    txn: u32,
    function_code: u8,
    subfunction: Option<u16>,
    address: Option<u16>,
    quantity: Option<u16>,
}

/// Per-connection state: one buffer per direction and the open transactions.
pub struct Parser {
    buf: [Vec<u8>; 2],
    resync: [bool; 2],
    pending: Pending<u16, Open>,
    txns: u32,
    pub skipped_bytes: u64,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            buf: [Vec::new(), Vec::new()],
            resync: [false, false],
            pending: Pending::new(MAX_PENDING),
            txns: 0,
            skipped_bytes: 0,
        }
    }
}

fn anomaly(from_client: bool, kind: &'static str, detail: String) -> Event {
    Event::anomaly(from_client, Proto::Modbus, kind, detail)
}

impl super::Dissect for Parser {
    fn held(&self) -> super::Held {
        (
            self.buf[0].len().max(self.buf[1].len()),
            self.pending.len(),
            0,
        )
    }

    /// Parse what the stream delivered; `gap` says bytes before `data` were lost.
    fn feed(&mut self, data: &[u8], from_client: bool, gap: bool, out: &mut Vec<Event>) {
        let side = if from_client { 0 } else { 1 };
        if gap {
            self.buf[side].clear();
            self.resync[side] = true;
        }
        if self.buf[side].is_empty() && !self.resync[side] {
            // fast path: exactly one well-formed PDU, parsed in place
            let n = data.len();
            if n >= 8 {
                let length = be16(data, 4) as usize;
                if be16(data, 2) == 0 && n == 6 + length && (2..=MAX_LENGTH).contains(&length) {
                    self.one(data, 0, n, from_client, out);
                    return;
                }
            }
        }
        self.buf[side].extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf[side]);
        let pos = self.parse(&buf, side, from_client, out);
        let mut buf = buf;
        buf.drain(..pos);
        self.buf[side] = buf;
    }

    /// Modbus over UDP: every datagram stands alone.
    fn feed_datagram(&mut self, data: &[u8], from_client: bool, out: &mut Vec<Event>) {
        let side = if from_client { 0 } else { 1 };
        self.resync[side] = false;
        self.buf[side].clear();
        self.parse(data, side, from_client, out);
    }
}

impl Parser {
    fn one(&mut self, buf: &[u8], pos: usize, end: usize, from_client: bool, out: &mut Vec<Event>) {
        let tid = be16(buf, pos);
        let length = be16(buf, pos + 4);
        let mut pdu = decode(buf, pos + 7, end, tid, buf[pos + 6], length, from_client);
        if length as usize > MAX_LENGTH {
            pdu.anomalies.push(INVALID_LENGTH);
        }
        let data = &buf[pos + 8..end];
        if from_client {
            let points = written(&pdu, data);
            self.txns = self.txns.wrapping_add(1).max(1);
            let open = Open {
                txn: self.txns,
                function_code: pdu.function_code,
                subfunction: pdu.subfunction,
                address: pdu.address,
                quantity: pdu.quantity,
            };
            let mut ev = Event::new(from_client, Body::Modbus(pdu));
            ev.txn = self.txns;
            ev.points.extend(points);
            out.push(ev);
            if self.pending.open(tid, open) {
                let detail = format!("over {MAX_PENDING} requests without responses");
                out.push(anomaly(true, FLOODED, detail));
            }
            return;
        }
        match self.pending.close(&tid) {
            None => {
                out.push(Event::new(from_client, Body::Modbus(pdu)));
                let detail = format!("response to transaction {tid} without a request");
                out.push(anomaly(false, UNSOLICITED_RESPONSE, detail));
            }
            Some(req) => {
                if req.function_code & 0x7F != pdu.function_code & 0x7F {
                    pdu.anomalies.push(FUNCTION_MISMATCH);
                }
                let info = Req {
                    txn: req.txn,
                    rosctr: 0,
                    function_code: Some(req.function_code as u16),
                    subfunction: req.subfunction,
                    group: None,
                    address: req.address,
                    quantity: req.quantity,
                    accepted: pdu.exception_code.is_none(),
                };
                let points = if info.accepted && req.function_code == pdu.function_code {
                    read(req.function_code, req.address, req.quantity, data)
                } else {
                    None
                };
                let mut ev = Event::new(from_client, Body::Modbus(pdu));
                ev.req = Some(info);
                ev.points.extend(points);
                out.push(ev);
            }
        }
    }

    /// Frame PDUs out of `buf`; returns how many bytes were consumed.
    fn parse(&mut self, buf: &[u8], side: usize, from_client: bool, out: &mut Vec<Event>) -> usize {
        let n = buf.len();
        let mut pos = 0;
        while n - pos >= 8 {
            if self.resync[side] {
                match find_header(buf, pos) {
                    None => {
                        let keep = if n - pos > MAX_BUFFER {
                            pos.max(n - MAX_BUFFER)
                        } else {
                            pos
                        };
                        if keep > pos {
                            self.skip(out, from_client, keep - pos);
                        }
                        pos = keep;
                        break;
                    }
                    Some(found) => {
                        if found > pos {
                            self.skip(out, from_client, found - pos);
                        }
                        pos = found;
                        self.resync[side] = false;
                    }
                }
            }
            let tid = be16(buf, pos);
            let pid = be16(buf, pos + 2);
            let length = be16(buf, pos + 4) as usize;
            if pid != 0 || !(2..=OVERSIZE_LENGTH).contains(&length) {
                let kind = if pid != 0 {
                    INVALID_PROTOCOL_ID
                } else {
                    INVALID_LENGTH
                };
                out.push(anomaly(
                    from_client,
                    kind,
                    format!("transaction {tid}: protocol id {pid}, length {length}"),
                ));
                self.resync[side] = true;
                pos += 1;
                continue;
            }
            let end = pos + 6 + length;
            if end > n {
                break;
            }
            self.one(buf, pos, end, from_client, out);
            pos = end;
        }
        pos
    }

    fn skip(&mut self, out: &mut Vec<Event>, from_client: bool, count: usize) {
        self.skipped_bytes += count as u64;
        out.push(anomaly(
            from_client,
            RESYNCHRONISED,
            format!("skipped {count} bytes to the next Modbus header"),
        ));
    }
}

/// Offset of the next plausible MBAP header at or after `pos`: protocol id 0, a valid
/// length and function code, ending exactly at the end of the buffer or followed by
/// another candidate (one that runs past the buffer is accepted only at `pos` itself).
fn find_header(buf: &[u8], pos: usize) -> Option<usize> {
    let n = buf.len();
    let find = |from: usize| -> Option<usize> {
        if from >= n {
            return None;
        }
        buf[from..]
            .windows(2)
            .position(|w| w == [0, 0])
            .map(|i| i + from)
    };
    let mut at = find(pos + 2);
    while let Some(f) = at {
        let i = f - 2;
        if i + 8 > n {
            break;
        }
        let length = be16(buf, i + 4) as usize;
        if (2..=MAX_LENGTH).contains(&length) && buf[i + 7] & 0x7F != 0 {
            let end = i + 6 + length;
            if end == n || (end > n && i == pos) {
                return Some(i);
            }
            if end + 8 <= n && buf[end + 2] == 0 && buf[end + 3] == 0 {
                let nxt = be16(buf, end + 4) as usize;
                if (2..=MAX_LENGTH).contains(&nxt) {
                    return Some(i);
                }
            }
        }
        at = find(i + 3);
    }
    None
}

fn decode(
    buf: &[u8],
    start: usize,
    end: usize,
    tid: u16,
    unit: u8,
    length: u16,
    request: bool,
) -> ModbusPdu {
    let fc = buf[start];
    let d = start + 1;
    let size = end - d;
    let mut pdu = ModbusPdu {
        transaction_id: tid,
        unit_id: unit,
        function_code: fc,
        length,
        ..Default::default()
    };
    let code = fc & 0x7F;
    if code == 0 || (request && fc & 0x80 != 0) {
        pdu.anomalies.push(INVALID_FUNCTION_CODE);
    }
    let ok = if !request && fc & 0x80 != 0 {
        if size >= 1 {
            pdu.exception_code = Some(buf[d]);
        }
        size == 1
    } else if request {
        request_fields(&mut pdu, buf, d, size, fc)
    } else {
        response_fields(&mut pdu, buf, d, size, fc)
    };
    if !ok {
        pdu.anomalies.push(LENGTH_MISMATCH);
    }
    pdu
}

/// Fill request fields; false when the body does not fit the function's layout.
fn request_fields(pdu: &mut ModbusPdu, buf: &[u8], d: usize, size: usize, fc: u8) -> bool {
    match fc {
        1..=4 => {
            if size < 4 {
                return false;
            }
            pdu.address = Some(be16(buf, d));
            pdu.quantity = Some(be16(buf, d + 2));
            size == 4
        }
        5 | 6 => {
            if size < 4 {
                return false;
            }
            pdu.address = Some(be16(buf, d));
            pdu.value = Some(be16(buf, d + 2));
            pdu.quantity = Some(1);
            size == 4
        }
        15 | 16 => {
            if size < 5 {
                return false;
            }
            pdu.address = Some(be16(buf, d));
            pdu.quantity = Some(be16(buf, d + 2));
            size == 5 + buf[d + 4] as usize
        }
        8 => diagnostics(pdu, buf, d, size),
        43 => {
            if size < 1 {
                return false;
            }
            pdu.mei_type = Some(buf[d]);
            buf[d] != 14 || size == 3
        }
        23 => {
            if size < 9 {
                return false;
            }
            pdu.address = Some(be16(buf, d));
            pdu.quantity = Some(be16(buf, d + 2));
            pdu.write_address = Some(be16(buf, d + 4));
            pdu.write_quantity = Some(be16(buf, d + 6));
            size == 9 + buf[d + 8] as usize
        }
        22 => {
            if size < 2 {
                return false;
            }
            pdu.address = Some(be16(buf, d));
            pdu.quantity = Some(1);
            size == 6
        }
        24 => {
            if size < 2 {
                return false;
            }
            pdu.address = Some(be16(buf, d));
            size == 2
        }
        20 | 21 => {
            if size < 1 {
                return false;
            }
            if size >= 8 {
                // the first sub-request: reference type, file, record, length
                pdu.address = Some(be16(buf, d + 4));
                pdu.quantity = Some(be16(buf, d + 6));
            }
            size == 1 + buf[d] as usize
        }
        UMAS => {
            if size >= 2 {
                pdu.umas_function = Some(buf[d + 1]);
            }
            size >= 2
        }
        7 | 11 | 12 | 17 => size == 0,
        _ => true,
    }
}

/// Fill response fields; false when the body does not fit the function's layout.
fn response_fields(pdu: &mut ModbusPdu, buf: &[u8], d: usize, size: usize, fc: u8) -> bool {
    match fc {
        1..=4 | 23 | 12 => size >= 1 && size == 1 + buf[d] as usize,
        5 | 6 | 15 | 16 => {
            if size < 4 {
                return false;
            }
            pdu.address = Some(be16(buf, d));
            let second = be16(buf, d + 2);
            if fc == 5 || fc == 6 {
                pdu.value = Some(second);
                pdu.quantity = Some(1);
            } else {
                pdu.quantity = Some(second);
            }
            size == 4
        }
        8 => diagnostics(pdu, buf, d, size),
        43 => {
            if size < 1 {
                return false;
            }
            pdu.mei_type = Some(buf[d]);
            if buf[d] == 14 {
                return device_id(pdu, buf, d, d + size);
            }
            true
        }
        17 => {
            if size < 1 || size != 1 + buf[d] as usize {
                return false;
            }
            let count = buf[d] as usize;
            if count > 0 {
                let body = &buf[d + 1..d + 1 + count];
                pdu.server_id = Some(if count > 1 {
                    body[..count - 1]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect()
                } else {
                    String::new()
                });
                pdu.run_indicator = Some(body[count - 1] == 0xFF);
            }
            true
        }
        22 => {
            if size < 2 {
                return false;
            }
            pdu.address = Some(be16(buf, d));
            size == 6
        }
        7 => size == 1,
        11 => size == 4,
        UMAS => {
            if size >= 2 {
                pdu.umas_function = Some(buf[d + 1]);
            }
            size >= 2
        }
        _ => true,
    }
}

/// FC 8, either way: a sub-function code, then data.
fn diagnostics(pdu: &mut ModbusPdu, buf: &[u8], d: usize, size: usize) -> bool {
    if size < 2 {
        return false;
    }
    pdu.subfunction = Some(be16(buf, d));
    true
}

fn strip_nul_space(s: &str) -> &str {
    s.trim_matches(|c| c == '\0' || c == ' ')
}

/// FC 43/14 read device identification: the objects (0 vendor, 1 product, 2 revision...).
fn device_id(pdu: &mut ModbusPdu, buf: &[u8], d: usize, end: usize) -> bool {
    if end - d < 6 {
        return false;
    }
    let count = buf[d + 5];
    let mut pos = d + 6;
    let mut objects: BTreeMap<u8, String> = BTreeMap::new();
    for _ in 0..count {
        if pos + 2 > end {
            pdu.device_id = Some(objects);
            return false;
        }
        let (oid, olen) = (buf[pos], buf[pos + 1] as usize);
        if pos + 2 + olen > end {
            pdu.device_id = Some(objects);
            return false;
        }
        let text = latin1(&buf[pos + 2..pos + 2 + olen]);
        objects.insert(oid, strip_nul_space(&text).to_string());
        pos += 2 + olen;
    }
    pdu.device_id = Some(objects);
    pos == end
}

// -- the `otsec.modbus` object of the PDU event document ------------------------------

fn json(out: &mut Vec<u8>, p: &ModbusPdu, req: Option<&Req>) {
    out.push(b'{');
    field_u(out, "transaction_id", p.transaction_id as u64);
    field_u(out, "unit_id", p.unit_id as u64);
    field_u(out, "function_code", p.function_code as u64);
    field_some_u(out, "exception_code", p.exception_code.map(u64::from));
    field_some_u(out, "subfunction", p.subfunction.map(u64::from));
    field_some_u(out, "mei_type", p.mei_type.map(u64::from));
    field_some_u(out, "address", p.address.map(u64::from));
    field_some_u(out, "quantity", p.quantity.map(u64::from));
    field_some_u(out, "value", p.value.map(u64::from));
    if let Some(v) = p.write_address {
        field_u(out, "write_address", v as u64);
        field_opt_u(out, "write_quantity", p.write_quantity.map(|q| q as u64));
    }
    field_some_u(out, "umas_function", p.umas_function.map(u64::from));
    if let Some(objects) = &p.device_id {
        if !objects.is_empty() {
            key(out, "device_identification");
            out.push(b'{');
            for (k, v) in objects {
                field_s(out, &k.to_string(), v);
            }
            out.push(b'}');
        }
    }
    if let Some(id) = &p.server_id {
        field_s(out, "server_id", id);
        key(out, "run_indicator");
        out.extend_from_slice(match p.run_indicator {
            Some(true) => b"true",
            Some(false) => b"false",
            None => b"null",
        });
    }
    if !p.anomalies.is_empty() {
        str_list(out, "anomalies", &p.anomalies);
    }
    if let Some(Req {
        address: Some(addr),
        quantity,
        ..
    }) = req
    {
        key(out, "request");
        out.push(b'{');
        field_u(out, "address", *addr as u64);
        field_opt_u(out, "quantity", quantity.map(|q| q as u64));
        out.push(b'}');
    }
    out.push(b'}');
}

// -- process values ----------------------------------------------------------------

/// Big-endian registers from the start of `data`: `count` at most, and what is there.
fn registers(data: &[u8], count: u16) -> Vec<f64> {
    data.chunks_exact(2)
        .take((count as usize).min(MAX_POINTS))
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as f64)
        .collect()
}

/// Packed bits (least significant first) as 0/1: `count` at most, and what is there.
fn bits(data: &[u8], count: u16) -> Vec<f64> {
    let n = (count as usize).min(MAX_POINTS).min(data.len() * 8);
    (0..n)
        .map(|i| ((data[i / 8] >> (i % 8)) & 1) as f64)
        .collect()
}

/// The values of function `fc`, at `start` in the function's table.
fn points(fc: u8, start: Option<u16>, values: Vec<f64>) -> Option<Points> {
    match start {
        Some(start) if !values.is_empty() => Some(Points {
            table: Table::Modbus(table(fc)?),
            start: start as u32,
            step: 1,
            values,
        }),
        _ => None,
    }
}

/// The values a request writes (`data`: the PDU after its function code).
fn written(p: &ModbusPdu, data: &[u8]) -> Option<Points> {
    let body = |at: usize| data.get(at..).unwrap_or_default();
    let fc = p.function_code;
    match fc {
        5 => match p.value {
            Some(0xFF00) => points(fc, p.address, vec![1.0]),
            Some(0) => points(fc, p.address, vec![0.0]),
            _ => None, // not a coil state: the anomaly says so
        },
        6 => points(fc, p.address, p.value.map(f64::from).into_iter().collect()),
        15 => points(fc, p.address, bits(body(5), p.quantity?)),
        16 => points(fc, p.address, registers(body(5), p.quantity?)),
        23 => points(fc, p.write_address, registers(body(9), p.write_quantity?)),
        _ => None,
    }
}

/// The values a response reports, at the addresses its request asked for.
fn read(fc: u8, address: Option<u16>, quantity: Option<u16>, data: &[u8]) -> Option<Points> {
    let body = data.get(1..).unwrap_or_default();
    let q = quantity?;
    match fc {
        1 | 2 => points(fc, address, bits(body, q)),
        3 | 4 | 23 => points(fc, address, registers(body, q)),
        _ => None,
    }
}

// -- what a PDU does (see meaning.rs) --------------------------------------------

const WRITES: [u8; 7] = [5, 6, 15, 16, 21, 22, 23];
const PROGRAMMING: [u8; 5] = [40, 41, 42, 125, 126];

/// The four Modbus tables: coils, discrete inputs, input registers, holding registers.
pub const TABLES: [&str; 4] = [
    "coils",
    "discrete_inputs",
    "input_registers",
    "holding_registers",
];

fn table(fc: u8) -> Option<&'static str> {
    Some(match fc {
        1 | 5 | 15 => TABLES[0],
        2 => TABLES[1],
        4 => TABLES[2],
        3 | 6 | 16 | 22 | 23 | 24 => TABLES[3],
        _ => return None,
    })
}

fn describe(p: &ModbusPdu, from_client: bool) -> Use {
    let fc = p.function_code;
    let writes = from_client && WRITES.contains(&fc);
    let command = from_client && (writes || fc == 8 || fc == UMAS || PROGRAMMING.contains(&fc));
    let mut ranges = Vec::new();
    if let (true, Some(t), Some(addr)) = (from_client, table(fc), p.address) {
        let count = p.quantity.filter(|&q| q != 0).unwrap_or(1);
        ranges.push((Table::Modbus(t), addr as i64, count as i64));
        if let Some(wa) = p.write_address {
            let wq = p.write_quantity.filter(|&q| q != 0).unwrap_or(1);
            ranges.push((Table::Modbus(t), wa as i64, wq as i64));
        }
    }
    Use {
        code: fc as u32,
        writes,
        command,
        unit: Some(p.unit_id as u32),
        ranges,
        groups: Vec::new(),
    }
}

fn evidence(p: &ModbusPdu, from_client: bool, req: Option<&Req>) -> Evidence {
    if from_client {
        let fc = p.function_code;
        if WRITES.contains(&fc) {
            return Evidence {
                client: Some("modbus-write"),
                server: None,
            };
        }
        if PROGRAMMING.contains(&fc) || fc == UMAS {
            return Evidence::default();
        }
        return Evidence {
            client: Some("modbus-read"),
            server: None,
        };
    }
    let programming = req
        .filter(|r| r.accepted)
        .and_then(|r| r.function_code)
        .is_some_and(|fc| fc == UMAS as u16 || PROGRAMMING.iter().any(|&p| p as u16 == fc));
    Evidence {
        client: programming.then_some("modbus-programming"),
        server: Some("modbus-server"),
    }
}

// -- the record as the rest of the core reads it: meaning, output, rule fields ---------

impl super::Record for ModbusPdu {
    fn anomalies(&self) -> &[&'static str] {
        &self.anomalies
    }
    fn is_request(&self, from_client: bool) -> bool {
        from_client
    }
    fn code(&self) -> Option<u32> {
        Some(self.function_code as u32)
    }
    fn describe(&self, from_client: bool) -> Option<Use> {
        Some(describe(self, from_client))
    }
    fn evidence(&self, from_client: bool, req: Option<&Req>) -> Evidence {
        evidence(self, from_client, req)
    }
    fn identifies(&self) -> bool {
        self.device_id.is_some() || self.server_id.is_some()
    }
    fn refusal(&self) -> Option<String> {
        self.exception_code.map(|c| format!("modbus:{c}"))
    }
    fn json(&self, out: &mut Vec<u8>, req: Option<&Req>) {
        json(out, self, req)
    }
    fn field(&self, name: u8) -> Val {
        match name {
            f::TRANSACTION_ID => Val::Int(self.transaction_id.into()),
            f::UNIT_ID => Val::Int(self.unit_id.into()),
            f::FUNCTION_CODE => Val::Int(self.function_code.into()),
            f::LENGTH => Val::Int(self.length.into()),
            f::EXCEPTION_CODE => int(self.exception_code),
            f::SUBFUNCTION => int(self.subfunction),
            f::MEI_TYPE => int(self.mei_type),
            f::ADDRESS => int(self.address),
            f::QUANTITY => int(self.quantity),
            f::VALUE => int(self.value),
            f::WRITE_ADDRESS => int(self.write_address),
            f::WRITE_QUANTITY => int(self.write_quantity),
            f::UMAS_FUNCTION => int(self.umas_function),
            f::SERVER_ID => self.server_id.clone().map_or(Val::None, Val::Str),
            f::RUN_INDICATOR => int(self.run_indicator.map(i64::from)),
            _ => Val::None,
        }
    }
    #[cfg(feature = "python")]
    fn py_fields(&self, d: &pyo3::Bound<'_, pyo3::types::PyDict>) -> pyo3::PyResult<()> {
        use crate::python::opt;
        use pyo3::prelude::*;
        d.set_item("transaction_id", self.transaction_id)?;
        d.set_item("unit_id", self.unit_id)?;
        d.set_item("function_code", self.function_code)?;
        d.set_item("length", self.length)?;
        opt(d, "exception_code", self.exception_code)?;
        opt(d, "subfunction", self.subfunction)?;
        opt(d, "mei_type", self.mei_type)?;
        opt(d, "address", self.address)?;
        opt(d, "quantity", self.quantity)?;
        opt(d, "value", self.value)?;
        opt(d, "write_address", self.write_address)?;
        opt(d, "write_quantity", self.write_quantity)?;
        opt(d, "umas_function", self.umas_function)?;
        opt(d, "device_id", self.device_id.clone())?;
        opt(d, "server_id", self.server_id.clone())?;
        opt(d, "run_indicator", self.run_indicator)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::Dissect;

    #[test]
    fn a_file_record_request_one_byte_short_is_not_read_past_its_end() {
        // FC 20, byte count 0x12, a sub-request cut after the record number (found by the
        // dissectors fuzz target: the record length was read past the PDU)
        let adu = [1, 0, 0, 0, 0, 9, 1, 0x14, 0x12, 0xFF, 0xFF, 0, 0, 0, 0x33];
        let mut out = Vec::new();
        Parser::default().feed_datagram(&adu, true, &mut out);
        let Body::Modbus(p) = &out[0].body else {
            panic!("a Modbus PDU")
        };
        assert_eq!((p.function_code, p.address, p.quantity), (20, None, None));
        assert!(p.anomalies.contains(&LENGTH_MISMATCH));
    }
}
