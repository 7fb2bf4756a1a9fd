"""Broken capture files and hostile strings: the audit goes on or fails with one clear line,
never looks clean when nothing was analysed, and never lets wire text drive a terminal."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from otsec.text import printable
from tests import pcapgen as g
from tests.helpers import Conversation, read_holding

ROOT = Path(__file__).resolve().parents[1]
NORMAL = ROOT / "pcaps" / "modbus-normal.pcap"


def otsec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otsec", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def polling_frames(n: int = 4) -> list[bytes]:
    c = Conversation()
    for tid in range(n):
        c.send(True, read_holding(tid))
        c.send(False, g.mbap(tid, 1, bytes([3, 4, 0, 1, 0, 2])))
    return c.frames


def assert_one_line_failure(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def idb_with(options: bytes) -> bytes:
    return g._block("<", 1, struct.pack("<HHI", 1, 0, 262144) + options + b"\0\0\0\0")


def epb(ticks: int, data: bytes) -> bytes:
    return g._block("<", 6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                        len(data), len(data)) + data)


SHB = g._block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


@pytest.mark.parametrize(("idb", "ticks", "first"), [
    # if_tsresol 0 (seconds): every time impossible, read as microseconds
    (idb_with(struct.pack("<HHB3x", 9, 1, 0)), 1_700_000_000_000_000, 1_700_000_000.0),
    # if_tsoffset -2^63: read without it
    (idb_with(struct.pack("<HHq", 14, 8, -2**63)), 1_700_000_000_000_000, 1_700_000_000.0),
    # a time no option explains: the first record has no earlier time to take
    (idb_with(b""), 2**64 - 100, 0.0),
], ids=["tsresol-0", "tsoffset-min", "no-time-before"])
def test_impossible_timestamps_are_repaired_and_counted(tmp_path: Path, idb: bytes, ticks: int,
                                                        first: float) -> None:
    frames = polling_frames()
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(SHB + idb + b"".join(epb(ticks + i, f) for i, f in enumerate(frames)))
    out = tmp_path / "o"
    proc = otsec("audit", str(bad), "--out", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["packets"] == len(frames) and summary["pdus"] == {"modbus": 8}
    repaired = summary["repaired"]
    if first:
        assert summary["capture"]["start"] == "2023-11-14T22:13:20.000000Z"
        assert repaired["interfaces"] == 1 and repaired["times"] == 0
        assert any("interface 0: its timestamp options give impossible times" in w
                   for w in summary["warnings"])
    else:
        assert repaired["times"] == len(frames)


def test_good_packets_around_damaged_records_are_kept(tmp_path: Path) -> None:
    frames = polling_frames()
    t0 = 1_700_000_000_000_000
    ok = SHB + idb_with(b"") + b"".join(epb(t0 + i, f) for i, f in enumerate(frames))
    short = g._block("<", 6, struct.pack("<II", 0, 0))  # an EPB shorter than its header
    f = tmp_path / "x.pcapng"
    f.write_bytes(ok + short + epb(2**63, frames[0]) + epb(t0 + 99, frames[1]))
    out = tmp_path / "o"
    proc = otsec("audit", str(f), "--out", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["packets"] == len(frames) + 2
    assert summary["capture"]["end"] == "2023-11-14T22:13:20.000099Z"
    assert any("bad packet block at packet 11 skipped" in w for w in summary["warnings"])
    assert any("1 records with an impossible time were given the last possible time" in w
               for w in summary["warnings"])
    assert summary["repaired"] | {"blocks": 1, "times": 1} == summary["repaired"]


def test_a_zero_length_record_is_read_and_reading_goes_on(tmp_path: Path) -> None:
    frames = polling_frames()
    data = g.pcap([(1.0, frames[0]), (2.0, frames[1]), (3.0, b""), (4.0, frames[2])])
    f = tmp_path / "z.pcap"
    f.write_bytes(data)
    out = tmp_path / "o"
    assert otsec("audit", str(f), "--out", str(out)).returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["packets"] == 4  # as Wireshark reads it
    assert summary["repaired"]["empty"] == 1


@pytest.mark.parametrize(("content", "needle"), [
    (g.pcap([(1.0, b"\x01" * 60)] * 3, linktype=147), "no packet has a link type otsec reads"),
    (g.pcap([]) + bytes(range(256)) * 40, "no valid record (the file is corrupt)"),
    (g.gz(g.pcap([]) + bytes(2_000_000)), "no valid record (the file is corrupt)"),
    (g.pcap([]), "no packets"),
], ids=["unknown-link-type", "random-after-header", "gzip-of-zeros", "empty"])
def test_nothing_analysable_is_an_error(tmp_path: Path, content: bytes, needle: str) -> None:
    f = tmp_path / "in.pcap"
    f.write_bytes(content)
    out = tmp_path / "o"
    assert_one_line_failure(otsec("audit", str(f), "--out", str(out)), needle)
    assert not (out / "summary.json").exists()
    assert_one_line_failure(otsec("learn", str(f), "--baseline", str(tmp_path / "b.json")),
                            needle)


def test_an_unreadable_input_among_good_ones_is_a_warning_and_a_summary_field(
        tmp_path: Path) -> None:
    bad = tmp_path / "j1939.pcap"
    bad.write_bytes(g.pcap([(1.0, b"\x01" * 20)], linktype=144))
    out = tmp_path / "o"
    proc = otsec("audit", str(NORMAL), str(bad), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "nothing analysed" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unreadable"] == [
        {"file": str(bad), "reason": "no packet has a link type otsec reads"}]


HOSTILE = "[/][bold red]x\x1b[2J\x1b]8;;http://evil.example\x07click\x1b]8;;\x07\u202eexe.pdf"


def test_printable_spells_out_controls_and_bounds_length() -> None:
    text = printable(HOSTILE)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[2J" in text and "\\u202e" in text
    long = printable("A" * 10_000)
    assert len(long) < 600 and long.endswith("…[9488 more characters]")


def device_identity_capture(path: Path, product: bytes) -> None:
    c = Conversation()
    c.send(True, g.mbap(1, 1, bytes([43, 14, 1, 0])))
    objs = b"".join(bytes([i, len(v)]) + v for i, v in enumerate([b"Evil", product, b"1.0"]))
    c.send(False, g.mbap(1, 1, bytes([43, 14, 1, 0x81, 0, 0, 3]) + objs))
    c.send(True, g.mbap(2, 1, bytes([6, 0, 1, 0, 9])))  # a write, so that an alert prints
    c.send(False, g.mbap(2, 1, bytes([6, 0, 1, 0, 9])))
    path.write_bytes(g.pcap([(1.0 + i, f) for i, f in enumerate(c.frames)]))


def test_wire_strings_reach_terminal_report_and_baseline_escaped(tmp_path: Path) -> None:
    product = HOSTILE.encode("latin-1", "replace")[:200]
    cap = tmp_path / "ident.pcap"
    device_identity_capture(cap, product)
    out = tmp_path / "o"
    proc = otsec("audit", str(cap), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assets = json.loads((out / "assets.json").read_text())
    assert any(d.get("device", {}).get("model", {}).get("identifier", "").startswith("[/]")
               for d in assets)  # the documents keep the value as the device sent it
    page = (out / "report.html").read_text()
    assert "\x1b" not in page and "\\x1b[2J" in page and "[/][bold red]x" in page
    base = tmp_path / "b.json"
    assert otsec("learn", str(cap), "--baseline", str(base)).returncode == 0
    shown = otsec("baseline", "show", str(base))
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "Traceback" not in shown.stderr


def test_anomalies_inside_parsed_pdus_are_counted_and_aggregated(tmp_path: Path) -> None:
    c = Conversation()
    for tid in range(12):  # function code 0: invalid, yet a PDU with a record of its own
        c.send(True, g.mbap(tid, 1, bytes([0, 0, 1])))
        c.send(False, g.mbap(tid, 1, bytes([0x80, 1])))
    cap = tmp_path / "fc0.pcap"
    cap.write_bytes(g.pcap([(1.0 + i, f) for i, f in enumerate(c.frames)]))
    out = tmp_path / "o"
    proc = otsec("audit", str(cap), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    found = summary["pdu_anomalies"]
    assert found and all(k.startswith("modbus.") for k in found)
    assert sum(found.values()) >= 12
    assert f"({sum(found.values())} in parsed PDUs)" in proc.stdout  # not "0"
    rows = [json.loads(x) for x in (out / "anomalies.ndjson").read_text().splitlines()]
    assert rows and all(r["otsec"]["anomaly"]["count"] >= 1 for r in rows)
    assert sum(r["otsec"]["anomaly"]["count"] for r in rows) == sum(found.values())
