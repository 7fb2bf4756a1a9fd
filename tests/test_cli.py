"""The audit command end to end on the bundled samples; exit codes; output contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from otsec.cli import main

ROOT = Path(__file__).resolve().parents[1]
NORMAL = ROOT / "pcaps" / "modbus-normal.pcap"
INTRUSION = ROOT / "pcaps" / "modbus-intrusion.pcap"


def otsec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otsec", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def intrusion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit")
    assert main(["audit", str(INTRUSION), "--out", str(out), "--format", "json"]) == 0
    return out


def read_ndjson(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_all_contract_files_are_written(intrusion: Path) -> None:
    for name in ("events.ndjson", "alerts.ndjson", "assets.json", "edges.json", "summary.json",
                 "report.html"):
        assert (intrusion / name).stat().st_size > 0, name
    summary = json.loads((intrusion / "summary.json").read_text())
    for key in ("packets", "bytes", "flows", "pdus", "anomalies", "alerts", "duration",
                "packets_per_second"):
        assert key in summary
    assert summary["pdus"]["modbus"] == len(read_ndjson(intrusion / "events.ndjson"))


def test_pdu_events_follow_the_contract(intrusion: Path) -> None:
    events = read_ndjson(intrusion / "events.ndjson")
    for ev in events:
        assert ev["event"]["dataset"] == "otsec.modbus"
        assert ev["network"]["protocol"] == "modbus" and ev["network"]["transport"] == "tcp"
        assert ev["network"]["community_id"].startswith("1:")
        assert ev["otsec"]["direction"] in ("request", "response")
        assert isinstance(ev["otsec"]["modbus"]["function_code"], int)
        assert ev["@timestamp"].endswith("Z") and len(ev["@timestamp"]) == 27
        assert ev["source"]["mac"].count("-") == 5 and ev["source"]["mac"].isupper()
    requests = [e for e in events if e["otsec"]["direction"] == "request"]
    assert all(e["destination"]["port"] == 502 for e in requests)
    stamps = [e["@timestamp"] for e in events]
    assert stamps == sorted(stamps)  # capture order


def test_intrusion_raises_every_attack_step(intrusion: Path) -> None:
    alerts = read_ndjson(intrusion / "alerts.ndjson")
    by_rule = {a["rule"]["id"]: a for a in alerts}
    for rule in ("otsec-modbus-write", "otsec-modbus-listen-only", "otsec-modbus-restart-comms",
                 "otsec-modbus-device-id", "otsec-modbus-function-scan",
                 "otsec-modbus-nonstandard-function"):
        assert rule in by_rule, rule
    listen = by_rule["otsec-modbus-listen-only"]
    assert listen["event"]["severity"] == 4 and listen["threat"]["technique"]["id"] == ["T0814"]
    assert listen["source"]["ip"] == "10.77.0.66" and listen["destination"]["ip"] == "10.77.0.10"
    write = next(a for a in alerts if a["rule"]["id"] == "otsec-modbus-write")
    assert "accepted" in write["message"] and write["event"]["outcome"] == "success"
    assert write["threat"]["tactic"]["id"] and write["event"]["kind"] == "alert"
    assert write["otsec"]["asset"]["destination"]["role"] == "plc"
    scan = by_rule["otsec-modbus-function-scan"]
    assert scan["source"]["ip"] == "10.77.0.66"  # the scanner, not the PLC that answered
    assert len({a["event"]["id"] for a in alerts}) == len(alerts)


def test_normal_polling_raises_no_alert(tmp_path: Path) -> None:
    assert main(["audit", str(NORMAL), "--out", str(tmp_path), "--format", "json"]) == 0
    assert (tmp_path / "alerts.ndjson").read_text() == ""


def test_inventory_and_graph(intrusion: Path) -> None:
    assets = {a["host"]["ip"][0]: a for a in json.loads((intrusion / "assets.json").read_text())}
    plc = assets["10.77.0.10"]
    assert plc["entity"]["sub_type"] == "plc" and plc["entity"]["id"] == "00-80-F4-10-00-0A"
    assert plc["device"]["manufacturer"] == "Schneider Electric"
    assert plc["otsec"]["asset"]["firmware_version"] == "3.20"
    assert {"transport": "tcp", "port": 502, "protocol": "modbus"} in \
        plc["otsec"]["asset"]["services"]
    assert assets["10.77.0.20"]["entity"]["sub_type"] == "hmi"
    edges = json.loads((intrusion / "edges.json").read_text())
    modbus_edges = [e for e in edges if e["network"]["protocol"] == "modbus"]
    assert {e["source"]["ip"] for e in modbus_edges} == {"10.77.0.20", "10.77.0.66"}
    intruder = next(e for e in modbus_edges if e["source"]["ip"] == "10.77.0.66")
    assert intruder["otsec"]["edge"]["writes"] == 3


def test_run_is_deterministic(intrusion: Path, tmp_path: Path) -> None:
    main(["audit", str(INTRUSION), "--out", str(tmp_path), "--format", "json"])
    for name in ("events.ndjson", "alerts.ndjson", "assets.json", "edges.json"):
        assert (tmp_path / name).read_text() == (intrusion / name).read_text(), name




@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["audit", "/nonexistent.pcap"], "cannot open"),
        (["audit", "--bogus", str(NORMAL)], "No such option"),
        (["audit"], "Missing argument"),
        (["audit", str(ROOT / "pyproject.toml")], "not a pcap"),
        (["audit", str(ROOT / "pcaps")], "directory"),
        (["nope"], "No such command"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args: list[str], needle: str) -> None:
    proc = otsec(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_fail_on_severity(tmp_path: Path) -> None:
    assert otsec("audit", str(INTRUSION), "--out", str(tmp_path), "--fail-on", "critical")\
        .returncode == 3
    assert otsec("audit", str(NORMAL), "--out", str(tmp_path), "--fail-on", "low").returncode == 0


def test_table_output_and_report(tmp_path: Path) -> None:
    proc = otsec("audit", str(INTRUSION), "--out", str(tmp_path))
    assert proc.returncode == 0
    assert "modbus PDUs" in proc.stdout and "otsec-modbus-listen-only" in proc.stdout
    report = (tmp_path / "report.html").read_text()
    assert "<svg" in report and "10.77.0.10" in report and "T0814" in report
    assert "http://" not in report.replace("http://www.w3.org/2000/svg", "")  # no CDN


def audit_sample(name: str, out: Path) -> tuple[list[dict], dict[str, dict]]:
    assert main(["audit", str(ROOT / "pcaps" / name), "--out", str(out), "--format", "json"]) == 0
    alerts = read_ndjson(out / "alerts.ndjson")
    assets = {a["host"]["ip"][0]: a for a in json.loads((out / "assets.json").read_text())}
    return alerts, assets


def test_s7_sample_identity_roles_and_alerts(tmp_path: Path) -> None:
    alerts, assets = audit_sample("s7-intrusion.pcap", tmp_path)
    plc = assets["10.77.0.10"]
    assert plc["entity"]["sub_type"] == "plc"
    assert plc["device"]["manufacturer"] == "Siemens"
    assert plc["device"]["model"]["identifier"] == "6ES7 315-2EH14-0AB0"
    assert plc["host"]["name"] == "SNAP7-SERVER"
    assert assets["10.77.0.66"]["entity"]["sub_type"] == "engineering_workstation"
    stop = next(a for a in alerts if a["rule"]["id"] == "otsec-s7-plc-stop")
    assert stop["event"]["severity"] == 4 and stop["event"]["outcome"] == "success"
    assert stop["otsec"]["s7comm"]["function_code"] == 0x29
    assert stop["threat"]["technique"]["id"] == ["T0858", "T0816"]
    events = read_ndjson(tmp_path / "events.ndjson")
    szl = [e for e in events if e["otsec"]["s7comm"].get("userdata", {}).get("szl_id") == 0x1C]
    assert szl and all(e["event"]["dataset"] == "otsec.s7comm" for e in szl)


def test_dnp3_sample_roles_addresses_and_alerts(tmp_path: Path) -> None:
    alerts, assets = audit_sample("dnp3-intrusion.pcap", tmp_path)
    rtu = assets["10.77.0.10"]
    assert rtu["entity"]["sub_type"] == "rtu" and rtu["otsec"]["asset"]["dnp3_addresses"] == [10]
    rules = {a["rule"]["id"] for a in alerts}
    assert {"otsec-dnp3-restart", "otsec-dnp3-control", "otsec-dnp3-freeze"} <= rules
    assert all(a["source"]["ip"] == "10.77.0.66" for a in alerts)  # the SCADA master is quiet
    events = read_ndjson(tmp_path / "events.ndjson")
    responses = [e for e in events if e["otsec"]["dnp3"]["function_code"] == 129]
    assert responses and all("iin" in e["otsec"]["dnp3"] for e in responses)
    assert all(e["otsec"]["direction"] == "response" for e in responses)


@pytest.mark.parametrize("name", ["s7-normal.pcap", "dnp3-normal.pcap"])
def test_normal_samples_raise_no_alert(name: str, tmp_path: Path) -> None:
    alerts, _ = audit_sample(name, tmp_path)
    assert alerts == []


def test_no_events_keeps_everything_else(tmp_path: Path) -> None:
    assert main(["audit", str(INTRUSION), "--out", str(tmp_path), "--format", "json",
                 "--no-events"]) == 0
    assert (tmp_path / "events.ndjson").read_text() == ""
    assert read_ndjson(tmp_path / "alerts.ndjson")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["events"] == 0 and summary["pdus"]["modbus"] > 0
