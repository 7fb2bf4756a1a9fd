//! The Python binding: `otsec._core`. Python keeps policy and output; this module hands it
//! counters and writes the per-PDU lines itself.

use crate::probes::Probe;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use std::sync::{Arc, Mutex};

use crate::aggregate::Service;
use crate::decode::{mac_text, Addr};
use crate::engine::{Config, Engine as CoreEngine, Fact, FlowSnapshot, Found};
use crate::events::{Body, Event, Req};
use crate::output::Lines;
use crate::reader::{Format, Packet, Reader};

pyo3::create_exception!(_core, CaptureError, pyo3::exceptions::PyException);

/// A capture being read: a file, a FIFO, or standard input (`-`).
#[pyclass(module = "otsec._core")]
pub struct Capture {
    reader: Reader,
}

#[pymethods]
impl Capture {
    #[new]
    fn new(py: Python<'_>, path: &str) -> PyResult<Self> {
        let reader = py
            .detach(|| Reader::open(path))
            .map_err(CaptureError::new_err)?;
        Ok(Capture { reader })
    }

    #[getter]
    fn format(&self) -> &'static str {
        match self.reader.format {
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
        }
    }

    #[getter]
    fn compressed(&self) -> bool {
        self.reader.compressed
    }

    #[getter]
    fn packets(&self) -> u64 {
        self.reader.packets
    }

    /// Bytes of the file consumed so far (compressed bytes for gzip), for progress bars.
    #[getter]
    fn position(&self) -> u64 {
        self.reader.position()
    }

    /// The file's size (0 for a stream).
    #[getter]
    fn size(&self) -> u64 {
        self.reader.size
    }

    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.reader.warnings.clone()
    }

    #[getter]
    fn finished(&self) -> bool {
        self.reader.finished()
    }

    /// Reading stopped at a record that cannot be a packet.
    #[getter]
    fn corrupt(&self) -> bool {
        self.reader.corrupt
    }

    /// What reading repaired in a damaged capture: {"times": records given the last
    /// possible time, "interfaces": interfaces whose timestamp options were set aside,
    /// "blocks": damaged blocks skipped, "bytes": bytes passed over to find the next,
    /// "empty": records of no bytes}.
    #[getter]
    fn repairs(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let r = self.reader.repairs();
        [
            ("times", r.times),
            ("interfaces", r.interfaces),
            ("blocks", r.blocks),
            ("bytes", r.bytes),
            ("empty", r.empty),
        ]
        .into()
    }

    /// The packets of the next chunk as (ts, linktype, bytes, wirelen) (tests, replays).
    fn read<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let mut out = Vec::new();
        let mut err = None;
        self.reader.next_chunk(&mut |p| {
            match (p.ts, p.linktype, PyBytes::new(py, p.data), p.wirelen).into_pyobject(py) {
                Ok(t) => out.push(t),
                Err(e) => err = Some(e),
            }
            true
        });
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// One dissector on its own (unit and property tests of the parsers).
#[pyclass(module = "otsec._core")]
pub struct Dissector {
    parser: crate::protocols::Parser,
}

#[pymethods]
impl Dissector {
    #[new]
    fn new(protocol: &str) -> PyResult<Self> {
        let kind = crate::protocols::Dissector::by_name(protocol).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!("no dissector {protocol}"))
        })?;
        Ok(Dissector {
            parser: (kind.parser)(),
        })
    }

    /// Stream bytes of one direction; `gap`: bytes before them were lost. Fact tuples out.
    #[pyo3(signature = (data, from_client, gap=false))]
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
        from_client: bool,
        gap: bool,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let mut events = Vec::new();
        self.parser.feed(data, from_client, gap, &mut events);
        loose(py, events)
    }

    /// (bytes buffered in the larger direction, open requests, partial reassemblies)
    fn held(&self) -> (usize, usize, usize) {
        self.parser.held()
    }

    fn feed_datagram<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
        from_client: bool,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let mut events = Vec::new();
        self.parser.feed_datagram(data, from_client, &mut events);
        loose(py, events)
    }
}

fn loose<'py>(py: Python<'py>, events: Vec<Event>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    events
        .into_iter()
        .map(|ev| {
            fact(
                py,
                &Fact::Event {
                    flow: 0,
                    view: None,
                    ts: 0.0,
                    frame: 0,
                    found: Found {
                        meaning: crate::meaning::describe(&ev),
                        ..Default::default()
                    },
                    ev: Box::new(ev),
                },
            )
        })
        .collect()
}

/// Fail (CaptureError, one line) unless `path` is a capture otsec reads; reads its headers
/// only.
#[pyfunction]
fn check_capture(py: Python<'_>, path: &str) -> PyResult<()> {
    py.detach(|| Reader::check(path))
        .map_err(CaptureError::new_err)
}

/// Does this first payload look like the protocol? (`strict`: off its well-known port)
#[pyfunction]
fn looks_like(protocol: &str, payload: &[u8], strict: bool) -> bool {
    crate::protocols::Dissector::by_name(protocol)
        .is_some_and(|k| (k.looks_like)(payload, strict) == crate::protocols::Sniff::Yes)
}

/// Link, IP and transport headers of one frame: (source, destination, transport, source
/// port, destination port, source MAC, VLAN, payload), or why it is no TCP/UDP packet.
#[pyfunction]
fn decode<'py>(py: Python<'py>, linktype: u32, frame: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    use crate::decode::{decode_frame, NotTransport};
    Ok(match decode_frame(linktype, frame) {
        Ok((link, t)) => {
            let smac = link.src_mac.map(|m| mac_text(&m));
            (
                t.src.text(),
                t.dst.text(),
                t.proto,
                t.sport,
                t.dport,
                smac,
                link.vlan,
                PyBytes::new(py, &frame[t.pstart..t.pend]),
            )
                .into_pyobject(py)?
                .into_any()
        }
        Err(reason) => match reason {
            NotTransport::NotIp => "not_ip",
            NotTransport::Invalid => "invalid",
            NotTransport::Fragment => "fragment",
            NotTransport::OtherIp => "other_ip",
            NotTransport::Arp(_) => "arp",
        }
        .into_pyobject(py)?
        .into_any(),
    })
}

