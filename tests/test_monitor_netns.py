"""The live sensor in network namespaces: replay a sample over a veth pair, compare."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from otsec import _core
from otsec.audit import run_audit

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pcaps" / "modbus-intrusion.pcap"
PublicTmp = Callable[[str], Path]
# every test process its own namespaces (parallel workers, parallel runs)
NS_TX, NS_RX = f"otsec-tx-{os.getpid()}", f"otsec-rx-{os.getpid()}"
pytestmark = pytest.mark.netns


def reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not shutil.which("ip"):
        return "ip (iproute2) is not installed"
    name = f"otsec-probe-{os.getpid()}"  # workers collect at the same time
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True,
                           check=False)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None if probe.returncode == 0 else "cannot create network namespaces here"


REASON = reason()


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def veth() -> object:
    for ns in (NS_TX, NS_RX):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    sh("ip", "netns", "add", NS_TX)
    sh("ip", "netns", "add", NS_RX)
    sh("ip", "link", "add", "mirror0", "netns", NS_RX, "type", "veth", "peer", "name", "feed0",
       "netns", NS_TX)
    for ns, dev in ((NS_TX, "feed0"), (NS_RX, "mirror0")):
        # no IPv6 autoconfiguration: the kernel itself would send solicitations
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
        sh("ip", "-n", ns, "link", "set", dev, "up")
        if shutil.which("ethtool"):
            subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "off",
                            "gso", "off", "tso", "off"], capture_output=True, check=False)
    try:
        yield
    finally:
        for ns in (NS_TX, NS_RX):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def sensor_pid(parent: int) -> int:
    """The python process under `ip netns exec` (it execs, so usually the same pid)."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    kids = children.read_text().split() if children.exists() else []
    return int(kids[0]) if kids else parent


REPLAY = """
import socket, sys, time
sys.path.insert(0, {root!r})
from otsec import _core
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("feed0", 0))
cap = _core.Capture({pcap!r})
i = 0
while not cap.finished:
    for ts, lt, data, wl in cap.read():
        s.send(data)
        i += 1
        if i % 50 == 0:
            time.sleep(0.002)
"""


