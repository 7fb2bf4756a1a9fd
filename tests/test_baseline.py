"""Learn, then protect: baselines from the samples, deviations, approval, merging."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from otsec.audit import run_audit, run_learn
from otsec.baseline.model import Baseline, BaselineError
from otsec.cli import main
from tests import pcapgen as g
from tests.helpers import Conversation, holding_reply, read_holding

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
ATTACKS = {  # every attack step of the intrusion samples, as rules
    "modbus": {"otsec-baseline-new-asset", "otsec-baseline-new-edge",
               "otsec-baseline-rogue-master", "otsec-modbus-write", "otsec-modbus-listen-only",
               "otsec-modbus-restart-comms", "otsec-modbus-device-id",
               "otsec-modbus-function-scan"},
    "s7": {"otsec-baseline-new-asset", "otsec-baseline-rogue-master", "otsec-s7-write",
           "otsec-s7-szl-read", "otsec-s7-upload", "otsec-s7-plc-stop", "otsec-s7-pi-service"},
    "dnp3": {"otsec-baseline-new-asset", "otsec-baseline-rogue-master", "otsec-dnp3-control",
             "otsec-dnp3-freeze", "otsec-dnp3-restart"},
}


def alerts_of(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()]


@pytest.mark.parametrize("protocol", sorted(ATTACKS))
def test_learn_normal_then_every_attack_step_alerts(protocol: str, tmp_path: Path) -> None:
    base = run_learn([PCAPS / f"{protocol}-normal.pcap"])
    assert base.edges and base.assets
    quiet = run_audit([PCAPS / f"{protocol}-normal.pcap"], tmp_path / "n", baseline=base)
    assert quiet.alerts == []  # a normal capture against its own baseline: silence
    loud = run_audit([PCAPS / f"{protocol}-intrusion.pcap"], tmp_path / "i", baseline=base)
    rules = {a["rule"]["id"] for a in loud.alerts}
    assert ATTACKS[protocol] <= rules, rules
    assert all(a["otsec"]["baseline"]["state"] == "protecting" for a in loud.alerts)
    normal_hosts = {"10.77.0.10", "10.77.0.20"}
    for a in loud.alerts:  # nothing blames the normal conversation
        if a["rule"]["id"] != "otsec-baseline-silent-edge":
            assert "10.77.0.66" in a["related"]["ip"] or not normal_hosts >= set(
                a["related"]["ip"]), a["message"]


def intrusion_against_its_baseline(tmp: Path) -> tuple[Path, Path]:
    """The Modbus intrusion audited against the baseline of the normal capture: (baseline
    file, output folder)."""
    bfile = tmp / "b.json"
    assert main(["learn", str(PCAPS / "modbus-normal.pcap"), "--baseline", str(bfile)]) == 0
    out = tmp / "o"
    main(["audit", str(PCAPS / "modbus-intrusion.pcap"), "--baseline", str(bfile), "--out",
          str(out), "--format", "json"])
    return bfile, out


def test_approving_a_finding_silences_it(tmp_path: Path) -> None:
    bfile, out = intrusion_against_its_baseline(tmp_path)
    edge = next(a for a in alerts_of(out) if a["rule"]["id"] == "otsec-baseline-new-edge")
    write = next(a for a in alerts_of(out) if a["rule"]["id"] == "otsec-modbus-write")
    for alert in (edge, write):
        assert main(["baseline", "approve", alert["event"]["id"], "--baseline", str(bfile),
                     "--alerts", str(out / "alerts.ndjson")]) == 0
    main(["audit", str(PCAPS / "modbus-intrusion.pcap"), "--baseline", str(bfile), "--out",
          str(out), "--format", "json"])
    after = alerts_of(out)
    rules = {a["rule"]["id"] for a in after}
    assert "otsec-baseline-new-edge" not in rules
    approved = write["otsec"]["modbus"]["function_code"]
    assert not [a for a in after if a["rule"]["id"] == "otsec-modbus-write"
                and a["otsec"]["modbus"]["function_code"] == approved]
    assert "otsec-modbus-listen-only" in rules  # the rest still alerts
    assert main(["baseline", "approve", "nope", "--baseline", str(bfile), "--alerts",
                 str(out / "alerts.ndjson")]) == 2


def test_baseline_file_is_sorted_versioned_and_merges(tmp_path: Path) -> None:
    bfile = tmp_path / "b.json"
    main(["learn", str(PCAPS / "modbus-normal.pcap"), "--baseline", str(bfile)])
    first = bfile.read_text()
    data = json.loads(first)
    assert data["version"] == 1 and list(data["edges"]) == sorted(data["edges"])
    main(["learn", str(PCAPS / "s7-normal.pcap"), "--baseline", str(bfile)])
    merged = Baseline.load(bfile)
    assert len(merged.sources) == 2
    assert {e.protocol for e in merged.edges.values()} == {"modbus", "s7comm"}
    old = tmp_path / "old.json"
    old.write_text(first)
    assert main(["baseline", "diff", str(old), str(bfile)]) == 1
    assert main(["baseline", "diff", str(bfile), str(bfile)]) == 0
    assert main(["baseline", "show", str(bfile)]) == 0
    (tmp_path / "bad.json").write_text('{"version": 99}')
    with pytest.raises(BaselineError):
        Baseline.load(tmp_path / "bad.json")


def test_learning_window_then_protecting(tmp_path: Path) -> None:
    result = run_audit([PCAPS / "s7-intrusion.pcap"], tmp_path, learn_for=5.0)
    rules = {a["rule"]["id"] for a in result.alerts}
    assert {"otsec-baseline-new-edge", "otsec-baseline-rogue-master"} <= rules
    saved = Baseline.load(tmp_path / "baseline.json")
    assert any(e.client == "10.77.0.20" for e in saved.edges.values())  # learned in the window


def _capture(tmp_path: Path, name: str, frames: list[tuple[float, bytes]]) -> Path:
    path = tmp_path / name
    path.write_bytes(g.pcap(frames))
    return path


def _polling(start: float, seconds: int, period: float = 1.0,
             client_mac: bytes = b"\x00\x0c\x29\x00\x00\x14") -> list[tuple[float, bytes]]:
    c = Conversation()
    frames: list[tuple[float, bytes]] = []
    t = start
    for f in c.frames:
        frames.append((t, f))
    for tid in range(int(seconds / period)):
        t = start + 1 + tid * period
        frames.append((t, c.send(True, read_holding(tid, addr=0, count=4))))
        frames.append((t + 0.01, c.send(False, holding_reply(tid, 4))))
    return frames


def test_deviations_on_a_known_edge(tmp_path: Path) -> None:
    normal = _capture(tmp_path, "normal.pcap", _polling(1000, 30))
    base = run_learn([normal])
    (edge,) = base.edges.values()
    assert edge.functions["request"] == [3] and edge.period == pytest.approx(1.0, abs=0.01)
    c = Conversation()
    frames = [(2000.0, f) for f in c.frames]
    frames.append((2001.0, c.send(True, read_holding(1, addr=0, count=4))))
    frames.append((2001.1, c.send(True, read_holding(2, addr=500, count=2))))  # new range
    frames.append((2001.2, c.send(True, g.mbap(3, 7, bytes([3]) + struct.pack("!HH", 0, 1)))))
    frames.append((2001.3, c.send(True, g.mbap(4, 1, bytes([6]) + struct.pack("!HH", 9, 1)))))
    frames.append((2001.4, c.send(True, g.mbap(5, 1, bytes([4]) + struct.pack("!HH", 0, 1)))))
    # the poller then stops while something else on the network carries on
    other = Conversation(client="10.0.0.20", server="10.0.0.11", cport=41000)
    frames += [(2002.0, f) for f in other.frames]
    frames += [(2100.0 + i, other.send(True, read_holding(i))) for i in range(3)]
    result = run_audit([_capture(tmp_path, "now.pcap", frames)], tmp_path / "o", baseline=base)
    rules = {a["rule"]["id"] for a in result.alerts}
    assert {"otsec-baseline-new-range", "otsec-baseline-new-unit",
            "otsec-baseline-new-command", "otsec-baseline-new-function",
            "otsec-baseline-silent-edge", "otsec-baseline-new-edge"} <= rules
    command = next(a for a in result.alerts if a["rule"]["id"] == "otsec-baseline-new-command")
    assert command["threat"]["technique"]["id"] == ["T0855"]


def test_ip_answering_from_a_new_mac(tmp_path: Path) -> None:
    base = run_learn([_capture(tmp_path, "normal.pcap", _polling(1000, 10))])
    c = Conversation()
    spoofed = []
    for f in c.frames:
        spoofed.append(f)
    req = c.send(True, read_holding(1))
    reply = c.send(False, holding_reply(1))
    reply = b"\x00\x0c\x29\x00\x00\x14" + b"\x02\x66\x66\x66\x66\x66" + reply[12:]
    frames = [(1100.0, f) for f in spoofed] + [(1101.0, req), (1101.1, reply)]
    result = run_audit([_capture(tmp_path, "mitm.pcap", frames)], tmp_path / "o",
                       baseline=base)
    (mac,) = [a for a in result.alerts if a["rule"]["id"] == "otsec-baseline-new-mac"]
    assert "02-66-66-66-66-66" in mac["message"] and mac["threat"]["technique"]["id"] == ["T0830"]


def test_identity_change_against_the_baseline(tmp_path: Path) -> None:
    intrusion = PCAPS / "modbus-intrusion.pcap"
    base = run_learn([intrusion])
    assert base.assets["10.77.0.10"].firmware == "3.20"
    base.assets["10.77.0.10"].firmware = "3.10"  # what the PLC ran when it was learned
    result = run_audit([intrusion], tmp_path, baseline=base)
    (change,) = [a for a in result.alerts if a["rule"]["id"] == "otsec-baseline-identity-change"]
    assert "firmware 3.10 -> 3.20" in change["message"]
    assert change["threat"]["technique"]["id"] == ["T0839"]


def test_request_rate_far_above_the_learned_rate(tmp_path: Path) -> None:
    base = run_learn([_capture(tmp_path, "normal.pcap", _polling(1000, 60, period=2.0))])
    flood = _polling(5000, 30, period=0.1)  # twenty times the learned rate
    result = run_audit([_capture(tmp_path, "flood.pcap", flood)], tmp_path / "o",
                       baseline=base)
    (rate,) = [a for a in result.alerts if a["rule"]["id"] == "otsec-baseline-rate"]
    assert rate["otsec"]["alert"]["count"] >= 1 and "requests in 60 s" in rate["message"]


def test_dnp3_new_object_group(tmp_path: Path) -> None:
    from tests.test_dnp3 import app, fragment

    def dnp3_capture(name: str, body: bytes) -> Path:
        c = Conversation(sport=20000)
        frames = [(100.0, f) for f in c.frames]
        frames.append((101.0, c.send(True, fragment(10, 1, app(1, body)))))
        frames.append((101.1, c.send(False, fragment(1, 10, app(129, iin=b"\0\0")))))
        return _capture(tmp_path, name, frames)

    base = run_learn([dnp3_capture("a.pcap", bytes([60, 2, 6, 60, 3, 6]))])
    assert next(iter(base.edges.values())).objects == [60]
    result = run_audit([dnp3_capture("b.pcap", bytes([30, 1, 6]))], tmp_path / "o",
                       baseline=base)
    assert "otsec-baseline-new-object" in {a["rule"]["id"] for a in result.alerts}


def test_arp_spoofing_of_a_known_address(tmp_path: Path) -> None:
    base = run_learn([_capture(tmp_path, "normal.pcap", _polling(1000, 10))])

    def arp(sender_mac: bytes, sender_ip: str) -> bytes:
        body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, sender_mac,
                           bytes(map(int, sender_ip.split("."))), b"\xff" * 6, bytes(4))
        return g.ether(body, src=sender_mac, dst=b"\xff" * 6, ethertype=0x0806)

    frames = [(1100.0, arp(b"\x02\x66\x66\x66\x66\x66", "10.0.0.10")),  # claims the PLC's IP
              (1100.5, arp(b"\x02\x77\x77\x77\x77\x77", "10.0.0.99"))]  # a newcomer
    result = run_audit([_capture(tmp_path, "arp.pcap", frames)], tmp_path / "o", baseline=base)
    rules = {a["rule"]["id"]: a for a in result.alerts}
    assert "02-66-66-66-66-66" in rules["otsec-baseline-new-mac"]["message"]
    assert rules["otsec-baseline-new-asset"]["source"]["ip"] == "10.0.0.99"


def test_report_shows_graph_timeline_matrix_and_changes(tmp_path: Path) -> None:
    base = run_learn([PCAPS / "modbus-normal.pcap"])
    run_audit([PCAPS / "modbus-intrusion.pcap"], tmp_path, baseline=base)
    html = (tmp_path / "report.html").read_text()
    for marker in ('class="zoom"', 'id="timeline"', "id='matrix'", "id='changes'",
                   "table.sortable", "What changed since the baseline"):
        assert marker in html, marker
    assert "<rect" in html and "class=\"hot\"" in html  # controllers square, intruder ringed


def test_responses_never_count_as_used_and_approve_takes_several_ids(tmp_path: Path) -> None:
    bfile, out = intrusion_against_its_baseline(tmp_path)
    first = alerts_of(out)
    edge = next(a for a in first if a["rule"]["id"] == "otsec-baseline-new-edge")
    asset = next(a for a in first if a["rule"]["id"] == "otsec-baseline-new-asset")
    assert main(["baseline", "approve", edge["event"]["id"][:12], asset["event"]["id"],
                 "--baseline", str(bfile), "--alerts", str(out / "alerts.ndjson")]) == 0
    main(["audit", str(PCAPS / "modbus-intrusion.pcap"), "--baseline", str(bfile), "--out",
          str(out), "--format", "json"])
    after = alerts_of(out)
    rules = {a["rule"]["id"] for a in after}
    assert not {"otsec-baseline-new-edge", "otsec-baseline-new-asset"} & rules
    used = [a for a in after if a["rule"]["id"] in ("otsec-baseline-new-function",
                                                     "otsec-baseline-new-command")]
    assert used and all(a["otsec"]["direction"] == "request" for a in used)
    assert all(a["source"]["ip"] == "10.77.0.66" for a in used)  # the PLC only answered
    codes = [a["otsec"]["modbus"]["function_code"] for a in used]
    assert len(codes) == len(set(codes))  # one alert per new function, not one per direction
    assert main(["baseline", "approve", "", "--baseline", str(bfile), "--alerts",
                 str(out / "alerts.ndjson")]) == 2  # a prefix every alert has


def _big_baseline(n: int) -> dict:
    edges, assets = {}, {}
    for i in range(n):
        c, s = f"10.1.{i >> 8}.{i & 0xFF}", "10.0.0.10"
        assets[c] = {"macs": [], "role": "hmi"}
        key = f"{c} -> {s} tcp/502 modbus"
        edges[key] = {"client": c, "server": s, "transport": "tcp", "port": 502,
                      "protocol": "modbus", "functions": {"request": [16, 3]},
                      "ranges": {"1/holding_register": [[0, 9]]}}
    return {"version": 1, "sources": ["x"], "assets": assets, "edges": edges, "values": {}}


def test_a_large_baseline_reads_entry_by_entry_as_the_whole(tmp_path: Path) -> None:
    data = _big_baseline(3000)
    spaced, compact = tmp_path / "spaced.json", tmp_path / "compact.json"
    spaced.write_text(json.dumps(data, indent=2))
    compact.write_text(json.dumps(data, separators=(",", ":")))
    whole = Baseline.from_json(json.loads(spaced.read_text()))
    for path in (spaced, compact):
        read = Baseline.load(path)
        assert read.to_json() == whole.to_json()
    read.save(tmp_path / "saved.json")  # written as to_json says, byte for byte
    assert (tmp_path / "saved.json").read_bytes() == \
        json.dumps(whole.to_json(), indent=2, sort_keys=True).encode() + b"\n"
    assert Baseline.load(tmp_path / "saved.json").to_json() == whole.to_json()


def test_a_bad_entry_deep_in_a_large_baseline_is_named(tmp_path: Path) -> None:
    data = _big_baseline(2000)
    data["edges"]["10.1.7.7 -> 10.0.0.10 tcp/502 modbus"]["port"] = "502"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match=r"b\.json: edges\['10\.1\.7\.7 .*\.port: must be"):
        Baseline.load(path)
    data["edges"]["10.1.7.7 -> 10.0.0.10 tcp/502 modbus"]["port"] = 502
    path.write_text(json.dumps(data)[:-40])  # cut short
    with pytest.raises(BaselineError, match="not a readable baseline"):
        Baseline.load(path)


def test_baseline_show_pages_a_large_baseline(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(_big_baseline(500)))
    assert main(["baseline", "show", str(path), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "500 assets, the first 5" in out and "500 edges, the first 5" in out
    assert sum(line.startswith("│ 10.1.") for line in out.splitlines()) == 10
    assert main(["baseline", "show", str(path), "--grep", "10.1.1.44", "--limit", "0"]) == 0
    out = capsys.readouterr().out
    assert "1 assets" in out and "1 edges" in out