/// DNP3's link-layer CRC.
#[pyfunction]
fn dnp3_crc(data: &[u8]) -> u16 {
    crate::protocols::dnp3::crc(data)
}

/// Identity fields of an SZL 0x0011 / 0x001C answer (from its SZL header on).
#[pyfunction]
fn szl_identity(szl_id: u16, data: &[u8]) -> Vec<(&'static str, String)> {
    crate::protocols::s7comm::szl_identity(szl_id, data)
}

/// The packet path for one capture process.
#[pyclass(module = "otsec._core")]
pub struct Engine {
    engine: CoreEngine,
    /// an interruption (Ctrl-C, exit) raised in a policy call while reading: reading
    /// stops and it is raised when the call returns
    interrupted: Arc<Mutex<Option<PyErr>>>,
}

fn lines(path: Option<&str>, append: bool) -> PyResult<Option<Lines>> {
    path.map(|p| Lines::create(p, append).map_err(|e| PyOSError::new_err(format!("{p}: {e}"))))
        .transpose()
}

impl Engine {
    /// An interruption raised in a policy call, else the first write error of the output
    /// files since the last call (as Python's OSError).
    fn io_result(&mut self) -> PyResult<()> {
        if let Some(e) = self.take_interruption() {
            return Err(e);
        }
        match self.engine.ledger.io_error.take() {
            Some(e) => Err(PyOSError::new_err(e)),
            None => Ok(()),
        }
    }

    fn take_interruption(&self) -> Option<PyErr> {
        self.interrupted.lock().ok()?.take()
    }

    fn is_interrupted(interrupted: &Mutex<Option<PyErr>>) -> bool {
        interrupted.lock().is_ok_and(|e| e.is_some())
    }
}

