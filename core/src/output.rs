//! The per-PDU event lines of `events.ndjson` (ECS), and parse anomalies aggregated per
//! flow and kind for `anomalies.ndjson`.
//!
//! The parts of a line that depend only on the flow and direction are rendered once per
//! flow and reused for every PDU.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::events::{Anomaly, Event, Proto};
use crate::flows::Flow;
use crate::json::*;
use crate::timefmt::IsoCache;

pub const ECS_VERSION: &str = "8.11.0";

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

/// Everything of a line after the timestamp up to the protocol object; `stamp` is the
/// sensor's `,"observer":{..},"labels":{..}` (empty: none).
fn middle(
    flow: &mut Flow,
    stamp: &[u8],
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
    m.extend_from_slice(b"\"}");
    m.extend_from_slice(stamp);
    m.extend_from_slice(
        b",\"event\":{\"kind\":\"event\",\"category\":[\"network\"],\"type\":[\"protocol\"",
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

    /// One line of events.ndjson for a PDU (`stamp`: the sensor's fields, see `middle`).
    pub fn pdu(&mut self, flow: &mut Flow, ev: &Event, ts: f64, stamp: &[u8]) -> io::Result<()> {
        let proto = ev.protocol();
        let request = ev.is_request();
        let sender = flow.sender(ev.from_client);
        let slot = (proto as usize) * 4 + (ev.from_client as usize) * 2 + request as usize;
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"@timestamp\":\"");
        self.iso.format(ts, line);
        if flow.templates.as_ref().is_none_or(|t| t[slot].is_none()) {
            let m = middle(flow, stamp, proto, sender, request, None);
            flow.templates.get_or_insert_with(Default::default)[slot] = Some(m);
        }
        line.extend_from_slice(flow.templates.as_ref().unwrap()[slot].as_ref().unwrap());
        let Some(record) = ev.body.record() else {
            return Ok(());
        };
        record.json(line, ev.req.as_ref());
        line.extend_from_slice(b"}}\n");
        self.count += 1;
        self.out.write_all(line)
    }

    /// One line of anomalies.ndjson: one kind of anomaly on one flow, with its count.
    pub fn anomaly(&mut self, flow: &mut Flow, agg: &AnomalyCount, stamp: &[u8]) -> io::Result<()> {
        let a = &agg.first;
        let sender = flow.sender(agg.from_client);
        let action = format!("{}-{}", a.protocol.name(), a.kind);
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"@timestamp\":\"");
        self.iso.format(agg.first_ts, line);
        line.extend_from_slice(&middle(
            flow,
            stamp,
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
