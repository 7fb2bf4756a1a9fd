"""Alerts over a long run: caps that count per hour and per actor, overflows that name
whom they fold, alerts that close and leave memory, files kept across restarts."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from otsec.detect.alerts import CAP_WINDOW, MAX_PER_ACTOR, MAX_PER_RULE
from otsec.kept_ndjson import KeptNdjson
from tests import pcapgen as g
from tests.helpers import Conversation
from tests.test_probes import audit

T0 = 1_700_000_000.0


def write(c: Conversation, fc: int, address: int, value: int) -> list[bytes]:
    before = len(c.frames)
    pdu = bytes([fc]) + struct.pack("!HH", address, value)
    c.send(True, g.mbap(1, 1, pdu))
    c.send(False, g.mbap(1, 1, pdu))
    return c.frames[before:]


def test_a_new_attacker_after_a_flood_gets_an_alert_of_its_own(tmp_path: Path) -> None:
    packets: list[tuple[float, bytes]] = []
    for i in range(MAX_PER_RULE + 50):  # day 0: a write from each of 1,050 spoofed sources
        c = Conversation(client=f"10.9.{i >> 8}.{i & 0xFF}", cport=40000 + i % 20000)
        packets += [(T0 + len(packets) * 0.01, f) for f in write(c, 6, 1, i & 0xFF)]
    day30 = T0 + 30 * 86400
    laptop = Conversation(client="10.1.0.50", cport=41000)
    packets += [(day30, f) for f in write(laptop, 6, 7, 1)]
    attacker = Conversation(client="10.66.66.66", cport=42000)
    packets += [(day30 + 1800 + i, f) for i, f in enumerate(write(attacker, 16, 40, 9) +
                                                            write(attacker, 5, 3, 0xFF00))]
    _, alerts, _ = audit(tmp_path, packets)
    writes = [a for a in alerts if a["rule"]["id"] == "otsec-modbus-write"]
    mine = [a for a in writes if a["source"]["ip"] == "10.66.66.66"]
    assert {a["otsec"]["modbus"]["function_code"] for a in mine} == {16, 5}
    assert all("beyond" not in a["message"] for a in mine)
    (laptop,) = [a for a in writes if a["source"]["ip"] == "10.1.0.50"]
    assert laptop["otsec"]["alert"]["count"] == 1
    (rest,) = [a for a in writes if "beyond its first" in a["message"]]
    assert rest["otsec"]["alert"]["count"] == 50
    assert "from 50 sources (10.9.3.232, 10.9.3.233," in rest["message"]  # names them all
    assert "10.9.4.25" in rest["message"]


def test_one_actor_against_many_targets_folds_into_its_own_overflow(tmp_path: Path) -> None:
    packets: list[tuple[float, bytes]] = []
    for i in range(MAX_PER_ACTOR + 20):  # one host writes to 120 devices
        c = Conversation(client="10.5.0.5", server=f"10.20.0.{i % 250}" if i < 250 else "",
                         cport=40000 + i)
        packets += [(T0 + len(packets) * 0.01, f) for f in write(c, 6, 1, 1)]
    other = Conversation(client="10.5.0.6", server="10.20.0.1", cport=50000)
    packets += [(T0 + 100, f) for f in write(other, 6, 1, 1)]
    _, alerts, _ = audit(tmp_path, packets)
    writes = [a for a in alerts if a["rule"]["id"] == "otsec-modbus-write"]
    (rest,) = [a for a in writes if "beyond its first" in a["message"]]
    assert rest["source"]["ip"] == "10.5.0.5" and rest["otsec"]["alert"]["count"] == 20
    assert rest["message"].startswith("20 more findings of this rule by 10.5.0.5 beyond its "
                                      f"first {MAX_PER_ACTOR}")
    assert [a for a in writes if a["source"]["ip"] == "10.5.0.6"]  # the cap is per actor


def test_quiet_alerts_retire_and_the_same_finding_later_is_again(tmp_path: Path) -> None:
    from otsec.pipeline import Pipeline

    hmi = Conversation(client="10.2.0.10", cport=30000)
    packets = [(T0 + 7200 * n + i, f) for n in range(5)
               for i, f in enumerate(write(hmi, 6, 10, 50 + n))]
    cap = tmp_path / "in.pcap"
    cap.write_bytes(g.pcap(packets))
    pipe = Pipeline(None, events=False)
    pipe.run([cap])
    book = pipe.detector.book
    assert len(book.alerts) == 5
    gone = pipe.detector.retire(T0 + 7200 * 4 + 10)
    assert len(gone) == 4 and len(book.alerts) == 1 and book.retired == 4
    assert all(a.again_after for a in gone[1:])
    assert not [k for a in gone for k in a.core_keys if k in pipe.detector.hit_alerts]
    assert len(book._open) == 1  # what a long run holds is what is active
    assert CAP_WINDOW <= 3600


def test_kept_ndjson_keeps_the_head_and_a_past_runs_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.ndjson"
    path.write_bytes(b'{"past": 1}\n{"cut": ')  # a past run's line, and one cut by a crash
    kept = KeptNdjson(path)
    kept.write([b'{"open": 1}\n'])
    assert path.read_bytes() == b'{"past": 1}\n{"open": 1}\n'
    kept.close([b'{"closed": 1}\n'])
    kept.write([b'{"open": 2}\n'])
    kept.write([b'{"open": 3}\n'])
    assert path.read_bytes() == b'{"past": 1}\n{"closed": 1}\n{"open": 3}\n'
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    again = KeptNdjson(path)  # a restart: everything there is kept
    again.write([])
    assert path.read_bytes().count(b"\n") == 3


def test_kept_ndjson_rotates_instead_of_growing(tmp_path: Path) -> None:
    path = tmp_path / "alerts.ndjson"
    kept = KeptNdjson(path, rotate_bytes=100)
    for i in range(30):
        kept.close([json.dumps({"n": i}).encode() + b"\n"])
        kept.write([b'{"open": true}\n'])
    rotated = sorted(tmp_path.glob("alerts.*.ndjson"))
    lines = [json.loads(x) for f in [*rotated, path] for x in f.read_text().splitlines()]
    assert [d["n"] for d in lines if "n" in d] == list(range(30))  # none lost, in order
    assert path.stat().st_size < 200 and rotated


def test_a_spoofed_flood_of_findings_folds_in_the_core(tmp_path: Path) -> None:
    """3,000 one-packet writes from 3,000 spoofed sources: the first 1,000 become alerts,
    the rest are counted by the core and never cross one by one; the overflow names and
    counts its sources."""
    packets = []
    for i in range(MAX_PER_RULE * 3):
        src = f"10.{100 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}"
        payload = g.mbap(i & 0xFFFF, 1, bytes([6, 0, 10, 0, i & 0xFF]))
        packets.append((T0 + i * 0.001, g.ether(g.ipv4_tcp(src, "10.1.0.10", 40000 + i % 20000,
                                                           502, 7, 1, 0x18, payload))))
    summary, alerts, _ = audit(tmp_path, packets)
    assert summary["records_to_policy"] <= MAX_PER_RULE + 10
    writes = [a for a in alerts if a["rule"]["id"] == "otsec-modbus-write"]
    assert len(writes) == MAX_PER_RULE + 1
    (rest,) = [a for a in writes if "beyond its first" in a["message"]]
    assert rest["otsec"]["alert"]["count"] == 2 * MAX_PER_RULE
    assert "from 2,000 sources (10.100.3.232, 10.100.3.233, " in rest["message"]
    assert "and 1,900 more" in rest["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a sensor opens a capture socket (root)")
def test_a_long_running_sensor_holds_only_the_alerts_still_active(tmp_path: Path) -> None:
    """Five HMIs writing every 2 h for two days (120 alerts, each closing an hour after it
    came): the sensor holds five, and every alert is in the files once."""
    from otsec.monitor import Monitor, MonitorOptions

    packets = []
    for n in range(24):
        for h in range(5):
            c = Conversation(client=f"10.2.0.{10 + h}", cport=30000 + n * 10 + h)
            packets += [(T0 + 7200 * n + h, f) for f in write(c, 6, 10, 50 + n)]
    cap = tmp_path / "in.pcap"
    cap.write_bytes(g.pcap(packets))
    mon = Monitor(MonitorOptions(iface="lo", out_dir=tmp_path / "out", user=None))
    outputs = mon._start_outputs()
    assert mon.pipe is not None
    mon.pipe.run([cap])
    outputs.write(mon._snapshot())
    assert len(mon.pipe.detector.alerts) == 5 and len(outputs.docs) == 5
    summary = outputs.close(mon._snapshot(final=True))
    assert summary["alerts"]["total"] == 120
    lines = [json.loads(x) for x in (tmp_path / "out" / "alerts.ndjson").open()]
    assert len(lines) == 120 == len({d["event"]["id"] for d in lines})
    incidents = [json.loads(x) for x in (tmp_path / "out" / "incidents.ndjson").open()]
    assert sum(i["otsec"]["incident"]["alerts"] for i in incidents) == 120


def test_open_alerts_of_another_version_or_tampered_are_raised_anew() -> None:
    from otsec.detect.alerts import AlertBook
    from otsec.detect.ruleset import load

    rules = load().catalog
    good_doc = {"event": {"id": "x" * 32, "end": "2024-01-01T00:00:00Z"},
                "otsec": {"baseline": {"state": "none"}, "alert": {"count": 1}},
                "message": "m"}
    item = {"key": ["otsec-modbus-write", "10.0.0.1", "10.0.0.2", 1, 6],
            "alert_key": ["10.0.0.1", "10.0.0.2", 1, 6], "start": T0, "end": T0, "count": 3,
            "accepted": 1, "rejected": 0, "reasons": {}, "details": [], "approve": [],
            "action": "wrote", "target": "", "answerable": True, "swap": False,
            "overflow": False, "actors": [], "again_after": None, "document": good_doc}
    broken = [5, "x", {"key": "x"}, {**item, "key": []}, {**item, "document": {"event": 1}},
              {**item, "document": None}, {**item, "start": "soon"},
              {**item, "key": ["no-such-rule", "a", "b"]}]
    book = AlertBook()
    assert book.restore(broken, rules) == 0 and not book.alerts
    assert book.restore([item], rules) == 1
    (alert,) = book.alerts
    assert alert.count == 3 and alert.key == ("10.0.0.1", "10.0.0.2", 1, 6)


def test_kept_ndjson_is_not_rewritten_when_nothing_changed(tmp_path: Path) -> None:
    path = tmp_path / "alerts.ndjson"
    kept = KeptNdjson(path)
    kept.write([b'{"open": 1}\n'])
    before = os.stat(path).st_ino
    kept.write([b'{"open": 1}\n'])  # a quiet flush: the same file, not a copy of it
    assert os.stat(path).st_ino == before
    kept.write([b'{"open": 2}\n'])
    assert os.stat(path).st_ino != before and path.read_bytes() == b'{"open": 2}\n'
    path.unlink()  # gone under it: written again
    kept.write([b'{"open": 2}\n'])
    assert path.read_bytes() == b'{"open": 2}\n'