#[pymethods]
impl Engine {
    /// `threads`: the record side works on a thread of its own while `feed` and
    /// `feed_block` read (the results are the same; see `engine::Engine::threads`).
    #[new]
    #[pyo3(signature = (max_flows=200_000, events=None, anomalies=None, cross_all=false,
                        append=false, learn_for=None, threads=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_flows: usize,
        events: Option<&str>,
        anomalies: Option<&str>,
        cross_all: bool,
        append: bool,
        learn_for: Option<f64>,
        threads: bool,
    ) -> PyResult<Self> {
        let mut engine = CoreEngine::new(Config {
            max_flows,
            threads,
            cross_all,
            learn_for,
        });
        engine.ledger.events = lines(events, append)?;
        engine.ledger.anomalies = lines(anomalies, append)?;
        Ok(Engine {
            engine,
            interrupted: Arc::default(),
        })
    }

    /// Read up to `chunks` chunks (4 MiB each) of a capture; False once it has ended.
    #[pyo3(signature = (capture, chunks=1))]
    fn feed(
        &mut self,
        py: Python<'_>,
        mut capture: PyRefMut<'_, Capture>,
        chunks: usize,
    ) -> PyResult<bool> {
        let engine = &mut self.engine;
        let reader = &mut capture.reader;
        let interrupted = &self.interrupted;
        let more = py.detach(|| {
            let more = engine.read(reader, chunks, &|| Self::is_interrupted(interrupted));
            engine.paused = false;
            more
        });
        self.io_result()?;
        Ok(more)
    }

    /// One retired block of a TPACKET_V3 ring (the live sensor); returns its packets.
    fn feed_block(&mut self, py: Python<'_>, block: &[u8]) -> PyResult<u32> {
        let engine = &mut self.engine;
        let packets = py.detach(|| engine.block(block));
        match self.take_interruption() {
            Some(e) => Err(e),
            None => Ok(packets),
        }
    }

    /// One packet (tests).
    fn packet(&mut self, ts: f64, linktype: u32, data: &[u8], wirelen: u32) {
        self.engine.packet(Packet {
            ts,
            linktype,
            data,
            wirelen,
        });
    }

    /// Everything written so far reaches the files.
    fn flush(&mut self, py: Python<'_>) -> PyResult<()> {
        let engine = &mut self.engine;
        py.detach(|| engine.flush());
        self.io_result()
    }

    /// End every flow and flush the files.
    fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        let engine = &mut self.engine;
        py.detach(|| engine.finish());
        self.io_result()
    }

    /// The capture time of the newest packet read (None before the first).
    #[getter]
    fn now(&self) -> Option<f64> {
        self.engine.now()
    }

    /// The counters, as plain Python values.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.engine.stats;
        let c = &self.engine.ledger.counts;
        let d = PyDict::new(py);
        d.set_item("packets", s.packets)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("first_ts", s.first_ts)?;
        d.set_item("last_ts", s.last_ts)?;
        d.set_item("tcp_packets", s.tcp_packets)?;
        d.set_item("udp_packets", s.udp_packets)?;
        d.set_item("arp_packets", s.arp_packets)?;
        d.set_item("not_ip", s.not_ip)?;
        d.set_item("invalid", s.invalid)?;
        d.set_item("ip_fragments", s.ip_fragments)?;
        d.set_item("other_ip", s.other_ip)?;
        d.set_item("unrecognised_on_ot_port", s.unrecognised_on_ot_port)?;
        d.set_item("unknown_linktype", s.linktypes_unknown)?;
        d.set_item("crossed", c.crossed)?;
        let agg = &self.engine.ledger.aggregates;
        let bounds = PyDict::new(py);
        bounds.set_item("hosts", agg.hosts.len())?;
        bounds.set_item("edges", agg.edges.len())?;
        bounds.set_item("untracked_hosts", agg.untracked_hosts)?;
        bounds.set_item("untracked_edges", agg.untracked_edges)?;
        bounds.set_item("untracked_peers", agg.untracked_peers)?;
        bounds.set_item("untracked_values", self.engine.ledger.values.untracked)?;
        bounds.set_item(
            "untracked_devices",
            self.engine.ledger.availability.untracked,
        )?;
        d.set_item("tracking", bounds)?;
        let pdus: std::collections::BTreeMap<&str, u64> =
            c.pdus.iter().map(|(p, n)| (p.name(), *n)).collect();
        d.set_item("pdus", pdus)?;
        let named = |m: &std::collections::BTreeMap<(&str, &str), u64>| {
            m.iter()
                .map(|((p, k), n)| (format!("{p}.{k}"), *n))
                .collect::<std::collections::BTreeMap<String, u64>>()
        };
        d.set_item("anomalies", named(&c.anomalies))?;
        d.set_item("pdu_anomalies", named(&c.pdu_anomalies))?;
        let r = &self.engine.reassembly;
        let ra = PyDict::new(py);
        ra.set_item("gaps", r.gaps)?;
        ra.set_item("skipped_bytes", r.skipped_bytes)?;
        ra.set_item("retransmitted_bytes", r.retransmitted_bytes)?;
        ra.set_item("out_of_order_segments", r.out_of_order_segments)?;
        ra.set_item("over_budget_gaps", r.over_budget_gaps)?;
        ra.set_item("overlap_conflicts", r.overlap_conflicts)?;
        ra.set_item("overlap_conflict_bytes", r.overlap_conflict_bytes)?;
        d.set_item("reassembly", ra)?;
        let g = &self.engine.defrag.stats;
        let df = PyDict::new(py);
        df.set_item("reassembled", g.reassembled)?;
        df.set_item("timed_out", g.timed_out)?;
        df.set_item("evicted", g.evicted)?;
        df.set_item("too_many_fragments", g.too_many_fragments)?;
        df.set_item("invalid", g.invalid)?;
        df.set_item("overlaps", g.overlaps)?;
        df.set_item("overlap_conflicts", g.overlap_conflicts)?;
        df.set_item("in_progress", g.in_progress)?;
        d.set_item("defrag", df)?;
        let f = self.engine.flow_stats();
        let fl = PyDict::new(py);
        fl.set_item("created", f.created)?;
        fl.set_item("peak", f.peak)?;
        fl.set_item("expired", f.expired)?;
        fl.set_item("evicted_when_full", f.evicted_full)?;
        fl.set_item("evicted_unanswered", f.evicted_unanswered)?;
        fl.set_item("live", self.engine.flows.live)?;
        d.set_item("flows", fl)?;
        let events = self
            .engine
            .ledger
            .events
            .as_ref()
            .map(|l| l.count)
            .unwrap_or(0);
        d.set_item("events_written", events)?;
        Ok(d)
    }
    /// What crossed into Python since the last call, as tuples (see otsec/core.py).
    fn take_facts<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let facts = std::mem::take(&mut self.engine.ledger.facts);
        facts.iter().map(|f| fact(py, f)).collect()
    }

    /// The rule set (see otsec/detect/compiled.py): rules as (protocols, anomaly?,
    /// conditions, passthrough?, threshold, key fields, actor, answerable, id); the alert
    /// window; the times at which site policy changes. Called again, it replaces the set
    /// from the next packet on: state kept by rule id stands, folded findings restart.
    #[allow(clippy::type_complexity)]
    fn set_rules(
        &mut self,
        rules: Vec<(
            Vec<String>,
            bool,
            Vec<(String, String, Bound<'_, PyAny>)>,
            bool,
            Option<(usize, f64, String, Option<String>)>,
            Vec<String>,
            String,
            Option<bool>,
            String,
        )>,
        window: f64,
        boundaries: Vec<f64>,
    ) -> PyResult<()> {
        use crate::rules::{Actor, By, Op, Rule, Threshold};
        let mut out = Vec::new();
        for (
            protocols,
            anomaly,
            conditions,
            passthrough,
            threshold,
            key_fields,
            actor,
            answerable,
            rule_id,
        ) in rules
        {
            let protocols = protocols.iter().filter_map(|p| parse_proto(p)).collect();
            let id = |name: &str| {
                crate::rules::field_id(name).ok_or_else(|| {
                    pyo3::exceptions::PyValueError::new_err(format!("no core field {name}"))
                })
            };
            let mut conds = Vec::new();
            for (f, op, v) in conditions {
                let f = id(&f)?;
                let op = Op::parse(&op).ok_or_else(|| {
                    pyo3::exceptions::PyValueError::new_err(format!("operator {op}"))
                })?;
                conds.push((f, op, to_val(&v)?));
            }
            let key_fields = key_fields
                .iter()
                .map(|k| id(k))
                .collect::<PyResult<Vec<u8>>>()?;
            let distinct = match threshold.as_ref().and_then(|t| t.3.as_deref()) {
                Some(d) => Some(id(d)?),
                None => None,
            };
            let threshold = threshold.map(|(count, window, by, _)| Threshold {
                count,
                window,
                by: match by.as_str() {
                    "server" => By::Server,
                    "source" => By::Source,
                    "destination" => By::Destination,
                    _ => By::Client,
                },
                distinct,
            });
            let actor = match actor.as_str() {
                "receiver" => Actor::Receiver,
                "tcp_client" => Actor::TcpClient,
                _ => Actor::Sender,
            };
            out.push(Rule {
                id: rule_id,
                protocols,
                anomaly,
                conditions: conds,
                passthrough,
                threshold,
                key_fields,
                actor,
                answerable,
            });
        }
        let mut boundaries = boundaries;
        boundaries.sort_by(f64::total_cmp);
        self.engine.ledger.matcher.reload(out, window, boundaries);
        self.engine.ledger.track_roles();
        Ok(())
    }

    /// The policy that decides hosts' roles for rules: called as `policy(ip, host, ts)`
    /// with what decides the host's role, ((first seen, last seen), services, uses,
    /// evidence) as `hosts()` gives them (None when untracked), when a rule needs a role
    /// the core does not hold; returns (role or None, until: the capture time until which
    /// it stands unless the host shows new evidence, a new service or use). The policy
    /// must not call this engine (it is reading); a failing policy counts as no role.
    fn set_role_source(&mut self, policy: Py<PyAny>) {
        use crate::rules::Val;
        let interrupted = Arc::clone(&self.interrupted);
        self.engine.ledger.role_source = Some(Box::new(move |agg, ip, ts| {
            Python::attach(|py| {
                let ask = || -> PyResult<(Val, f64)> {
                    let host = agg
                        .hosts
                        .get(ip)
                        .map(|h| role_tuple(py, agg, h))
                        .transpose()?;
                    let (role, until): (Option<String>, f64) =
                        policy.call1(py, (ip.text(), host, ts))?.extract(py)?;
                    Ok((role.map_or(Val::None, Val::Str), until))
                };
                ask().unwrap_or_else(|e| {
                    if e.is_instance_of::<pyo3::exceptions::PyException>(py) {
                        e.write_unraisable(py, None); // a bug: reported, never fatal
                    } else if let Ok(mut slot) = interrupted.lock() {
                        slot.get_or_insert(e); // Ctrl-C, exit: the run stops
                    }
                    (Val::None, f64::INFINITY)
                })
            })
        }));
    }

    /// Roles decided for rules to match: [(ip, role or None, until)], until a capture
    /// time; `lasting`: the baseline's roles, which stand whatever the hosts do.
    #[pyo3(signature = (roles, lasting=false))]
    fn set_roles(&mut self, roles: Vec<(String, Option<String>, f64)>, lasting: bool) {
        let roles = roles.into_iter().filter_map(|(ip, role, until)| {
            let role = role.map_or(crate::rules::Val::None, crate::rules::Val::Str);
            Some((parse_addr(&ip)?, role, until))
        });
        self.engine.ledger.matcher.context.set_roles(roles, lasting);
    }

    /// Repeats of the findings that crossed, counted here: (key, repeats, last time,
    /// accepted, rejected, {reason: count}) for every key with something to add (of
    /// `keys` only, when given).
    #[pyo3(signature = (keys=None))]
    #[allow(clippy::type_complexity)]
    fn hit_counts(
        &self,
        keys: Option<Vec<u32>>,
    ) -> Vec<(
        u32,
        u64,
        f64,
        u64,
        u64,
        std::collections::BTreeMap<String, u64>,
        Vec<String>,
        u32,
    )> {
        let m = &self.engine.ledger.matcher;
        let ids: Box<dyn Iterator<Item = (u32, &crate::rules::Counts)>> = match keys {
            Some(keys) => Box::new(keys.into_iter().filter_map(|k| Some(k).zip(m.counts(k)))),
            None => Box::new(m.all_counts()),
        };
        ids.filter(|(_, c)| c.repeats > 0 || c.accepted > 0 || c.rejected > 0)
            .map(|(i, c)| {
                (
                    i,
                    c.repeats,
                    c.last,
                    c.accepted,
                    c.rejected,
                    c.reasons.clone(),
                    c.actors.iter().map(|a| a.text()).collect(),
                    c.actor_count,
                )
            })
            .collect()
    }

    /// The caps on new findings: (per rule, per rule and actor, window in seconds).
    #[staticmethod]
    fn finding_caps() -> (u32, u32, f64) {
        (
            crate::rules::MAX_PER_RULE,
            crate::rules::MAX_PER_ACTOR,
            crate::rules::CAP_WINDOW,
        )
    }

    /// Protecting with a baseline: report what is new, watch the learned rates
    /// ({edge key: requests/s}), the last request of learned cyclic edges ([edge key]) and
    /// functions learned only in connections' start-up ([(edge key, code)]), written
    /// points (((device, protocol, unit, table, address), min, max, [writer])) and the
    /// learned functions rules may ask about ([(edge key, request?, code)]).
    #[pyo3(signature = (rates, cyclic, startup_only=Vec::new(), values=Vec::new(), functions=Vec::new()))]
    #[allow(clippy::type_complexity)]
    fn watch(
        &mut self,
        rates: std::collections::HashMap<String, f64>,
        cyclic: Vec<String>,
        startup_only: Vec<(String, u32)>,
        values: Vec<((String, String, u32, String, u32), f64, f64, Vec<String>)>,
        functions: Vec<(String, bool, u32)>,
    ) {
        self.engine.ledger.baseline_in_use();
        self.engine.ledger.matcher.context.set_learned(
            functions
                .iter()
                .filter_map(|(k, request, code)| parse_edge(k).map(|e| (e, *request, *code))),
        );
        let w = &mut self.engine.ledger.watch;
        w.on = true;
        w.set_values(
            values
                .into_iter()
                .filter_map(
                    |((device, proto, unit, table, address), min, max, writers)| {
                        let key = (
                            parse_addr(&device)?,
                            parse_proto(&proto)?,
                            unit,
                            table_named(&table)?,
                            address,
                        );
                        let writers = writers.iter().filter_map(|a| parse_addr(a)).collect();
                        Some((key, crate::watch::Learned { min, max, writers }))
                    },
                )
                .collect(),
        );
        w.set_startup_only(
            startup_only
                .iter()
                .filter_map(|(k, code)| parse_edge(k).map(|e| (e, *code)))
                .collect(),
        );
        w.set_rates(
            rates
                .iter()
                .filter_map(|(k, r)| parse_edge(k).map(|e| (e, *r)))
                .collect(),
        );
        w.set_cyclic(cyclic.iter().filter_map(|k| parse_edge(k)).collect());
    }

    /// Whether the record side works on a thread of its own while reading.
    #[getter]
    fn threads(&self) -> bool {
        self.engine.threads()
    }

    /// The time of the first record (the learning window starts there), or None.
    #[getter]
    fn first_record(&self) -> Option<f64> {
        self.engine.ledger.first_record
    }

    /// The time the learning window closed, once (None when it has not, or was taken).
    fn take_pause(&mut self) -> Option<f64> {
        self.engine.pause_ts.take()
    }

    /// The last request of each learned cyclic edge: {edge key: time}.
    fn last_requests(&self) -> std::collections::HashMap<String, f64> {
        self.engine
            .ledger
            .watch
            .last_requests()
            .iter()
            .map(|(e, t)| (edge_ref(e), *t))
            .collect()
    }

    /// Requests over the learned rate after the first one that crossed: {edge key: n}.
    fn rate_repeats(&self) -> std::collections::HashMap<String, u64> {
        self.engine
            .ledger
            .watch
            .rate_repeats
            .iter()
            .map(|(e, n)| (edge_ref(e), *n))
            .collect()
    }

    /// The sensor's fields as a JSON fragment (`,"observer":{..},"labels":{..}`), put into
    /// every event, anomaly and metric line written from now on.
    fn set_stamp(&mut self, stamp: &[u8]) {
        self.engine.ledger.stamp = stamp.to_vec();
    }

    /// Names of the services on ports otsec does not dissect: {(transport, port): name}.
    fn set_service_names(&mut self, names: std::collections::HashMap<(u8, u16), String>) {
        let agg = &mut self.engine.ledger.aggregates;
        for ((t, p), n) in names {
            let id = agg.names.id(&n);
            agg.services.insert((t, p), id);
        }
    }

    /// Every host as a tuple (see otsec/core.py for the fields).
    fn hosts<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let agg = &self.engine.ledger.aggregates;
        agg.hosts
            .iter()
            .map(|(ip, h)| host_tuple(py, agg, ip, h))
            .collect()
    }

    /// One host as it stands now (rules that ask for roles), or None.
    fn host<'py>(&self, py: Python<'py>, ip: &str) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
            return Ok(None);
        };
        let addr = match addr {
            std::net::IpAddr::V4(a) => Addr::new(&a.octets()),
            std::net::IpAddr::V6(a) => Addr::new(&a.octets()),
        };
        let agg = &self.engine.ledger.aggregates;
        agg.hosts
            .get(&addr)
            .map(|h| host_tuple(py, agg, &addr, h))
            .transpose()
    }

    /// ARP claims: {ip: [mac, ...]}.
    fn arp(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.engine
            .ledger
            .aggregates
            .arp
            .iter()
            .map(|(ip, macs)| {
                (
                    Addr::new(ip).text(),
                    macs.iter().map(|m| mac_text(m)).collect(),
                )
            })
            .collect()
    }

    /// Process values: ((points, written, changing), rows, documents). Rows are the points
    /// written or changed, (device, protocol, unit, table, address, reads, writes, the last
    /// values as [(time, value)]); reads
    /// (count, last, min, max, changes, last time) or None; writes (count, last, min, max,
    /// last time, [(writer, count)], writes by writers not listed) or None. Documents:
    /// {device: [point as the asset document lists it]}: the telling ones (written, then
    /// changed, in address order), at most ``limit`` per device; with ``constant`` also the
    /// points whose value never changed (a plant's thousands of idle registers and status
    /// points: counted, not listed, unless asked for). ``changed``: of the points changed
    /// but never written, only the first so many rows, by device (as text), unit, table
    /// (by name) and address (the report's order): a plant's analog values change on every
    /// read, and what is not shown need not cross. The counts are (points, written,
    /// changing, written or changing).
    #[pyo3(signature = (limit=200, constant=false, changed=None))]
    #[allow(clippy::type_complexity)]
    fn process_values<'py>(
        &self,
        py: Python<'py>,
        limit: usize,
        constant: bool,
        changed: Option<usize>,
    ) -> PyResult<(
        (usize, usize, usize, usize),
        Vec<Bound<'py, PyTuple>>,
        Bound<'py, PyDict>,
    )> {
        let (total, all) = if constant {
            let all = self.engine.ledger.values.rows();
            (all.len(), all)
        } else {
            self.engine.ledger.values.telling()
        };
        let written = all.iter().filter(|r| r.written.is_some()).count();
        let changing = all
            .iter()
            .filter(|r| r.read.is_some_and(|x| x.changes > 0))
            .count();
        let telling =
            |r: &crate::values::Row| (r.written.is_none(), r.read.is_none_or(|x| x.changes == 0));
        let mut rows = Vec::new();
        let by_device: Vec<(usize, &crate::values::Row)> = all
            .iter()
            .enumerate()
            .filter(|(_, r)| constant || telling(r) != (true, true))
            .collect();
        let told = by_device
            .iter()
            .filter(|(_, r)| telling(r) != (true, true))
            .count();
        let counts = (total, written, changing, told);
        let shown = changed.map(|n| only_changed_shown(&all, n));
        // the rows are in key order, device first: per device, each class in key order
        let mut sorted = Vec::with_capacity(by_device.len());
        for run in by_device.chunk_by(|(_, a), (_, b)| a.key.0 == b.key.0) {
            for class in [(false, false), (false, true), (true, false), (true, true)] {
                sorted.extend(run.iter().filter(|(_, r)| telling(r) == class));
            }
        }
        let by_device = sorted;
        let docs = PyDict::new(py);
        let mut device: Option<(crate::decode::Addr, Bound<'py, pyo3::types::PyList>)> = None;
        let mut names = std::collections::HashMap::new();
        for (at, r) in by_device {
            let crosses = match telling(r) {
                (true, true) => false,
                (true, false) => shown.as_ref().is_none_or(|s| s[at]),
                _ => true,
            };
            if crosses {
                let history = self.engine.ledger.values.history(&r.key);
                rows.push(value_row(py, r, history)?);
            }
            if device.as_ref().is_none_or(|(d, _)| *d != r.key.0) {
                let list = pyo3::types::PyList::empty(py);
                docs.set_item(r.key.0.text(), &list)?;
                device = Some((r.key.0, list));
            }
            let list = &device.as_ref().unwrap().1;
            if list.len() < limit {
                let (_, proto, _, table, _) = r.key;
                let names = match names.get(&(proto, table)) {
                    Some(n) => n,
                    None => names.entry((proto, table)).or_insert((
                        PyString::new(py, proto.name()),
                        PyString::new(py, &table.name()),
                    )),
                };
                list.append(point_document(py, r, names)?)?;
            }
        }
        Ok((counts, rows, docs))
    }

    /// Write the finished minutes of the operations view to ``path`` (metrics.ndjson) and
    /// return them: (edge key, minute start, (requests, answers, refused, unanswered),
    /// (p50, p95, max response time in seconds), (polling period, jitter in seconds),
    /// (TCP connections, retransmissions, resets, zero windows)).
    fn take_metrics<'py>(
        &mut self,
        py: Python<'py>,
        path: &str,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let (text, rows) = self.metrics_text(py)?;
        std::fs::write(path, text).map_err(|e| PyOSError::new_err(format!("{path}: {e}")))?;
        Ok(rows)
    }

    /// The finished minutes as metrics.ndjson lines and as rows (see ``take_metrics``):
    /// the live sensor appends them with one write to a file it opened before giving up
    /// root, so the lines of its capture processes never mix.
    fn take_metrics_text<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyBytes>, Vec<Bound<'py, PyTuple>>)> {
        let (text, rows) = self.metrics_text(py)?;
        Ok((PyBytes::new(py, &text), rows))
    }

    fn edges<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let agg = &self.engine.ledger.aggregates;
        let mut out = Vec::with_capacity(agg.edges.len());
        for (k, e) in &agg.edges {
            let functions: Vec<(u32, &str, u64)> = e
                .functions
                .iter()
                .map(|((c, req), (n, _))| (*c, if *req { "request" } else { "response" }, *n))
                .collect();
            let units: Vec<u32> = e.unit_ids.iter().copied().collect();
            let ranges: Vec<(u32, String, Vec<[i64; 2]>)> = e
                .ranges
                .iter()
                .map(|((u, t), spans)| (*u, t.name(), spans.clone()))
                .collect();
            let objects: Vec<u8> = e.objects.iter().copied().collect();
            let cadence: Vec<(u32, f64, f64, u64)> = e
                .cadence
                .iter()
                .map(|(c, (f, l, n))| (*c, *f, *l, *n))
                .collect();
            let key = edge_tuple(agg, k);
            let counts = (
                e.first_seen,
                e.last_seen,
                e.packets,
                e.bytes,
                e.pdus,
                e.writes,
                e.requests,
            );
            let steady: Vec<u32> = e
                .functions
                .iter()
                .filter(|(_, (_, steady))| *steady)
                .map(|((c, _), _)| *c)
                .collect();
            let t = (
                key, counts, functions, units, ranges, objects, cadence, steady,
            );
            out.push(t.into_pyobject(py)?);
        }
        Ok(out)
    }
}

