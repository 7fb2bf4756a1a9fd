"""Incidents: one per attack step (actor, target, cause), holding every alert of the step."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from otsec.audit import run_audit, run_learn
from tests import pcapgen as g
from tests.helpers import Conversation, read_holding

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0


def capture(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    path.write_bytes(g.pcap(frames))
    return path


def polling(c: Conversation, t: float, n: int, step: float = 1.0) -> list[tuple[float, bytes]]:
    out = []
    for i in range(n):
        c.send(True, read_holding(i))
        c.send(False, g.mbap(i, 1, bytes([3, 4, 0, 1, 0, 2])))
        out += [(t + i * step, f) for f in c.frames[-2:]]
    return out


def learned(tmp: Path):
    c = Conversation()
    frames = [(T0, f) for f in c.frames] + polling(c, T0 + 1, 30)
    return run_learn([capture(tmp / "normal.pcap", frames)])


def audit(tmp: Path, name: str, frames: list[tuple[float, bytes]]) -> tuple[list, list]:
    out = tmp / name
    run_audit([capture(tmp / f"{name}.pcap", frames)], out, baseline=learned(tmp))
    read = [[json.loads(x) for x in (out / f).read_text().splitlines()]
            for f in ("incidents.ndjson", "alerts.ndjson")]
    return read[0], read[1]


def test_one_write_of_a_new_range_is_one_incident(tmp_path: Path) -> None:
    c = Conversation()
    frames = [(T0, f) for f in c.frames] + polling(c, T0 + 1, 5)
    c.send(True, g.mbap(99, 1, bytes([16]) + struct.pack("!HHB", 500, 2, 4) + b"\0\x2a\0\x2b"))
    c.send(False, g.mbap(99, 1, bytes([16]) + struct.pack("!HH", 500, 2)))
    frames += [(T0 + 20, f) for f in c.frames[-2:]]
    incidents, alerts = audit(tmp_path, "write", frames)
    assert len(alerts) >= 3  # a write, a new command, a new range
    (incident,) = incidents
    inc = incident["otsec"]["incident"]
    assert inc["cause"] == "process change" and inc["alerts"] == len(alerts)
    assert {a["otsec"]["incident"]["id"] for a in alerts} == {inc["id"]}
    assert {"otsec-modbus-write", "otsec-baseline-new-command", "otsec-baseline-new-range"} \
        <= set(incident["rule"]["id"])
    assert incident["source"]["ip"] == "10.0.0.20" and incident["event"]["severity"] == 4 - 1
    assert len(inc["evidence"]) == len(alerts)


def test_a_slow_unit_sweep_is_at_most_two_incidents(tmp_path: Path) -> None:
    c = Conversation()
    frames = [(T0, f) for f in c.frames] + polling(c, T0 + 1, 5)
    for k, unit in enumerate(range(2, 10)):  # one request every 4 s, each to another unit
        c.send(True, g.mbap(200 + k, unit, bytes([3]) + struct.pack("!HH", 0, 2)))
        c.send(False, g.mbap(200 + k, unit, bytes([0x83, 0x0B])))  # gateway: no response
        frames += [(T0 + 20 + 4 * k, f) for f in c.frames[-2:]]
    incidents, alerts = audit(tmp_path, "sweep", frames)
    assert len(alerts) >= 2
    assert 1 <= len(incidents) <= 2
    assert sum(i["otsec"]["incident"]["alerts"] for i in incidents) == len(alerts)
    assert all(i["otsec"]["incident"]["cause"] == "discovery" for i in incidents)


def test_steps_of_the_bundled_intrusions_stay_apart(tmp_path: Path) -> None:
    pcaps = ROOT / "pcaps"
    base = run_learn([pcaps / "s7-normal.pcap"])
    result = run_audit([pcaps / "s7-intrusion.pcap"], tmp_path, baseline=base)
    causes = {d["otsec"]["incident"]["cause"] for d in result.incident_docs}
    assert {"process change", "program or mode change", "discovery", "new host"} <= causes
    assert len(result.incident_docs) < len(result.alerts)
    assert result.summary["incidents"]["total"] == len(result.incident_docs)
    page = (tmp_path / "report.html").read_text()
    assert page.index("<h2>Incidents</h2>") < page.index("<h2>Alerts</h2>")


def test_the_attacker_of_the_samples_is_flagged_not_an_hmi(tmp_path: Path) -> None:
    for protocol in ("modbus", "s7", "dnp3"):
        result = run_audit([ROOT / "pcaps" / f"{protocol}-intrusion.pcap"], tmp_path / protocol)
        by_ip = {ip: d for d in result.asset_docs for ip in d["host"]["ip"]}
        attacker = by_ip["10.77.0.66"]["otsec"]["asset"]
        assert attacker["role"] != "hmi" and attacker["flags"], (protocol, attacker)
        if attacker["role"] == "unknown":  # it polled too: the evidence says why not an HMI
            assert attacker["role_evidence"][0].startswith("not an HMI: ")
        hmi = by_ip["10.77.0.20"]["otsec"]["asset"]
        assert hmi["role"] == "hmi" and hmi["flags"] == []  # the real HMI only polls


def dnp3_session(c: Conversation, t: float, codes: list[int]) -> list[tuple[float, bytes]]:
    """A master's requests (class 1-3 event objects) on one connection, each answered."""
    from tests.test_dnp3 import app, fragment

    out = []
    for i, fc in enumerate(codes):
        body = bytes([60, 2, 6, 60, 3, 6, 60, 4, 6]) if fc in (1, 20, 21) else b""
        c.send(True, fragment(10, 1, app(fc, body, control=0xC0 | (i & 0x0F)), seq=2 * i))
        c.send(False, fragment(1, 10, app(0x81, b"", control=0xC0 | (i & 0x0F),
                                          iin=b"\0\0"), seq=2 * i + 1))
        out += [(t + i, f) for f in c.frames[-2:]]
    return out


