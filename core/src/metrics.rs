//! The operations view: per edge and per minute of capture time, how many requests went,
//! how many were answered (and refused), how many never were, and how long answers took.
//! Requests and answers are paired by the dissectors' transaction tokens; a flow keeps its
//! requests' times, each edge its current minute, so the cost is per PDU and the memory
//! bounded.

use std::io::{self, Write};

use crate::aggregate::{EdgeKey, Names};
use crate::json::{field_s, field_u, key};
use crate::timefmt::IsoCache;

pub const MINUTE: f64 = 60.0;
/// Requests of one flow waiting for an answer; older ones count as unanswered.
pub const MAX_WAITING: usize = 64;
/// Response times kept per edge and minute for the percentiles (the counts go on).
const MAX_SAMPLES: usize = 4096;
/// Finished minutes held until the policy takes them.
const MAX_ROWS: usize = 100_000;

/// TCP health of a connection: new connections (SYNs), segments sent again,
/// resets, and zero windows advertised (a receiver that cannot keep up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tcp {
    pub connections: u64,
    pub retransmissions: u64,
    pub resets: u64,
    pub zero_windows: u64,
}

impl Tcp {
    pub fn any(&self) -> bool {
        *self != Tcp::default()
    }

    pub fn add(&mut self, o: Tcp) {
        self.connections += o.connections;
        self.retransmissions += o.retransmissions;
        self.resets += o.resets;
        self.zero_windows += o.zero_windows;
    }
}

/// One edge's current minute (kept with the edge: no lookup of its own per PDU).
#[derive(Default)]
pub struct Minute {
    start: f64,
    requests: u64,
    answers: u64,
    refused: u64,
    unanswered: u64,
    samples: Vec<f32>,
    /// intervals between repeats of one request function: count, sum, sum of squares
    gaps: (u64, f64, f64),
    tcp: Tcp,
}

/// Intervals between repeats of a request longer than this are not a polling cycle...
pub const MAX_CYCLE: f64 = MINUTE;
/// ... and a minute with fewer repeats than this tells no cycle.
const MIN_CYCLES: u64 = 3;

impl Minute {
    /// A request repeated `interval` seconds after the same function's last one.
    pub fn cycle(&mut self, interval: f64) {
        if (0.0..=MAX_CYCLE).contains(&interval) {
            self.gaps.0 += 1;
            self.gaps.1 += interval;
            self.gaps.2 += interval * interval;
        }
    }
}

/// What one record adds to its edge's minute, found from its flow alone.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// a request; `dropped`: older requests of the flow given up as unanswered
    Request { dropped: u64 },
    /// an answer; its response time when its request was seen
    Answer {
        latency: Option<f64>,
        accepted: bool,
    },
    /// requests that never got an answer (the flow ended)
    Unanswered(u64),
    /// TCP health counted on a connection since its last count
    Tcp(Tcp),
}

/// One edge's minute, finished.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub edge: EdgeKey,
    pub start: f64,
    pub requests: u64,
    pub answers: u64,
    pub refused: u64,
    pub unanswered: u64,
    /// response time percentiles and maximum, seconds (None: nothing was answered)
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    /// the polling cycle: mean interval between repeats of one request function, and
    /// its standard deviation (the jitter)
    pub period: Option<f64>,
    pub jitter: Option<f64>,
    pub tcp: Tcp,
}

/// Finished minutes, until the policy takes them.
#[derive(Default)]
pub struct Rows {
    pub rows: Vec<Row>,
    pub dropped: u64,
}

impl Rows {
    fn push(&mut self, row: Row) {
        if self.rows.len() < MAX_ROWS {
            self.rows.push(row);
        } else {
            self.dropped += 1;
        }
    }

    /// Count `op` in the edge's minute of `ts` (the previous minute, if any, is finished).
    /// The TCP health a flow gathered since it was last counted, into its edge's minute.
    pub fn count_tcp(
        &mut self,
        minute: &mut Option<Minute>,
        edge: EdgeKey,
        ts: f64,
        tcp: &mut Tcp,
    ) {
        if tcp.any() {
            self.count(minute, edge, ts, Op::Tcp(std::mem::take(tcp)));
        }
    }

    pub fn count(&mut self, minute: &mut Option<Minute>, edge: EdgeKey, ts: f64, op: Op) {
        let start = (ts / MINUTE).floor() * MINUTE;
        if minute.as_ref().is_some_and(|m| start > m.start) {
            self.push(row(edge, minute.take().unwrap()));
        }
        let m = minute.get_or_insert_with(|| Minute {
            start,
            ..Minute::default()
        });
        match op {
            Op::Request { dropped } => {
                m.requests += 1;
                m.unanswered += dropped;
            }
            Op::Answer { latency, accepted } => {
                m.answers += 1;
                m.refused += u64::from(!accepted);
                if let (Some(l), true) = (latency, m.samples.len() < MAX_SAMPLES) {
                    m.samples.push(l.max(0.0) as f32);
                }
            }
            Op::Unanswered(n) => m.unanswered += n,
            Op::Tcp(t) => m.tcp.add(t),
        }
    }

    /// The end of the input: the current minutes of these edges are finished.
    pub fn finish<'a>(&mut self, open: impl Iterator<Item = (EdgeKey, &'a mut Option<Minute>)>) {
        let mut done: Vec<Row> = open
            .filter_map(|(edge, m)| m.take().map(|m| row(edge, m)))
            .collect();
        done.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.edge.cmp(&b.edge)));
        for r in done {
            self.push(r);
        }
    }
}

