//! The per-PDU event lines of `events.ndjson` (ECS), and parse anomalies aggregated per
//! flow and kind for `anomalies.ndjson`.
//!
//! The parts of a line that depend only on the flow and direction are rendered once per
//! flow and reused for every PDU.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::events::{Anomaly, Body, Dnp3Pdu, Event, ModbusPdu, Proto, Req, S7Pdu, S7PlusPdu};
use crate::flows::Flow;
use crate::json::*;
use crate::timefmt::IsoCache;

pub const ECS_VERSION: &str = "8.11.0";

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

fn endpoint(out: &mut Vec<u8>, flow: &Flow, side: usize) {
    out.push(b'{');
    field_s(out, "ip", &flow.ip_text(side));
    field_u(out, "port", flow.ports[side] as u64);
    if let Some(mac) = flow.macs[side] {
        field_s(out, "mac", &crate::decode::mac_text(&mac));
    }
    out.push(b'}');
}

/// The network object (without its protocol) and both endpoints, as of now.
fn context(flow: &mut Flow) -> [Vec<u8>; 3] {
    let mut net = Vec::with_capacity(128);
    net.push(b'{');
    field_s(&mut net, "transport", flow.transport());
    let cid = flow.community_id().to_string();
    field_s(&mut net, "community_id", &cid);
    if flow.vlan >= 0 {
        key(&mut net, "vlan");
        net.push(b'{');
        field_u(&mut net, "id", flow.vlan as u64);
        net.push(b'}');
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    endpoint(&mut a, flow, 0);
    endpoint(&mut b, flow, 1);
    [net, a, b]
}

/// Everything of a line after the timestamp up to the protocol object.
fn middle(
    flow: &mut Flow,
    proto: Proto,
    sender: usize,
    request: bool,
    error: Option<&str>,
) -> Vec<u8> {
    if flow.context.is_none() {
        flow.context = Some(Box::new(context(flow)));
    }
    let ctx = flow.context.as_ref().unwrap();
    let mut m = Vec::with_capacity(512);
    m.extend_from_slice(b"\",\"ecs\":{\"version\":\"");
    m.extend_from_slice(ECS_VERSION.as_bytes());
    m.extend_from_slice(
        b"\"},\"event\":{\"kind\":\"event\",\"category\":[\"network\"],\"type\":[\"protocol\"",
    );
    if error.is_some() {
        m.extend_from_slice(b",\"error\"");
    }
    m.extend_from_slice(b"],\"dataset\":\"otsec.");
    m.extend_from_slice(proto.name().as_bytes());
    m.extend_from_slice(b"\",\"module\":\"otsec\"");
    if let Some(action) = error {
        field_s(&mut m, "action", action);
    }
    m.extend_from_slice(b"},\"network\":");
    m.extend_from_slice(&ctx[0]);
    field_s(&mut m, "protocol", proto.name());
    m.extend_from_slice(b"},\"source\":");
    m.extend_from_slice(&ctx[1 + sender]);
    m.extend_from_slice(b",\"destination\":");
    m.extend_from_slice(&ctx[2 - sender]);
    m.extend_from_slice(b",\"otsec\":{\"direction\":\"");
    m.extend_from_slice(if request { b"request" } else { b"response" });
    m.extend_from_slice(b"\",\"");
    m.extend_from_slice(if error.is_some() {
        b"anomaly"
    } else {
        proto.name().as_bytes()
    });
    m.extend_from_slice(b"\":");
    m
}

pub fn modbus_fields(out: &mut Vec<u8>, p: &ModbusPdu, req: Option<&Req>) {
    out.push(b'{');
    field_u(out, "transaction_id", p.transaction_id as u64);
    field_u(out, "unit_id", p.unit_id as u64);
    field_u(out, "function_code", p.function_code as u64);
    if let Some(v) = p.exception_code {
        field_u(out, "exception_code", v as u64);
    }
    if let Some(v) = p.subfunction {
        field_u(out, "subfunction", v as u64);
    }
    if let Some(v) = p.mei_type {
        field_u(out, "mei_type", v as u64);
    }
    if let Some(v) = p.address {
        field_u(out, "address", v as u64);
    }
    if let Some(v) = p.quantity {
        field_u(out, "quantity", v as u64);
    }
    if let Some(v) = p.value {
        field_u(out, "value", v as u64);
    }
    if let Some(v) = p.write_address {
        field_u(out, "write_address", v as u64);
        field_opt_u(out, "write_quantity", p.write_quantity.map(|q| q as u64));
    }
    if let Some(v) = p.umas_function {
        field_u(out, "umas_function", v as u64);
    }
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

fn tsap_value(out: &mut Vec<u8>, v: &Option<Vec<u8>>) {
    match v {
        Some(b) => big_uint(out, b),
        None => out.extend_from_slice(b"null"),
    }
}

pub fn s7_fields(out: &mut Vec<u8>, p: &S7Pdu) {
    out.push(b'{');
    field_u(out, "rosctr", p.rosctr as u64);
    field_u(out, "pdu_reference", p.pdu_reference as u64);
    if let Some(v) = p.function_code {
        field_u(out, "function_code", v as u64);
    }
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
        key(out, "items");
        out.push(b'[');
        for (i, it) in p.items.iter().take(64).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            field_u(out, "area", it.area as u64);
            field_u(out, "db", it.db as u64);
            field_u(out, "byte", it.byte as u64);
            field_u(out, "bit", it.bit as u64);
            field_u(out, "length", it.length as u64);
            field_u(out, "transport_size", it.transport_size as u64);
            out.push(b'}');
        }
        out.push(b']');
    }
    if !p.return_codes.is_empty() {
        key(out, "return_codes");
        out.push(b'[');
        for (i, rc) in p.return_codes.iter().take(64).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            uint(out, *rc as u64);
        }
        out.push(b']');
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

pub fn s7plus_fields(out: &mut Vec<u8>, p: &S7PlusPdu) {
    out.push(b'{');
    field_u(out, "version", p.version as u64);
    field_b(out, "integrity", p.integrity);
    if let Some(v) = p.opcode {
        field_u(out, "opcode", v as u64);
    }
    if let Some(v) = p.function_code {
        field_u(out, "function_code", v as u64);
        field_s(out, "function_name", plus_function_name(v));
    }
    if let Some(v) = p.sequence {
        field_u(out, "sequence", v as u64);
    }
    if !p.anomalies.is_empty() {
        str_list(out, "anomalies", &p.anomalies);
    }
    out.push(b'}');
}

pub fn dnp3_fields(out: &mut Vec<u8>, p: &Dnp3Pdu) {
    out.push(b'{');
    field_u(out, "source_address", p.source_address as u64);
    field_u(out, "destination_address", p.destination_address as u64);
    field_u(out, "function_code", p.function_code as u64);
    field_u(out, "application_control", p.app_control as u64);
    field_b(out, "unsolicited", p.app_control & 0x10 != 0);
    if let Some(v) = p.iin {
        field_u(out, "iin", v as u64);
    }
    if !p.objects.is_empty() {
        key(out, "objects");
        out.push(b'[');
        for (i, o) in p.objects.iter().take(64).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            field_u(out, "group", o.group as u64);
            field_u(out, "variation", o.variation as u64);
            field_u(out, "qualifier", o.qualifier as u64);
            field_u(out, "count", o.count);
            out.push(b'}');
        }
        out.push(b']');
    }
    if !p.anomalies.is_empty() {
        str_list(out, "anomalies", &p.anomalies);
    }
    out.push(b'}');
}

