"""Process values, device availability, response times and polling cycles, on the
operations sample made by real stacks (scripts/make_samples.py): an operator adjusts a
setpoint within 40-60 every half second while a SCADA station polls once a second, the
operator's host then writes 950 into it, then the PLC hangs (its process stopped), comes
back, is slowed (stopped 0.35 s of every 0.7 s), the operator stops polling, and a SYN
flood hits the PLC. The steps' times are in pcaps/modbus-operations.json."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from otsec.audit import run_audit, run_learn
from otsec.baseline.edit import approve
from otsec.baseline.model import Baseline
from otsec.pipeline import Pipeline
from otsec.process import ProcessValues, process_values
from otsec.timefmt import epoch

ROOT = Path(__file__).resolve().parents[1]
CAP = ROOT / "pcaps" / "modbus-operations.pcap"
STEPS = json.loads(CAP.with_suffix(".json").read_text())
TSHARK = shutil.which("tshark")
PLC, HMI, SCADA, INTRUDER = "10.77.0.10", "10.77.0.20", "10.77.0.30", "10.77.0.66"
SETPOINT = 20


def tshark(*args: str) -> list[list[str]]:
    out = subprocess.run([TSHARK or "tshark", "-r", str(CAP), *args], capture_output=True,
                         text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def alerts(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()]


def every_point(cap: Path = CAP) -> ProcessValues:
    """The process values of a capture, with the points whose value never changed."""
    pipe = Pipeline(events=False)
    pipe.run([cap])
    pipe.finish()
    return process_values(pipe.core, constant=True)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_values_read_and_written_agree_with_tshark() -> None:
    values = every_point()
    ours = {(d["table"], d["address"]): d for d in values.documents[PLC]}
    reads = tshark("-Y", "modbus.func_code==3 && tcp.srcport==502", "-T", "fields",
                   "-e", "modbus.regnum16", "-e", "modbus.regval_uint16")
    seen: dict[int, list[int]] = {}
    for numbers, found in reads:
        for n, v in zip(numbers.split(","), found.split(","), strict=True):
            seen.setdefault(int(n), []).append(int(v))
    assert seen
    for address, read in seen.items():
        d = ours[("holding_registers", address)]
        changes = sum(1 for a, b in itertools.pairwise(read) if a != b)
        assert (d["reads"], d["last"], d["min"], d["max"], d["changes"]) == (
            len(read), read[-1], min(read), max(read), changes), address
    writes = tshark("-Y", "modbus.func_code==6 && tcp.dstport==502", "-T", "fields",
                    "-e", "ip.src", "-e", "modbus.reference_num", "-e", "modbus.data")
    written = [int(data.replace(":", ""), 16) for _src, _ref, data in writes]
    assert {(src, int(ref)) for src, ref, _ in writes} == {(HMI, SETPOINT)}
    (p,) = values.points  # the one point written (or changing): the setpoint
    assert (p.device, p.table, p.address) == (PLC, "holding_registers", SETPOINT)
    assert (p.writes, p.written, p.written_min, p.written_max, p.writers) == (
        len(written), written[-1], 40, 950, {HMI: len(written)})
    assert (values.written, values.changing) == (1, 1)
    held = [d for d in values.documents[PLC] if d["table"] == "holding_registers"]
    assert len(held) == len(seen)  # and the SCADA station's coils and input registers
    assert values.total == len(values.documents[PLC]) == len(seen) + 16 + 8
    assert values.documents[PLC][0]["address"] == SETPOINT  # the telling point first
    # its last values (written and read back), oldest first: what the report draws
    times = [t for t, _ in p.history]
    assert len(p.history) == 32 and times == sorted(times)
    assert {v for _, v in p.history} <= set(written) | {SETPOINT}


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_a_slowed_plc_shows_in_the_response_times(tmp_path: Path) -> None:
    """Response times of the requests sent while the PLC was slowed, from tshark's frame
    times paired by transaction id: slow; the minute that holds them has a p95 as slow."""
    asked: dict[tuple[str, str], float] = {}
    slowed = []
    for ts, stream, dport, tid in tshark("-Y", "mbtcp", "-T", "fields", "-e",
                                         "frame.time_epoch", "-e", "tcp.stream", "-e",
                                         "tcp.dstport", "-e", "mbtcp.trans_id"):
        if dport == "502":
            asked[(stream, tid)] = float(ts)
        elif (stream, tid) in asked:
            sent = asked.pop((stream, tid))
            if STEPS["slow"] <= sent <= STEPS["slow_end"]:
                slowed.append(float(ts) - sent)
    slowed.sort()
    assert len(slowed) > 10 and slowed[int(len(slowed) * 0.9)] > 0.1
    run_audit([CAP], tmp_path, write_events=False)
    minute = int(STEPS["slow"] // 60 * 60)
    rows = [json.loads(x) for x in (tmp_path / "metrics.ndjson").open()]
    (row,) = [r["otsec"]["metrics"] for r in rows if r["source"]["ip"] == HMI
              and epoch(r["@timestamp"]) == minute]
    assert row["response_time_ms"]["p95"] > 100


def audit_learning_until_tamper(out: Path) -> list[dict]:
    """Learning from the first record (an ARP claim before the operator starts) until just
    before the setpoint is tampered with."""
    run_audit([CAP], out, learn_for=STEPS["tamper"] - STEPS["start"] - 0.5)
    return alerts(out)


def test_a_setpoint_written_out_of_its_learned_range_and_a_hung_plc(tmp_path: Path) -> None:
    found = audit_learning_until_tamper(tmp_path)
    by_rule: dict[str, list[dict]] = {}
    for a in found:
        by_rule.setdefault(a["rule"]["id"], []).append(a)
    # the operator's own adjustments within 40-60 were learned: only 950 deviates
    (value,) = by_rule.pop("otsec-baseline-value-out-of-range")
    assert (value["source"]["ip"], value["destination"]["ip"]) == (HMI, PLC)
    assert abs(epoch(value["event"]["start"]) - STEPS["tamper"]) < 1.0
    assert value["otsec"]["alert"]["count"] == 1
    assert value["message"] == (f"{HMI} wrote 950 into unit 1 holding_registers 20 (learned "
                                f"40..60) on {PLC}; the device accepted it.")
    assert value["threat"]["technique"]["id"] == ["T0836", "T0831"]
    assert value["otsec"]["baseline"]["state"] == "protecting"
    # the PLC left requests unanswered from when it hung until it came back
    (down,) = by_rule.pop("otsec-net-device-unresponsive")
    assert down["source"]["ip"] == PLC
    found_at = epoch(down["event"]["start"])
    assert STEPS["hang"] + 10 <= found_at <= STEPS["resume"]
    assert abs(epoch(down["event"]["end"]) - STEPS["resume"]) < 2.0
    assert "answered again after" in down["message"]
    # the operator stopped polling: its learned cycle went silent 30 s later
    (silent,) = by_rule.pop("otsec-baseline-silent-edge")
    assert (silent["source"]["ip"], silent["destination"]["ip"]) == (HMI, PLC)
    assert 30 <= epoch(silent["event"]["start"]) - STEPS["poller_stops"] <= 37
    # the SYN flood, and its sender, new to the baseline
    (flood,) = by_rule.pop("otsec-net-connection-flood")
    assert flood["destination"]["ip"] == PLC and flood["otsec"]["alert"]["count"] == 1000
    assert abs(epoch(flood["event"]["start"]) - STEPS["flood"]) < 1.5
    (new,) = by_rule.pop("otsec-baseline-new-asset")
    assert new["source"]["ip"] == INTRUDER
    # what remains was raised while learning (the signature rule on writes)
    assert set(by_rule) <= {"otsec-modbus-write"}
    assert all(epoch(a["event"]["start"]) < STEPS["tamper"] for a in by_rule["otsec-modbus-write"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    (outage,) = summary["operations"]["outages"]
    assert outage["device"] == PLC and abs(epoch(outage["since"]) - STEPS["hang"]) < 1.5
    assert abs(epoch(outage["back"]) - STEPS["resume"]) < 2.0
    assert summary["operations"]["devices_down"] == 0
    assert summary["operations"]["points"]["written"] == 1
    # the device's points are in its asset document, the written one first
    plc = next(d for d in json.loads((tmp_path / "assets.json").read_text())
               if d["host"]["ip"] == [PLC])
    first = plc["otsec"]["asset"]["points"][0]
    assert (first["table"], first["address"], first["written_max"], first["writers"]) == (
        "holding_registers", SETPOINT, 950, [HMI])
    page = (tmp_path / "report.html").read_text()
    assert "unit 1 holding_registers 20" in page and "<polyline" in page


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_the_polling_cycle_of_each_minute_agrees_with_tshark(tmp_path: Path) -> None:
    run_audit([CAP], tmp_path, write_events=False)
    rows = [json.loads(x) for x in (tmp_path / "metrics.ndjson").read_text().splitlines()]
    ours = {int(epoch(r["@timestamp"])): r["otsec"]["metrics"]["cycle_ms"] for r in rows
            if r["source"]["ip"] == HMI and "cycle_ms" in r["otsec"]["metrics"]}
    # intervals between repeats of one request function, by the minute of the repeat
    last: dict[str, float] = {}
    gaps: dict[int, list[float]] = {}
    for ts, code in tshark("-Y", f"ip.src=={HMI} && tcp.dstport==502 && mbtcp", "-T",
                           "fields", "-e", "frame.time_epoch", "-e", "modbus.func_code"):
        t = float(ts)
        if code in last:
            gaps.setdefault(int(t // 60 * 60), []).append(t - last[code])
        last[code] = t
    assert set(ours) == {m for m, g in gaps.items() if len(g) >= 3}  # a cycle: 3 repeats
    for minute, g in gaps.items():
        if minute not in ours:
            continue
        mean = sum(g) / len(g)
        jitter = (sum(x * x for x in g) / len(g) - mean * mean) ** 0.5
        assert ours[minute]["period"] == pytest.approx(mean * 1000, abs=0.01)
        assert ours[minute]["jitter"] == pytest.approx(jitter * 1000, abs=0.01)
    first = min(ours)
    hang = int(STEPS["hang"] // 60 * 60)
    assert 480 <= ours[first]["period"] <= 600  # the operator's half-second cycle
    assert ours[hang]["jitter"] > ours[first]["jitter"]  # the PLC hung
    summary = json.loads((tmp_path / "summary.json").read_text())
    (polling,) = [p for p in summary["operations"]["polling"] if p["client"] == HMI]
    assert polling["server"] == PLC


def test_approving_the_write_widens_the_learned_range(tmp_path: Path) -> None:
    audit_learning_until_tamper(tmp_path / "first")
    base = Baseline.load(tmp_path / "first" / "baseline.json")
    key = f"{PLC} modbus 1/holding_registers/{SETPOINT}"
    assert (base.values[key].min, base.values[key].max, base.values[key].writers) == (
        40, 60, [HMI])
    (alert,) = [a for a in alerts(tmp_path / "first")
                if a["rule"]["id"] == "otsec-baseline-value-out-of-range"]
    assert approve(base, alert) == [f"950 written by {HMI} into unit 1 holding_registers "
                                    f"{SETPOINT} of {PLC}"]
    assert base.values[key].max == 950
    base.save(tmp_path / "approved.json")
    run_audit([CAP], tmp_path / "again", baseline=Baseline.load(tmp_path / "approved.json"))
    rules = {a["rule"]["id"] for a in alerts(tmp_path / "again")}
    assert not rules & {"otsec-baseline-value-out-of-range", "otsec-baseline-new-writer"}


def test_normal_traffic_against_its_own_baseline_gives_no_deviation(tmp_path: Path) -> None:
    """The operations sample, learned whole and audited against itself: its writes and
    their values are all known (the poller that stops still goes silent: that is no
    learned behaviour)."""
    base = run_learn([CAP])
    assert len(base.values) == 1
    run_audit([CAP], tmp_path, baseline=base)
    deviations = {a["rule"]["id"] for a in alerts(tmp_path)
                  if a["rule"]["id"].startswith("otsec-baseline-")}
    assert deviations == {"otsec-baseline-silent-edge"}
    normal = ROOT / "pcaps" / "modbus-normal.pcap"  # plain polling: nothing at all
    run_audit([normal], tmp_path / "normal", baseline=run_learn([normal]))
    assert alerts(tmp_path / "normal") == []


def test_a_new_writer_of_a_learned_point(tmp_path: Path) -> None:
    base = run_learn([CAP])
    (entry,) = base.values.values()
    entry.writers = ["10.77.0.99"]  # learned from another station
    run_audit([CAP], tmp_path, baseline=base)
    (new,) = [a for a in alerts(tmp_path) if a["rule"]["id"] == "otsec-baseline-new-writer"]
    assert new["source"]["ip"] == HMI and "never wrote while learning" in new["message"]


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_s7_write_var_values_agree_with_tshark() -> None:
    """python-snap7: the intruder writes DB1 and a flag byte; each element at its byte
    address in its area, by the item's type."""
    cap = ROOT / "pcaps" / "s7-intrusion.pcap"
    rows = subprocess.run(
        [TSHARK or "tshark", "-r", str(cap), "-Y",
         "s7comm.param.func==0x05 && s7comm.header.rosctr==1", "-T", "fields", "-e", "ip.src",
         "-e", "s7comm.param.item.area", "-e", "s7comm.param.item.db", "-e",
         "s7comm.param.item.address.byte", "-e", "s7comm.resp.data"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    theirs = {}
    for src, area, db, byte, data in (r.split("\t") for r in rows):
        table = f"DB{db}" if area == "0x84" else {"0x83": "M", "0x82": "Q", "0x81": "I"}[area]
        for i, b in enumerate(bytes.fromhex(data)):
            theirs[(table, int(byte) + i)] = (b, src)
    values = every_point(cap)
    ours = {(p.table, p.address): (p.written, *p.writers) for p in values.points}
    assert theirs and ours == theirs
    assert values.total > len(theirs)  # the panel's reads of DB1 and the flags too


def test_dnp3_operate_values_are_the_control_codes() -> None:
    """opendnp3: the intruder's direct operate of relay 3 (Latch On: control code 3)."""
    (p,) = every_point(ROOT / "pcaps" / "dnp3-intrusion.pcap").points
    assert (p.protocol, p.table, p.address, p.written, p.writes) == ("dnp3", "g12", 3, 3, 1)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_dnp3_static_points_of_a_response_agree_with_tshark() -> None:
    """opendnp3: the integrity poll's answer, point by point (g30 analog inputs by their
    variation, g1 binary inputs as their state bit, g20 counters; objects in the order of
    the answer: g1 before g3, g20 before g21)."""
    cap = ROOT / "pcaps" / "dnp3-normal.pcap"
    rows = subprocess.run(
        [TSHARK or "tshark", "-r", str(cap), "-Y", "dnp3.al.func==0x81 && dnp3.al.ana.int",
         "-T", "fields", "-e", "dnp3.al.ana.int", "-e", "dnp3.al.biq.b7", "-e",
         "dnp3.al.cnt"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    analog, states, counters = ([int(v) for v in f.split(",")] for f in rows[0].split("\t"))
    docs = {(d["table"], d["address"]): d for d in every_point(cap).documents[PLC]}
    for table, theirs in (("g30", analog), ("g1", states[:10]), ("g20", counters[:10])):
        assert [docs[(table, i)]["last"] for i in range(10)] == theirs, table
    assert all(d["reads"] >= 1 for d in docs.values())
