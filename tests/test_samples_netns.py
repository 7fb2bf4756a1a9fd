"""Regenerate the sample captures from real pymodbus stacks in network namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from otsec.cli import main
from otsec.timefmt import epoch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.netns


def can_make_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "tcpdump"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    name = f"otsec-probe-{os.getpid()}"  # workers collect at the same time
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None if probe.returncode == 0 else "cannot create network namespaces here"


REASON = can_make_namespaces()


EXPECTED = {
    "modbus": {"otsec-modbus-write", "otsec-modbus-listen-only", "otsec-modbus-function-scan",
               "otsec-modbus-device-id"},
    "s7": {"otsec-s7-plc-stop", "otsec-s7-write", "otsec-s7-upload", "otsec-s7-szl-read"},
    "dnp3": {"otsec-dnp3-control", "otsec-dnp3-restart", "otsec-dnp3-freeze"},
}


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_generator_makes_captures_that_alert_as_expected(tmp_path: Path) -> None:
    prefix = f"otsec{os.getpid()}"  # never the names another run (or test) uses
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_samples.py"), "--out",
                           str(tmp_path), "--seconds", "3"], capture_output=True, text=True,
                          timeout=500, check=False,
                          env={**os.environ, "OTSEC_NETNS_PREFIX": prefix})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for protocol, rules in EXPECTED.items():
        out = tmp_path / f"{protocol}-normal-out"
        assert main(["audit", str(tmp_path / f"{protocol}-normal.pcap"), "--out", str(out),
                     "--format", "json"]) == 0
        assert (out / "alerts.ndjson").read_text() == "", protocol
        summary = json.loads((out / "summary.json").read_text())
        assert sum(summary["pdus"].values()) > 10, protocol
        out = tmp_path / f"{protocol}-intrusion-out"
        main(["audit", str(tmp_path / f"{protocol}-intrusion.pcap"), "--out", str(out),
              "--format", "json"])
        raised = {json.loads(line)["rule"]["id"] for line in (out / "alerts.ndjson").open()}
        assert rules <= raised, (protocol, raised)
    modbus_insider_steps_are_caught(tmp_path)
    dnp3_insider_steps_are_caught(tmp_path)
    operations_steps_are_caught(tmp_path)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    assert f"{prefix}-" not in listed.stdout  # torn down


def operations_steps_are_caught(tmp: Path) -> None:
    """The operator (pymodbus) adjusts a setpoint within 40-60, then writes 950 into it;
    then the PLC's process is stopped for a while, slowed, the operator stops polling and a
    SYN flood follows: learning until the tampering, each step alerts at its time, with its
    end points (tests/test_process_values.py checks the bundled capture in detail)."""
    cap = tmp / "modbus-operations.pcap"
    steps = json.loads(cap.with_suffix(".json").read_text())
    out = tmp / "operations-out"
    learn = steps["tamper"] - steps["start"] - 0.5
    assert main(["audit", str(cap), "--learn-for", f"{learn:.3f}s", "--out", str(out),
                 "--format", "json"]) == 0
    alerts = {}
    for line in (out / "alerts.ndjson").open():
        a = json.loads(line)
        alerts[a["rule"]["id"]] = a
    value = alerts["otsec-baseline-value-out-of-range"]
    assert value["source"]["ip"] == "10.77.0.20" and "wrote 950" in value["message"]
    assert value["otsec"]["alert"]["count"] == 1
    down = alerts["otsec-net-device-unresponsive"]
    assert down["source"]["ip"] == "10.77.0.10"
    start = epoch(down["event"]["start"])
    assert steps["hang"] + 10 <= start <= steps["resume"]
    # (the flooder is a new asset when it asked ARP for the PLC during the capture)
    assert set(alerts) - {"otsec-baseline-new-asset"} == {
        "otsec-modbus-write", "otsec-baseline-value-out-of-range",
        "otsec-net-device-unresponsive", "otsec-baseline-silent-edge",
        "otsec-net-connection-flood"}
    silent = alerts["otsec-baseline-silent-edge"]
    assert silent["source"]["ip"] == "10.77.0.20"  # the operator, not the SCADA station


def insider_audit(tmp: Path, protocol: str) -> tuple[list[dict], list[dict]]:
    base = tmp / f"{protocol}.baseline.json"
    assert main(["learn", str(tmp / f"{protocol}-normal.pcap"), "--baseline", str(base)]) == 0
    out = tmp / f"{protocol}-insider-out"
    assert main(["audit", str(tmp / f"{protocol}-insider.pcap"), "--baseline", str(base),
                 "--out", str(out), "--format", "json"]) == 0
    return [[json.loads(x) for x in (out / f).read_text().splitlines()]
            for f in ("alerts.ndjson", "incidents.ndjson")]


def dnp3_insider_steps_are_caught(tmp: Path) -> None:
    """The SCADA master's host (opendnp3) sends FC 21 well into a session and operates a
    relay: the first was learned only at start-up, so both steps alert."""
    alerts, incidents = insider_audit(tmp, "dnp3")
    assert all(a["source"]["ip"] == "10.77.0.20" for a in alerts)
    rules = {a["rule"]["id"] for a in alerts}
    assert "otsec-dnp3-disable-unsolicited" in rules and "otsec-dnp3-control" in rules
    assert any("middle of a connection" in a["message"] for a in alerts)
    causes = sorted(i["otsec"]["incident"]["cause"] for i in incidents)
    assert causes == ["loss of availability", "process change"], causes


def modbus_insider_steps_are_caught(tmp: Path) -> None:
    """The known HMI (pymodbus) writes a register range it never wrote and sweeps unit ids
    one a second: against the learned baseline each step is one incident, none lost."""
    alerts, incidents = insider_audit(tmp, "modbus")
    assert all(a["source"]["ip"] == "10.77.0.20" for a in alerts)  # the HMI, not the PLC
    rules = {a["rule"]["id"] for a in alerts}
    assert {"otsec-modbus-write", "otsec-baseline-new-range", "otsec-baseline-new-unit"} <= rules
    causes = sorted(i["otsec"]["incident"]["cause"] for i in incidents)
    assert causes == ["discovery", "process change"], causes  # two steps, two incidents
    assert sum(i["otsec"]["incident"]["alerts"] for i in incidents) == len(alerts)