/// A buffered NDJSON file.
/// Writes buffers to a file on a thread of its own, so that the packet path never waits
/// for the kernel's copy. An empty buffer asks the thread to flush and answer; an error
/// comes back at the next flush.
struct Writer {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    acks: std::sync::Mutex<std::sync::mpsc::Receiver<io::Result<()>>>,
    done: Option<std::thread::JoinHandle<()>>,
    buf: Vec<u8>,
}

const WRITE_CHUNK: usize = 1 << 20;

impl Writer {
    fn new(file: File) -> Writer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (ack, acks) = std::sync::mpsc::channel();
        let done = std::thread::spawn(move || {
            let mut out = BufWriter::with_capacity(WRITE_CHUNK, file);
            let mut error: Option<io::Error> = None;
            for buf in rx {
                if buf.is_empty() {
                    let flushed = out.flush();
                    let _ = ack.send(match error.take() {
                        Some(e) => Err(e),
                        None => flushed,
                    });
                } else if error.is_none() {
                    error = out.write_all(&buf).err();
                }
            }
            let _ = out.flush();
        });
        Writer {
            tx: Some(tx),
            acks: acks.into(),
            done: Some(done),
            buf: Vec::with_capacity(WRITE_CHUNK),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_CHUNK));
            self.send(buf)?;
        }
        Ok(())
    }

    fn send(&mut self, buf: Vec<u8>) -> io::Result<()> {
        match &self.tx {
            Some(tx) if tx.send(buf).is_ok() => Ok(()),
            _ => Err(io::Error::other("the writer thread stopped")),
        }
    }

    /// Everything written so far reaches the file.
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.send(buf)?;
        }
        self.send(Vec::new())?;
        let acks = self
            .acks
            .lock()
            .map_err(|_| io::Error::other("the writer thread failed"))?;
        acks.recv()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread stopped")))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            let _ = self.send(buf);
        }
        self.tx = None;
        if let Some(done) = self.done.take() {
            let _ = done.join();
        }
    }
}