/// metrics.ndjson: one ECS metric document per row (written here: thousands of them).
/// `stamp`: `,"observer":{..},"labels":{..}` of the sensor (empty: none).
pub fn write(rows: &[Row], names: &Names, stamp: &[u8], out: &mut dyn Write) -> io::Result<()> {
    let mut iso = IsoCache::default();
    let mut line = Vec::with_capacity(512);
    for r in rows {
        line.clear();
        line.extend_from_slice(b"{\"@timestamp\":\"");
        iso.format(r.start, &mut line);
        line.extend_from_slice(b"\",\"ecs\":{\"version\":\"8.11.0\"}");
        line.extend_from_slice(stamp);
        line.extend_from_slice(b",\"event\":{");
        field_s(&mut line, "kind", "metric");
        field_s(&mut line, "dataset", "otsec.metrics");
        field_s(&mut line, "module", "otsec");
        key(&mut line, "start");
        line.push(b'"');
        iso.format(r.start, &mut line);
        line.push(b'"');
        key(&mut line, "end");
        line.push(b'"');
        iso.format(r.start + MINUTE, &mut line);
        line.extend_from_slice(b"\"},\"source\":{");
        field_s(&mut line, "ip", &r.edge.client.text());
        line.extend_from_slice(b"},\"destination\":{");
        field_s(&mut line, "ip", &r.edge.server.text());
        field_u(&mut line, "port", r.edge.port as u64);
        line.extend_from_slice(b"},\"network\":{");
        field_s(&mut line, "transport", transport(r.edge.transport));
        field_s(&mut line, "protocol", names.name(r.edge.protocol));
        line.extend_from_slice(b"},\"otsec\":{\"metrics\":{");
        field_u(&mut line, "requests", r.requests);
        field_u(&mut line, "responses", r.answers);
        field_u(&mut line, "exceptions", r.refused);
        field_u(&mut line, "unanswered", r.unanswered);
        key(&mut line, "response_time_ms");
        line.push(b'{');
        for (name, v) in [("p50", r.p50), ("p95", r.p95), ("max", r.max)] {
            if let Some(v) = v {
                field_ms(&mut line, name, v);
            }
        }
        line.push(b'}');
        if let (Some(period), Some(jitter)) = (r.period, r.jitter) {
            key(&mut line, "cycle_ms");
            line.push(b'{');
            field_ms(&mut line, "period", period);
            field_ms(&mut line, "jitter", jitter);
            line.push(b'}');
        }
        if r.edge.transport == 6 {
            key(&mut line, "tcp");
            line.push(b'{');
            field_u(&mut line, "connections", r.tcp.connections);
            field_u(&mut line, "retransmissions", r.tcp.retransmissions);
            field_u(&mut line, "resets", r.tcp.resets);
            field_u(&mut line, "zero_windows", r.tcp.zero_windows);
            line.push(b'}');
        }
        line.extend_from_slice(b"}}}\n");
        out.write_all(&line)?;
    }
    Ok(())
}

/// A duration given in seconds, written in milliseconds.
fn field_ms(line: &mut Vec<u8>, name: &str, seconds: f64) {
    key(line, name);
    line.extend_from_slice(format!("{:.3}", seconds * 1000.0).as_bytes());
}

pub fn transport(proto: u8) -> &'static str {
    match proto {
        6 => "tcp",
        17 => "udp",
        _ => "ip",
    }
}

fn row(edge: EdgeKey, mut m: Minute) -> Row {
    m.samples.sort_by(f32::total_cmp);
    let (n, sum, sq) = m.gaps;
    let period = (n >= MIN_CYCLES).then(|| sum / n as f64);
    let jitter = period.map(|mean| (sq / n as f64 - mean * mean).max(0.0).sqrt());
    let at = |q: f64| -> Option<f64> {
        if m.samples.is_empty() {
            return None;
        }
        let i = ((m.samples.len() - 1) as f64 * q).round() as usize;
        Some(m.samples[i] as f64)
    };
    Row {
        edge,
        start: m.start,
        requests: m.requests,
        answers: m.answers,
        refused: m.refused,
        unanswered: m.unanswered,
        p50: at(0.5),
        p95: at(0.95),
        max: m.samples.last().map(|&x| x as f64),
        period,
        jitter,
        tcp: m.tcp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Addr;

    fn edge() -> EdgeKey {
        EdgeKey {
            client: Addr::new(&[10, 0, 0, 20]),
            server: Addr::new(&[10, 0, 0, 10]),
            transport: 6,
            port: 502,
            protocol: 0,
        }
    }

    #[test]
    fn minutes_close_with_counts_and_percentiles() {
        let mut rows = Rows::default();
        let mut minute = None;
        for i in 0..100 {
            let ts = 120.0 + i as f64 * 0.5; // 50 s of requests, answered in (i+1) ms
            rows.count(&mut minute, edge(), ts, Op::Request { dropped: 0 });
            let latency = Some((i + 1) as f64 / 1000.0);
            let accepted = i % 10 != 0;
            rows.count(&mut minute, edge(), ts, Op::Answer { latency, accepted });
        }
        rows.count(&mut minute, edge(), 185.0, Op::Unanswered(2));
        rows.finish(std::iter::once((edge(), &mut minute)));
        let first = &rows.rows[0];
        assert_eq!(
            (first.start, first.requests, first.answers),
            (120.0, 100, 100)
        );
        assert_eq!(first.refused, 10);
        assert!((first.p50.unwrap() - 0.050).abs() < 0.0015);
        assert!((first.p95.unwrap() - 0.095).abs() < 0.0015);
        assert_eq!(rows.rows[1].unanswered, 2); // the next minute
    }
}