def test_a_start_up_function_in_the_middle_of_a_session_is_a_deviation(tmp_path: Path) -> None:
    startup = [21, 1, 2, 20]
    c = Conversation(sport=20000)
    normal = [(T0, f) for f in c.frames] + dnp3_session(c, T0 + 1, startup + [1] * 20)
    base = run_learn([capture(tmp_path / "normal.pcap", normal)])
    (entry,) = base.edges.values()
    assert entry.startup_only == [2, 20, 21]  # learned as start-up functions only
    c = Conversation(sport=20000)
    attack = [(T0 + 100, f) for f in c.frames] + dnp3_session(
        c, T0 + 101, startup + [1] * 10 + [21] + [1] * 5)
    result = run_audit([capture(tmp_path / "attack.pcap", attack)], tmp_path / "o",
                       baseline=base)
    rules = {a["rule"]["id"] for a in result.alerts}
    assert "otsec-dnp3-disable-unsolicited" in rules  # no longer silenced by the learning
    (mid,) = [a for a in result.alerts if "middle of a connection" in a["message"]]
    assert mid["otsec"]["dnp3"]["function_code"] == 21
    quiet = run_audit([capture(tmp_path / "again.pcap", normal)], tmp_path / "q", baseline=base)
    assert quiet.alerts == []  # the start-up itself stays quiet


def test_a_control_of_a_point_never_operated_while_learning_is_a_deviation(
        tmp_path: Path) -> None:
    from tests.test_dnp3 import app, fragment

    def operate(c: Conversation, t: float, index: int, seq: int) -> list[tuple[float, bytes]]:
        crob = bytes([12, 1, 0x28]) + struct.pack("<HH", 1, index) + bytes([3, 1]) + bytes(9)
        c.send(True, fragment(10, 1, app(5, crob, control=0xC0 | seq), seq=2 * seq))
        c.send(False, fragment(1, 10, app(0x81, crob, control=0xC0 | seq, iin=b"\0\0"),
                               seq=2 * seq + 1))
        return [(t, f) for f in c.frames[-2:]]

    c = Conversation(sport=20000)
    normal = [(T0, f) for f in c.frames]
    for k in range(6):
        normal += operate(c, T0 + 1 + k, 3 + k % 2, k)  # points 3 and 4
    base = run_learn([capture(tmp_path / "normal.pcap", normal)])
    (entry,) = base.edges.values()
    assert entry.ranges == {"10/g12": [[3, 4]]}
    c = Conversation(sport=20000)
    attack = [(T0 + 100, f) for f in c.frames] + operate(c, T0 + 101, 4, 0) + \
        operate(c, T0 + 102, 7, 1)
    result = run_audit([capture(tmp_path / "attack.pcap", attack)], tmp_path / "o",
                       baseline=base)
    (new,) = [a for a in result.alerts if a["rule"]["id"] == "otsec-baseline-new-range"]
    assert "g12 7-7" in new["message"]  # point 7; points 3 and 4 stay quiet