def send_sample(pcap: Path = SAMPLE) -> None:
    """Send the sample into the mirror port, from the other namespace."""
    subprocess.run(["ip", "netns", "exec", NS_TX, sys.executable, "-c",
                    REPLAY.format(root=str(ROOT), pcap=str(pcap))], check=True, timeout=120)


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("workers", [1, 2])
def test_live_sensor_sees_every_pdu_and_stops_cleanly(veth: object, tmp_path: Path,
                                                      public_tmp: PublicTmp, workers: int) -> None:
    out = public_tmp("otsec-live-")
    sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(out),
                               "--flush-every", "1", "--workers", str(workers)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):  # the ring is up once the first flush wrote summary.json
            if (out / "summary.json").exists():
                break
            time.sleep(0.1)
        assert sensor.poll() is None, sensor.stderr.read() if sensor.stderr else ""
        uids = [line for line in Path(f"/proc/{sensor_pid(sensor.pid)}/status").read_text()
                .splitlines() if line.startswith("Uid:")]
        assert uids and uids[0].split()[1] != "0"  # root was dropped after opening the ring
        send_sample()
        time.sleep(1.5)
        started = time.monotonic()
        sensor.send_signal(signal.SIGTERM)
        stdout, stderr = sensor.communicate(timeout=30)
        assert time.monotonic() - started < 10  # stops within seconds
    finally:
        if sensor.poll() is None:
            sensor.kill()
    assert sensor.returncode == 0, stderr[-2000:]
    assert "stopped:" in stdout
    offline = run_audit([SAMPLE], tmp_path / "offline")
    live = json.loads((out / "summary.json").read_text())
    assert live["workers"] == workers
    assert "<svg" in (out / "report.html").read_text()  # the report is kept for a monitor too
    assert live["pdus"] == offline.summary["pdus"]  # every PDU the audit sees is seen live
    events = (out / "events.ndjson").read_text().splitlines()
    assert len(events) == sum(offline.summary["pdus"].values())  # none twice, none lost
    live_rules = {json.loads(x)["rule"]["id"] for x in (out / "alerts.ndjson").open()}
    assert live_rules == {a["rule"]["id"] for a in offline.alerts}
    # the operations view: every request and answer counted, in minutes of the replay
    minutes = [json.loads(x)["otsec"]["metrics"] for x in (out / "metrics.ndjson").open()]
    ops = offline.summary["operations"]
    assert sum(m["requests"] for m in minutes) == ops["requests"] > 0
    assert sum(m["responses"] for m in minutes) == ops["responses"]
    assert live["operations"]["requests"] == ops["requests"]
    cap = _core.Capture(str(SAMPLE))
    sent = 0
    while not cap.finished:
        sent += len(cap.read())
    assert live["packets"] <= sent  # the kernel filter kept only what otsec needs


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("workers", [1, 2])
def test_live_sensor_reads_fragments_and_tunnels(veth: object, tmp_path: Path,
                                                 public_tmp: PublicTmp, workers: int) -> None:
    """Modbus writes whose requests alone come in IPv4 fragments (six connections), an S7
    PLC stop over MPLS and a DNP3 restart in VXLAN: past the kernel filter and the workers'
    flow hash, the sensor sees what an audit of the capture sees."""
    pytest.importorskip("scapy")
    from tests.test_evasion import OUTER, SESSIONS, fragmented, session, wrpcap

    packets = []
    for name, port, exchanges, net in SESSIONS:
        if name == "modbus":  # six connections: each may hash apart from its fragments
            for n in range(net, net + 6):
                s = session(port, exchanges, n, [1 << 16])
                packets += [q for i, p in enumerate(s)
                            for q in (fragmented([p], 8) if i % 2 == 0 and i > 1 else [p])]
            continue
        s = session(port, exchanges, net, [1 << 16])
        packets += [OUTER["mpls" if name == "s7comm" else "vxlan"](p) for p in s]
    pcap = public_tmp("otsec-tunnels-") / "tunnels.pcap"
    wrpcap(str(pcap), packets)
    out = public_tmp("otsec-live-")
    sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(out),
                               "--flush-every", "1", "--workers", str(workers)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if (out / "summary.json").exists():
                break
            time.sleep(0.1)
        send_sample(pcap)
        time.sleep(1.5)
        sensor.send_signal(signal.SIGTERM)
        _, stderr = sensor.communicate(timeout=30)
    finally:
        if sensor.poll() is None:
            sensor.kill()
    assert sensor.returncode == 0, stderr[-2000:]
    offline = run_audit([pcap], tmp_path / "offline")
    live = json.loads((out / "summary.json").read_text())
    assert offline.summary["pdus"] == {"modbus": 48, "s7comm": 4, "dnp3": 4}
    assert live["pdus"] == offline.summary["pdus"]
    assert live["anomalies"] == offline.summary["anomalies"] == {}
    live_rules = {json.loads(x)["rule"]["id"] for x in (out / "alerts.ndjson").open()}
    assert live_rules == {a["rule"]["id"] for a in offline.alerts}


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_sensor_never_transmits(veth: object, tmp_path: Path) -> None:
    def tx_packets() -> int:
        text = subprocess.run(["ip", "netns", "exec", NS_RX, "cat",
                               "/sys/class/net/mirror0/statistics/tx_packets"],
                              capture_output=True, text=True, check=True).stdout
        return int(text)

    before = tx_packets()
    sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(tmp_path / "o"),
                               "--flush-every", "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        send_sample()
        time.sleep(1)
    finally:
        sensor.send_signal(signal.SIGTERM)
        sensor.wait(timeout=30)
    assert tx_packets() == before  # receive-only: nothing left the monitored interface


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("workers", [1, 2])
def test_state_survives_a_restart(veth: object, public_tmp: PublicTmp, workers: int) -> None:
    out = public_tmp("otsec-state-")

    def run(replay: bool) -> dict:
        sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                                   "monitor", "-i", "mirror0", "--out", str(out),
                                   "--flush-every", "1", "--workers", str(workers)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(2.5)
        if replay:
            send_sample()
            time.sleep(2.5)
        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=60)
        assert sensor.returncode == 0, err[-2000:]
        return {a["entity"]["id"]: a for a in json.loads((out / "assets.json").read_text())}

    first = run(replay=True)
    assert len(first) == 3 and (out / "state.json").exists()
    second = run(replay=False)  # no traffic at all this time
    assert second.keys() == first.keys()
    plc = "00-80-F4-10-00-0A"
    assert second[plc]["entity"]["sub_type"] == "plc"
    assert second[plc]["otsec"]["asset"]["packets"] == first[plc]["otsec"]["asset"]["packets"]