/// An edge's key as Python names it: (client, server, transport, port, protocol).
fn edge_tuple(
    agg: &crate::aggregate::Aggregates,
    k: &crate::aggregate::EdgeKey,
) -> (String, String, &'static str, u16, String) {
    (
        k.client.text(),
        k.server.text(),
        crate::metrics::transport(k.transport),
        k.port,
        agg.names.name(k.protocol).to_string(),
    )
}

/// Human-readable version of the core, for `otsec --version` and the summary.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Capture>()?;
    m.add_class::<Engine>()?;
    m.add_class::<Dissector>()?;
    m.add_function(wrap_pyfunction!(looks_like, m)?)?;
    m.add_function(wrap_pyfunction!(check_capture, m)?)?;
    m.add_function(wrap_pyfunction!(dnp3_crc, m)?)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add("FIELDS", crate::rules::FIELDS.to_vec())?;
    m.add("CONTEXT_FIELDS", crate::rules::CONTEXT_FIELDS.to_vec())?;
    m.add_function(wrap_pyfunction!(szl_identity, m)?)?;
    m.add("CaptureError", m.py().get_type::<CaptureError>())?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}

/// A rule's value from Python: int, bool, str, None, or a list/set of them.
fn to_val(v: &Bound<'_, PyAny>) -> PyResult<crate::rules::Val> {
    use crate::rules::Val;
    if v.is_none() {
        return Ok(Val::None);
    }
    if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
        return Ok(Val::Int(b.is_true() as i64));
    }
    if let Ok(i) = v.extract::<i64>() {
        return Ok(Val::Int(i));
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(Val::Str(s));
    }
    if let Ok(items) = v.try_iter() {
        let mut out = Vec::new();
        for item in items {
            out.push(to_val(&item?)?);
        }
        return Ok(Val::List(out));
    }
    Err(pyo3::exceptions::PyValueError::new_err(format!(
        "unsupported rule value {v}"
    )))
}

