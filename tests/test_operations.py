"""The operations view: response times per edge and minute, checked against tshark's
frame times paired by transaction id, and requests that were never answered."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from otsec.audit import run_audit
from tests import pcapgen as g
from tests.helpers import Conversation, read_holding

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.ndjson").read_text().splitlines()]


def tshark_latencies(path: Path) -> dict[int, list[float]]:
    """Modbus response times (ms) per minute, from tshark's frame times and transaction ids."""
    rows = subprocess.run(
        [TSHARK or "tshark", "-r", str(path), "-Y", "mbtcp", "-T", "fields", "-e",
         "frame.time_epoch", "-e", "tcp.stream", "-e", "tcp.dstport", "-e", "mbtcp.trans_id"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    asked: dict[tuple[str, str], float] = {}
    out: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        ts, stream, dport, tid = row.split("\t")[:4]
        for one in tid.split(","):
            if dport == "502":
                asked[(stream, one)] = float(ts)
            elif (stream, one) in asked:
                t0 = asked.pop((stream, one))
                out[int(t0 // 60 * 60)].append((float(ts) - t0) * 1000)
    return out


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", ["modbus-normal.pcap", "modbus-intrusion.pcap",
                                  "modbus-operations.pcap"])
def test_response_times_agree_with_tshark(name: str, tmp_path: Path) -> None:
    cap = ROOT / "pcaps" / name
    run_audit([cap], tmp_path, write_events=False)
    theirs = tshark_latencies(cap)
    ours = {}
    for d in metrics(tmp_path):
        if d["network"]["protocol"] != "modbus":
            continue
        minute = int(json_time(d["@timestamp"]))
        ours.setdefault(minute, []).append(d["otsec"]["metrics"])
    assert ours and set(ours) <= set(theirs) | {m + 60 for m in theirs}
    total = sum(m["responses"] for ms in ours.values() for m in ms)
    assert total == sum(len(v) for v in theirs.values())
    for minute, ms in ours.items():
        times = sorted(theirs.get(minute, []))
        for m in ms:
            if times and len(ms) == 1:
                rt = m["response_time_ms"]
                assert rt["max"] == pytest.approx(times[-1], abs=0.01)
                # the sample nearest the rank, halves rounded up
                assert rt["p50"] == pytest.approx(times[int((len(times) - 1) * 0.5 + 0.5)],
                                                   abs=0.01)


def json_time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_unanswered_requests_and_exceptions_are_counted(tmp_path: Path) -> None:
    c = Conversation()
    for tid in range(10):
        c.send(True, read_holding(tid))
        if tid < 6:
            c.send(False, g.mbap(tid, 1, bytes([3, 4, 0, 1, 0, 2])))
        elif tid < 8:
            c.send(False, g.mbap(tid, 1, bytes([0x83, 2])))  # illegal data address
    cap = tmp_path / "in.pcap"
    cap.write_bytes(g.pcap([(1_700_000_000 + i * 0.1, f) for i, f in enumerate(c.frames)]))
    result = run_audit([cap], tmp_path / "o", write_events=False)
    (m,) = [d["otsec"]["metrics"] for d in metrics(tmp_path / "o")]
    assert (m["requests"], m["responses"], m["exceptions"], m["unanswered"]) == (10, 8, 2, 2)
    assert m["response_time_ms"]["p50"] == pytest.approx(100.0, abs=0.01)
    ops = result.summary["operations"]
    assert (ops["requests"], ops["unanswered"]) == (10, 2)
    assert ops["slowest"][0]["server"] == "10.0.0.10"
    page = (tmp_path / "o" / "report.html").read_text()
    assert "<h2>Operations</h2><p>10 requests, 8 responses (2 exceptions), 2 never" in page


def test_tcp_health_of_a_connection_agrees_with_tshark(tmp_path: Path) -> None:
    """New connections, a segment sent again, a zero window and a reset: counted into the
    edge's minute, as tshark's TCP analysis counts them."""
    c = Conversation()
    for tid in range(3):
        request = read_holding(tid)
        c.send(True, request)
        if tid == 1:  # the request again, same sequence number: a retransmission
            c.frames.append(c._f(True, 0x18, request, seq=c.cseq - len(request)))
        c.send(False, g.mbap(tid, 1, bytes([3, 4, 0, 1, 0, 2])))
    c.frames.append(c._f(False, 0x10, b"", window=0))  # the PLC cannot take more
    c.frames.append(c._f(True, 0x04, b""))  # the client resets
    cap = tmp_path / "in.pcap"
    cap.write_bytes(g.pcap([(1_700_000_000 + i * 0.1, f) for i, f in enumerate(c.frames)]))
    result = run_audit([cap], tmp_path / "o", write_events=False)
    (m,) = [d["otsec"]["metrics"] for d in metrics(tmp_path / "o")]
    ours = m["tcp"]
    assert ours == {"connections": 1, "retransmissions": 1, "resets": 1, "zero_windows": 1}
    assert result.summary["operations"]["tcp"] == ours
    if TSHARK:
        rows = subprocess.run([TSHARK, "-r", str(cap), "-T", "fields", "-e", "tcp.flags.syn",
                               "-e", "tcp.flags.ack", "-e", "tcp.flags.reset", "-e",
                               "tcp.analysis.retransmission", "-e", "tcp.analysis.zero_window"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
        fields = [r.split("\t") for r in rows]
        assert sum(f[0] == "1" and f[1] == "0" for f in fields) == ours["connections"]
        assert sum(f[2] == "1" for f in fields) == ours["resets"]
        assert sum(f[3] != "" for f in fields) == ours["retransmissions"]
        assert sum(f[4] != "" for f in fields) == ours["zero_windows"]
