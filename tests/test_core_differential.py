"""The compiled core against the Python engine it replaces: the same PDU events, counters
and flows on every sample and every corpus capture (fields compared as parsed JSON)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from otsec import _core
from tests.oracle import CORPUS, corpus_rows
from tests.pyengine.capture_files import CaptureReader
from tests.pyengine.engine import Engine
from tests.pyengine.files import EventFiles

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "pcaps").glob("*.pcap"))
ROWS = corpus_rows()


def python_engine(path: Path, out: Path) -> tuple[Engine, list[bytes]]:
    files = EventFiles(out)
    engine = Engine([files])
    with CaptureReader(path) as reader:
        for pkt in reader:
            engine.packet(*pkt)
    engine.finish()
    files.close()
    return engine, (out / "events.ndjson").read_bytes().splitlines()


def core_engine(path: Path, out: Path) -> tuple[dict, list[bytes]]:
    capture = _core.Capture(str(path))
    engine = _core.Engine(events=str(out / "core-events.ndjson"))
    while engine.feed(capture):
        pass
    engine.finish()
    return engine.stats(), (out / "core-events.ndjson").read_bytes().splitlines()


def compare(path: Path, tmp: Path) -> None:
    py, py_lines = python_engine(path, tmp)
    stats, core_lines = core_engine(path, tmp)
    assert len(core_lines) == len(py_lines), f"{path}: {len(core_lines)} != {len(py_lines)} PDUs"
    for i, (a, b) in enumerate(zip(py_lines, core_lines, strict=True)):
        assert orjson.loads(a) == orjson.loads(b), f"{path}: event {i + 1} differs"
    st = py.stats
    assert stats["packets"] == st.packets and stats["bytes"] == st.bytes
    assert stats["pdus"] == dict(st.pdus)
    assert stats["anomalies"] == dict(st.anomalies)
    for name in ("tcp_packets", "udp_packets", "arp_packets", "not_ip", "invalid", "other_ip",
                 "unrecognised_on_ot_port"):
        assert stats[name] == getattr(st, name), name
    assert stats["ip_fragments"] == st.ip_fragments
    assert stats["flows"]["created"] == py.flows.stats.created
    assert stats["flows"]["peak"] == py.flows.stats.peak
    for name in ("gaps", "skipped_bytes", "retransmitted_bytes", "out_of_order_segments"):
        assert stats["reassembly"][name] == getattr(py.reassembly, name), name


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_samples_give_the_same_events(path: Path, tmp_path: Path) -> None:
    compare(path, tmp_path)


@pytest.mark.corpus
@pytest.mark.skipif(not ROWS, reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("row", ROWS, ids=[r["local_path"] for r in ROWS])
def test_corpus_gives_the_same_events(row: dict[str, str], tmp_path: Path) -> None:
    compare(CORPUS / row["local_path"], tmp_path)