pub(crate) fn opt<'py, T: IntoPyObject<'py>>(
    d: &Bound<'py, PyDict>,
    k: &str,
    v: Option<T>,
) -> PyResult<()> {
    if let Some(v) = v {
        d.set_item(k, v)?;
    }
    Ok(())
}

/// The record's fields, named as the attributes of the Python event types (each
/// protocol module names its own).
fn fields<'py>(py: Python<'py>, ev: &Event) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match &ev.body {
        Body::Anomaly(a) => {
            d.set_item("protocol_name", a.protocol.name())?;
            d.set_item("kind", a.kind)?;
            d.set_item("detail", &a.detail)?;
        }
        body => {
            if let Some(record) = body.record() {
                record.py_fields(&d)?;
                if !record.anomalies().is_empty() {
                    d.set_item("anomalies", PyTuple::new(py, record.anomalies())?)?;
                }
            }
        }
    }
    Ok(d)
}

fn req_dict<'py>(py: Python<'py>, r: &Req) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("txn", r.txn)?;
    d.set_item("rosctr", r.rosctr)?;
    opt(&d, "function_code", r.function_code)?;
    opt(&d, "subfunction", r.subfunction)?;
    opt(&d, "group", r.group)?;
    opt(&d, "address", r.address)?;
    opt(&d, "quantity", r.quantity)?;
    d.set_item("accepted", r.accepted)?;
    Ok(d)
}

