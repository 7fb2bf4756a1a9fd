//! The Python binding: `otsec._core`. Python keeps policy and output; this module hands it
//! counters and writes the per-PDU lines itself.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::engine::{Config, Engine as CoreEngine};
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
}

/// The packet path for one capture process.
#[pyclass(module = "otsec._core")]
pub struct Engine {
    engine: CoreEngine,
}

fn lines(path: Option<&str>) -> PyResult<Option<Lines>> {
    path.map(|p| Lines::create(p).map_err(|e| PyOSError::new_err(format!("{p}: {e}"))))
        .transpose()
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (max_flows=200_000, events=None, anomalies=None))]
    fn new(max_flows: usize, events: Option<&str>, anomalies: Option<&str>) -> PyResult<Self> {
        let mut engine = CoreEngine::new(Config { max_flows });
        engine.events = lines(events)?;
        engine.anomalies = lines(anomalies)?;
        Ok(Engine { engine })
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
        let more = py.detach(|| {
            let mut more = true;
            for _ in 0..chunks.max(1) {
                more = reader.next_chunk(&mut |p| engine.packet(p));
                if !more {
                    break;
                }
            }
            more
        });
        if let Some(e) = self.engine.io_error.take() {
            return Err(PyOSError::new_err(e));
        }
        Ok(more)
    }

    /// One packet (the live sensor, tests).
    fn packet(&mut self, ts: f64, linktype: u32, data: &[u8], wirelen: u32) {
        self.engine.packet(Packet {
            ts,
            linktype,
            data,
            wirelen,
        });
    }

    /// End every flow and flush the files.
    fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        let engine = &mut self.engine;
        py.detach(|| engine.finish());
        match self.engine.io_error.take() {
            Some(e) => Err(PyOSError::new_err(e)),
            None => Ok(()),
        }
    }

    /// The counters, as plain Python values.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.engine.stats;
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
        d.set_item("pdus", s.pdus.clone())?;
        d.set_item("anomalies", s.anomalies.clone())?;
        let r = &self.engine.reassembly;
        let ra = PyDict::new(py);
        ra.set_item("gaps", r.gaps)?;
        ra.set_item("skipped_bytes", r.skipped_bytes)?;
        ra.set_item("retransmitted_bytes", r.retransmitted_bytes)?;
        ra.set_item("out_of_order_segments", r.out_of_order_segments)?;
        d.set_item("reassembly", ra)?;
        let f = self.engine.flow_stats();
        let fl = PyDict::new(py);
        fl.set_item("created", f.created)?;
        fl.set_item("peak", f.peak)?;
        fl.set_item("expired", f.expired)?;
        fl.set_item("evicted_when_full", f.evicted_full)?;
        fl.set_item("live", self.engine.flows.live)?;
        d.set_item("flows", fl)?;
        let events = self.engine.events.as_ref().map(|l| l.count).unwrap_or(0);
        d.set_item("events_written", events)?;
        Ok(d)
    }
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
    m.add("CaptureError", m.py().get_type::<CaptureError>())?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    let _ = PyValueError::new_err("");
    Ok(())
}