pub struct Lines {
    out: Writer,
    pub count: u64,
    iso: IsoCache,
    line: Vec<u8>,
}

impl Lines {
    /// A new file, or (`append`: several sensor processes share it) the end of one.
    pub fn create(path: &str, append: bool) -> io::Result<Lines> {
        let f = if append {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
        } else {
            File::create(path)?
        };
        Ok(Lines {
            out: Writer::new(f),
            count: 0,
            iso: IsoCache::default(),
            line: Vec::with_capacity(1024),
        })
    }

    /// One line of events.ndjson for a PDU.
    pub fn pdu(&mut self, flow: &mut Flow, ev: &Event, ts: f64) -> io::Result<()> {
        let proto = ev.protocol();
        let request = ev.is_request();
        let sender = flow.sender(ev.from_client);
        let slot = (proto as usize) * 4 + (ev.from_client as usize) * 2 + request as usize;
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"@timestamp\":\"");
        self.iso.format(ts, line);
        if flow.templates.as_ref().is_none_or(|t| t[slot].is_none()) {
            let m = middle(flow, proto, sender, request, None);
            flow.templates.get_or_insert_with(Default::default)[slot] = Some(m);
        }
        line.extend_from_slice(flow.templates.as_ref().unwrap()[slot].as_ref().unwrap());
        match &ev.body {
            Body::Modbus(p) => modbus_fields(line, p, ev.req.as_deref()),
            Body::S7(p) => s7_fields(line, p),
            Body::S7Plus(p) => s7plus_fields(line, p),
            Body::Dnp3(p) => dnp3_fields(line, p),
            Body::Anomaly(_) => return Ok(()),
        }
        line.extend_from_slice(b"}}\n");
        self.count += 1;
        self.out.write_all(line)
    }

    /// One line of anomalies.ndjson: one kind of anomaly on one flow, with its count.
    pub fn anomaly(&mut self, flow: &mut Flow, agg: &AnomalyCount) -> io::Result<()> {
        let a = &agg.first;
        let sender = flow.sender(agg.from_client);
        let action = format!("{}-{}", a.protocol.name(), a.kind);
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"@timestamp\":\"");
        self.iso.format(agg.first_ts, line);
        line.extend_from_slice(&middle(
            flow,
            a.protocol,
            sender,
            agg.from_client,
            Some(&action),
        ));
        line.push(b'{');
        field_s(line, "protocol", a.protocol.name());
        field_s(line, "kind", a.kind);
        field_s(line, "detail", &a.detail);
        field_u(line, "count", agg.count);
        key(line, "first");
        line.push(b'"');
        self.iso.format(agg.first_ts, line);
        line.push(b'"');
        key(line, "last");
        line.push(b'"');
        self.iso.format(agg.last_ts, line);
        line.push(b'"');
        line.extend_from_slice(b"}}}\n");
        self.count += 1;
        self.out.write_all(line)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One kind of anomaly seen on one flow: the first occurrence and how often.
pub struct AnomalyCount {
    pub first: Anomaly,
    pub from_client: bool,
    pub count: u64,
    pub first_ts: f64,
    pub last_ts: f64,
}