fn host_tuple<'py>(
    py: Python<'py>,
    agg: &crate::aggregate::Aggregates,
    ip: &Addr,
    h: &crate::aggregate::Host,
) -> PyResult<Bound<'py, PyTuple>> {
    let macs: Vec<(String, u64)> = h.macs.iter().map(|(m, n)| (mac_text(m), *n)).collect();
    let services: Vec<_> = h.services.iter().map(|s| service(agg, s)).collect();
    let uses: Vec<_> = h.uses.iter().map(|s| service(agg, s)).collect();
    let peers: Vec<String> = h.peers.iter().map(|p| p.text()).collect();
    let protocols: Vec<String> = h
        .protocols
        .iter()
        .map(|p| agg.names.name(*p).to_string())
        .collect();
    let vlans: Vec<i32> = h.vlans.iter().copied().collect();
    let evidence: Vec<(&str, u64)> = h.evidence.iter().map(|(k, v)| (*k, *v)).collect();
    let dnp3: Vec<u16> = h.dnp3_addresses.iter().copied().collect();
    (
        ip.text(),
        (h.first_seen, h.last_seen, h.packets, h.bytes),
        macs,
        services,
        uses,
        peers,
        protocols,
        vlans,
        evidence,
        dnp3,
    )
        .into_pyobject(py)
}