SITE_RULE = """
rules:
  - id: site-any-read
    name: Holding registers read
    description: Added while the sensor runs, picked up on SIGHUP.
    severity: low
    category: recon
    techniques: [T0801]
    reference: https://example.invalid/runbook
    protocol: modbus
    match: {direction: request, function_code: 3}
    message: "read holding registers of"
  - id: site-plc-read
    name: Holding registers of a PLC read
    description: A role condition, matched in each worker's core with the roles it asks for.
    severity: low
    category: recon
    techniques: [T0801]
    reference: https://example.invalid/runbook
    protocol: modbus
    match: {direction: request, function_code: 3, destination_role: plc}
    message: "read holding registers of"
"""


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_rules(veth: object, public_tmp: PublicTmp, workers: int) -> None:
    out = public_tmp("otsec-hup-")
    rules = out.parent / f"{out.name}-rules.yaml"
    rules.write_text("rules: []\n")
    rules.chmod(0o644)
    sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(out), "--rules",
                               str(rules), "--flush-every", "1", "--workers", str(workers)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    rules.write_text(SITE_RULE)
    os.kill(sensor.pid, signal.SIGHUP)
    time.sleep(1.5)
    send_sample()
    time.sleep(2)
    sensor.send_signal(signal.SIGTERM)
    _, err = sensor.communicate(timeout=60)
    assert sensor.returncode == 0, err[-2000:]
    rules_seen = {json.loads(x)["rule"]["id"] for x in (out / "alerts.ndjson").open()}
    assert {"site-any-read", "site-plc-read"} <= rules_seen


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_live_sensor_protects_with_a_baseline(veth: object, tmp_path: Path,
                                              public_tmp: PublicTmp) -> None:
    """With a learned baseline the sensor reports what the offline audit reports: the
    core watches what is new and hands it over."""
    from otsec.audit import run_learn

    baseline = public_tmp("otsec-base-") / "base.json"
    run_learn([ROOT / "pcaps" / "modbus-normal.pcap"]).save(baseline)
    baseline.parent.chmod(0o777)
    baseline.chmod(0o666)
    out = public_tmp("otsec-live-")
    sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(out),
                               "--baseline", str(baseline), "--flush-every", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if (out / "summary.json").exists():
                break
            time.sleep(0.1)
        assert sensor.poll() is None, sensor.stderr.read() if sensor.stderr else ""
        send_sample()
        time.sleep(1.5)
        sensor.send_signal(signal.SIGTERM)
        _stdout, stderr = sensor.communicate(timeout=30)
    finally:
        if sensor.poll() is None:
            sensor.kill()
    assert sensor.returncode == 0, stderr[-2000:]
    offline = run_audit([SAMPLE], tmp_path / "offline",
                        baseline=run_learn([ROOT / "pcaps" / "modbus-normal.pcap"]))
    live_rules = {json.loads(x)["rule"]["id"] for x in (out / "alerts.ndjson").open()}
    expected = {a["rule"]["id"] for a in offline.alerts}
    assert {"otsec-baseline-new-asset", "otsec-baseline-rogue-master"} <= expected
    assert live_rules == expected