/// What decides a host's role: ((first seen, last seen), services, uses, evidence).
fn role_tuple<'py>(
    py: Python<'py>,
    agg: &crate::aggregate::Aggregates,
    h: &crate::aggregate::Host,
) -> PyResult<Bound<'py, PyTuple>> {
    let services: Vec<_> = h.services.iter().map(|s| service(agg, s)).collect();
    let uses: Vec<_> = h.uses.iter().map(|s| service(agg, s)).collect();
    let evidence: Vec<(&str, u64)> = h.evidence.iter().map(|(k, v)| (*k, *v)).collect();
    ((h.first_seen, h.last_seen), services, uses, evidence).into_pyobject(py)
}

/// A service as Python names it: (transport, port, protocol).
fn service(agg: &crate::aggregate::Aggregates, s: &Service) -> (&'static str, u16, String) {
    let t = match s.0 {
        6 => "tcp",
        17 => "udp",
        _ => "ip",
    };
    (t, s.1, agg.names.name(s.2).to_string())
}

/// What a record means, as decided when it was parsed: (code, writes, command, unit,
/// ranges [(table, start, count)], object groups).
type Meaning = (
    u32,
    bool,
    bool,
    Option<u32>,
    Vec<(String, i64, i64)>,
    Vec<u8>,
);

fn meaning(u: &crate::meaning::Use) -> Meaning {
    let ranges = u
        .ranges
        .iter()
        .map(|(t, s, c)| (t.name(), *s, *c))
        .collect();
    (
        u.code,
        u.writes,
        u.command,
        u.unit,
        ranges,
        u.groups.clone(),
    )
}

/// An edge as the baseline names it: "client -> server transport/port protocol".
fn edge_ref(e: &crate::watch::EdgeRef) -> String {
    let t = match e.2 {
        6 => "tcp",
        17 => "udp",
        _ => "ip",
    };
    format!(
        "{} -> {} {}/{} {}",
        e.0.text(),
        e.1.text(),
        t,
        e.3,
        e.4.name()
    )
}

fn parse_addr(s: &str) -> Option<Addr> {
    Some(match s.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) => Addr::new(&a.octets()),
        std::net::IpAddr::V6(a) => Addr::new(&a.octets()),
    })
}

fn parse_proto(name: &str) -> Option<crate::events::Proto> {
    crate::events::Proto::ALL
        .iter()
        .copied()
        .find(|p| p.name() == name)
}

/// The table a point's name gives (those with process values: Modbus tables, DNP3 groups).
fn table_named(name: &str) -> Option<crate::meaning::Table> {
    use crate::meaning::Table;
    if let Some(t) = crate::protocols::modbus::TABLES
        .iter()
        .find(|t| **t == name)
    {
        return Some(Table::Modbus(t));
    }
    name.strip_prefix('g')?.parse().ok().map(Table::Dnp3)
}

fn parse_edge(key: &str) -> Option<crate::watch::EdgeRef> {
    // "client -> server transport/port protocol"
    let parts: Vec<&str> = key.split(' ').collect();
    let [client, "->", server, tp, protocol] = parts[..] else {
        return None;
    };
    let (transport, port) = tp.split_once('/')?;
    let proto = parse_proto(protocol)?;
    let transport = match transport {
        "tcp" => 6,
        "udp" => 17,
        _ => return None,
    };
    Some((
        parse_addr(client)?,
        parse_addr(server)?,
        transport,
        port.parse().ok()?,
        proto,
    ))
}

fn mac(m: &Option<[u8; 6]>) -> Option<String> {
    m.as_ref().map(|m| mac_text(m))
}

fn view<'py>(py: Python<'py>, v: &FlowSnapshot) -> PyResult<Bound<'py, PyTuple>> {
    (
        (v.ips[0].clone(), v.ips[1].clone()),
        (v.ports[0], v.ports[1]),
        v.proto,
        (mac(&v.macs[0]), mac(&v.macs[1])),
        v.vlan,
        v.client,
        v.protocol,
        v.community_id.clone(),
    )
        .into_pyobject(py)
}

fn fact<'py>(py: Python<'py>, f: &Fact) -> PyResult<Bound<'py, PyTuple>> {
    match f {
        Fact::Event {
            flow,
            view: v,
            ts,
            frame,
            ev,
            found,
        } => {
            let v = match v {
                Some(v) => Some(view(py, v)?),
                None => None,
            };
            let req = match &ev.req {
                Some(r) => Some(req_dict(py, r)?),
                None => None,
            };
            let proto = if matches!(ev.body, Body::Anomaly(_)) {
                "anomaly"
            } else {
                ev.protocol().name()
            };
            (
                proto,
                *flow,
                v,
                *ts,
                *frame,
                ev.from_client,
                fields(py, ev)?,
                ev.txn,
                req,
                found.hits.clone(),
                (
                    found.request_index,
                    found.rate,
                    found.meaning.as_ref().map(meaning),
                    found
                        .values
                        .iter()
                        .map(|d| (d.table.name(), d.address, d.value, d.learned, d.new_writer))
                        .collect::<Vec<_>>(),
                ),
            )
                .into_pyobject(py)
        }
        Fact::View { flow, view: v } => ("view", *flow, view(py, v)?).into_pyobject(py),
        Fact::Tick { now, last } => (
            "tick",
            *now,
            last.iter()
                .map(|(e, t)| (edge_ref(e), *t))
                .collect::<Vec<_>>(),
        )
            .into_pyobject(py),
        Fact::Arp { mac, ip, ts } => {
            ("arp", mac_text(mac), Addr::new(ip).text(), *ts).into_pyobject(py)
        }
        Fact::Probe(Probe::Flood {
            server,
            port,
            flows,
            sources,
            first,
            last,
        }) => (
            "flood",
            server.text(),
            *port,
            *flows,
            *sources,
            *first,
            *last,
        )
            .into_pyobject(py),
        Fact::Availability(c) => (
            if c.up { "up" } else { "down" },
            c.device.text(),
            c.proto.name(),
            c.since,
            c.at,
            c.requests,
            c.refused,
        )
            .into_pyobject(py),
        Fact::Probe(Probe::Scan {
            source,
            targets,
            hosts,
            ports,
            first,
            last,
        }) => (
            "scan",
            source.text(),
            *targets,
            *hosts,
            *ports,
            *first,
            *last,
        )
            .into_pyobject(py),
    }
}

impl Engine {
    #[allow(clippy::type_complexity)]
    fn metrics_text<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<(Vec<u8>, Vec<Bound<'py, PyTuple>>)> {
        let rows = std::mem::take(&mut self.engine.ledger.aggregates.metrics.rows);
        let agg = &self.engine.ledger.aggregates;
        let mut text = Vec::new();
        crate::metrics::write(&rows, &agg.names, &self.engine.ledger.stamp, &mut text)
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let rows = rows
            .iter()
            .map(|r| {
                (
                    edge_tuple(agg, &r.edge),
                    r.start,
                    (r.requests, r.answers, r.refused, r.unanswered),
                    (r.p50, r.p95, r.max),
                    (r.period, r.jitter),
                    (
                        r.tcp.connections,
                        r.tcp.retransmissions,
                        r.tcp.resets,
                        r.tcp.zero_windows,
                    ),
                )
                    .into_pyobject(py)
            })
            .collect::<PyResult<_>>()?;
        Ok((text, rows))
    }
}

/// A whole number stays whole (registers, coils, codes), anything else is a float.
fn number<'py>(py: Python<'py>, v: f64) -> PyResult<Bound<'py, PyAny>> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Ok((v as i64).into_pyobject(py)?.into_any())
    } else {
        Ok(v.into_pyobject(py)?.into_any())
    }
}

fn value_row<'py>(
    py: Python<'py>,
    row: &crate::values::Row,
    history: Option<&crate::values::History>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (device, proto, unit, table, address) = row.key;
    let read = row
        .read
        .map(|r| (r.reads, r.last, r.min, r.max, r.changes, r.last_ts));
    let written = row.written.as_ref().map(|w| {
        let writers: Vec<(String, u64)> = w.writers.iter().map(|(a, n)| (a.text(), *n)).collect();
        (
            w.writes,
            w.last,
            w.min,
            w.max,
            w.last_ts,
            writers,
            w.other_writes,
        )
    });
    let history: Vec<(f64, f64)> = history
        .map(|h| h.iter().copied().collect())
        .unwrap_or_default();
    (
        device.text(),
        proto.name(),
        unit,
        table.name(),
        address,
        read,
        written,
        history,
    )
        .into_pyobject(py)
}

/// Of the points changed but never written, the first `n` by device (as text), unit, table
/// (by name) and address (the order the report lists them in), marked by their place in
/// `rows`.
fn only_changed_shown(rows: &[crate::values::Row], n: usize) -> Vec<bool> {
    // devices and tables ranked by their texts, so that comparing is comparing numbers
    let mut devices: Vec<(String, crate::decode::Addr)> = Vec::new();
    let mut tables: Vec<(String, crate::meaning::Table)> = Vec::new();
    for r in rows {
        let (device, _, _, table, _) = r.key;
        if devices.last().is_none_or(|(_, d)| *d != device) {
            devices.push((device.text(), device));
        }
        if !tables.iter().any(|(_, t)| *t == table) {
            tables.push((table.name(), table));
        }
    }
    devices.sort_unstable();
    tables.sort_unstable();
    let device_rank: rustc_hash::FxHashMap<_, _> = devices
        .iter()
        .enumerate()
        .map(|(i, (_, d))| (*d, i))
        .collect();
    let mut only: Vec<(usize, u32, usize, u32, usize)> = Vec::new();
    let mut last: Option<(crate::decode::Addr, usize, crate::meaning::Table, usize)> = None;
    for (i, r) in rows.iter().enumerate() {
        if r.written.is_some() || r.read.is_none_or(|x| x.changes == 0) {
            continue;
        }
        let (device, _, unit, table, address) = r.key;
        let (d, t) = match last {
            Some((ld, d, lt, t)) if ld == device && lt == table => (d, t),
            _ => {
                let d = device_rank[&device];
                let at = tables.iter().position(|(_, x)| *x == table).unwrap_or(0);
                let t = tables.iter().position(|(name, _)| *name == tables[at].0);
                let t = t.unwrap_or(at); // tables of one name rank together
                last = Some((device, d, table, t));
                (d, t)
            }
        };
        only.push((d, unit, t, address, i));
    }
    if only.len() > n {
        only.select_nth_unstable(n);
        only.truncate(n);
    }
    let mut shown = vec![false; rows.len()];
    for (.., i) in only {
        shown[i] = true;
    }
    shown
}

/// A point as the asset document lists it (see otsec/process); ``names``: the texts of
/// its table and protocol, made once per table.
fn point_document<'py>(
    py: Python<'py>,
    row: &crate::values::Row,
    names: &(Bound<'py, PyString>, Bound<'py, PyString>),
) -> PyResult<Bound<'py, PyDict>> {
    use pyo3::intern;
    let (_, _, unit, _, address) = row.key;
    let d = PyDict::new(py);
    d.set_item(intern!(py, "protocol"), &names.0)?;
    d.set_item(intern!(py, "unit"), unit)?;
    d.set_item(intern!(py, "table"), &names.1)?;
    d.set_item(intern!(py, "address"), address)?;
    if let Some(r) = row.read {
        d.set_item(intern!(py, "reads"), r.reads)?;
        d.set_item(intern!(py, "last"), number(py, r.last)?)?;
        d.set_item(intern!(py, "min"), number(py, r.min)?)?;
        d.set_item(intern!(py, "max"), number(py, r.max)?)?;
        d.set_item(intern!(py, "changes"), r.changes)?;
    }
    if let Some(w) = &row.written {
        d.set_item(intern!(py, "writes"), w.writes)?;
        d.set_item(intern!(py, "written"), number(py, w.last)?)?;
        d.set_item(intern!(py, "written_min"), number(py, w.min)?)?;
        d.set_item(intern!(py, "written_max"), number(py, w.max)?)?;
        let mut writers: Vec<String> = w.writers.iter().map(|(a, _)| a.text()).collect();
        writers.sort();
        d.set_item(intern!(py, "writers"), writers)?;
    }
    Ok(d)
}
