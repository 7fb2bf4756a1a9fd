"""The live sensor in network namespaces: replay a sample over a veth pair, compare."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
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


def wait_running(sensor: subprocess.Popen, out: Path) -> None:
    """Until the sensor's first flush (its signal handlers are set by then): a loaded machine
    may take seconds to start it."""
    for _ in range(300):
        if (out / "summary.json").exists() or sensor.poll() is not None:
            break
        time.sleep(0.1)
    assert sensor.poll() is None, sensor.communicate()[1][-2000:]


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
        (out / "summary.json").unlink(missing_ok=True)
        sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                                   "monitor", "-i", "mirror0", "--out", str(out),
                                   "--flush-every", "1", "--workers", str(workers)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_running(sensor, out)
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
    wait_running(sensor, out)
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


def open_folder(prefix: str) -> Path:
    """A folder of root's that any user can pass through (as /etc/otsec or a work folder)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    folder.chmod(0o755)
    return folder


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def with_children(pid: int) -> list[int]:
    """The sensor (started by `ip netns exec`, which usually execs it) and the worker
    processes it forked."""
    if Path(f"/proc/{pid}/comm").read_text().strip() == "ip":
        pid = sensor_pid(pid)
    kids = [int(k) for task in Path(f"/proc/{pid}/task").iterdir()
            for k in (task / "children").read_text().split()]
    return [pid, *kids]


def owner_mode(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, stat.S_IMODE(st.st_mode)


OUTPUTS = {"events.ndjson", "anomalies.ndjson", "metrics.ndjson", "alerts.ndjson",
           "incidents.ndjson", "assets.json", "edges.json", "summary.json", "report.html",
           "state.json"}


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("workers", [1, 2])
def test_the_sensor_and_its_workers_keep_no_privilege(veth: object, workers: int) -> None:
    """Root opens the ring and goes: every capture process runs as nobody with no capability,
    an empty bounding set and no-new-privileges; what it writes is 0640 in the 0750 folders
    it made for itself (the baseline it learns too)."""
    base = open_folder("otsec-priv-")
    out = base / "out"
    baseline = base / "state" / "baseline.json"
    learning = ["--baseline", str(baseline), "--learn-for", "1h"] if workers == 1 else []
    nobody = pwd.getpwnam("nobody")
    try:
        sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                                   "monitor", "-i", "mirror0", "--out", str(out),
                                   "--flush-every", "1", "--workers", str(workers), *learning],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(100):
                if (out / "summary.json").exists():
                    break
                time.sleep(0.1)
            assert sensor.poll() is None, sensor.stderr.read() if sensor.stderr else ""
            processes = with_children(sensor.pid)
            assert len(processes) == (1 if workers == 1 else 1 + workers)
            for pid in processes:
                st = status(pid)
                assert st["Uid"].split() == [str(nobody.pw_uid)] * 4
                assert st["NoNewPrivs"].strip() == "1"
                for name in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
                    assert int(st[name], 16) == 0, (pid, name, st[name])
            send_sample()  # the ring opened as root still delivers
            time.sleep(1.5)
            sensor.send_signal(signal.SIGTERM)
            _stdout, stderr = sensor.communicate(timeout=30)
        finally:
            if sensor.poll() is None:
                sensor.kill()
        assert sensor.returncode == 0, stderr[-2000:]
        assert sum(json.loads((out / "summary.json").read_text())["pdus"].values()) > 0
        assert owner_mode(out) == (nobody.pw_uid, 0o750)
        files = {p.name: owner_mode(p) for p in out.iterdir()}
        assert files.keys() >= OUTPUTS
        assert {name: mode for name, (_uid, mode) in files.items()} == dict.fromkeys(files, 0o640)
        if learning:
            assert owner_mode(baseline.parent) == (nobody.pw_uid, 0o750)
            assert owner_mode(baseline) == (nobody.pw_uid, 0o640)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_links_and_secrets_left_around_are_never_followed(veth: object,
                                                          public_tmp: PublicTmp) -> None:
    """Started by root from a folder holding the baseline beside the cluster's secrets (as
    /etc/otsec), with links to a root-only file left in --out by the user it runs as: no
    link is followed, nothing of root's changes owner, mode or content."""
    from otsec.audit import run_learn

    out = public_tmp("otsec-links-")  # the user's, from a previous run
    vault = open_folder("otsec-vault-")
    secret = vault / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    planted = ("assets.json", "summary.json", "state.json", "report.html", "alerts.ndjson")
    nobody = pwd.getpwnam("nobody")
    for name in (*planted, "incidents.ndjson.tmp"):
        (out / name).symlink_to(secret)
        os.lchown(out / name, nobody.pw_uid, nobody.pw_gid)
    etc = open_folder("otsec-etc-")
    env = etc / "otsec.env"
    env.write_text("OTSEC_ES_PASSWORD=hunter2\n")
    env.chmod(0o600)
    run_learn([ROOT / "pcaps" / "modbus-normal.pcap"]).save(etc / "plant.json")
    (etc / "plant.json").chmod(0o600)
    baseline = (etc / "plant.json").read_bytes()
    try:
        sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                                   "monitor", "-i", "mirror0", "--out", str(out), "--baseline",
                                   "plant.json", "--flush-every", "1"],
                                  cwd=etc, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(100):
                if not (out / "summary.json").is_symlink():
                    break
                time.sleep(0.1)
            send_sample()
            time.sleep(1.5)
            sensor.send_signal(signal.SIGTERM)
            _stdout, stderr = sensor.communicate(timeout=30)
        finally:
            if sensor.poll() is None:
                sensor.kill()
        assert sensor.returncode == 0, stderr[-2000:]
        assert owner_mode(secret) == (0, 0o600) and secret.read_text() == "root's\n"
        for name in planted:  # replaced by the sensor's own files
            assert (out / name).is_file() and not (out / name).is_symlink(), name
        assert not (out / "incidents.ndjson.tmp").exists()
        assert json.loads((out / "assets.json").read_text())
        assert owner_mode(etc) == (0, 0o755)  # the work folder, with the secrets in it
        assert owner_mode(env) == (0, 0o600)
        assert env.read_text() == "OTSEC_ES_PASSWORD=hunter2\n"
        assert owner_mode(etc / "plant.json") == (0, 0o600)
        assert (etc / "plant.json").read_bytes() == baseline  # protecting: only read
        assert sorted(p.name for p in etc.iterdir()) == ["otsec.env", "plant.json"]
    finally:
        shutil.rmtree(vault, ignore_errors=True)
        shutil.rmtree(etc, ignore_errors=True)


@pytest.mark.skipif(REASON is not None or not shutil.which("setpriv"),
                    reason=REASON or "setpriv (util-linux) is not installed")
def test_started_as_a_user_with_capabilities_it_gives_them_up(veth: object,
                                                             public_tmp: PublicTmp) -> None:
    """As the systemd unit starts it: a user with CAP_NET_RAW in its ambient set (and here
    CAP_DAC_READ_SEARCH, to reach an interpreter under /root). Once the ring is open it
    keeps no capability and sets no-new-privileges; the ring still delivers."""
    out = public_tmp("otsec-caps-")
    nobody = pwd.getpwnam("nobody")
    caps = "+net_raw,+dac_read_search"
    sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, "setpriv", f"--reuid={nobody.pw_uid}",
                               f"--regid={nobody.pw_gid}", "--clear-groups", f"--inh-caps={caps}",
                               f"--ambient-caps={caps}", sys.executable, "-m", "otsec", "monitor",
                               "-i", "mirror0", "--out", str(out), "--flush-every", "1"],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=out,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_running(sensor, out)
        st = status(with_children(sensor.pid)[0])
        assert st["Uid"].split() == [str(nobody.pw_uid)] * 4
        assert st["NoNewPrivs"].strip() == "1"
        for name in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(st[name], 16) == 0, (name, st[name])
        send_sample()
        time.sleep(1.5)
        sensor.send_signal(signal.SIGTERM)
        _stdout, stderr = sensor.communicate(timeout=30)
    finally:
        if sensor.poll() is None:
            sensor.kill()
    assert sensor.returncode == 0, stderr[-2000:]
    assert sum(json.loads((out / "summary.json").read_text())["pdus"].values()) > 0


HUNG = """
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9299))
s.listen(64)
held = []
end = time.monotonic() + 120
s.settimeout(1)
while time.monotonic() < end:  # takes connections and requests, never answers
    try:
        held.append(s.accept()[0])
    except OSError:
        pass
"""


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_hung_cluster_blinds_nothing_and_loses_nothing(veth: object, tmp_path: Path,
                                                         public_tmp: PublicTmp,
                                                         workers: int) -> None:
    """A cluster that takes connections and never answers: the files stay current, every
    PDU is seen, the sensor stops in seconds, and the alerts wait in the spool."""
    out, spool = public_tmp("otsec-hung-"), public_tmp("otsec-hung-spool-")
    spool.chmod(0o777)  # the sensor's user after it dropped root
    sh("ip", "-n", NS_RX, "link", "set", "lo", "up")
    hung = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-c", HUNG])
    sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(out), "--es",
                               "http://127.0.0.1:9299", "--flush-every", "1",
                               "--workers", str(workers)],
                              env=dict(os.environ, OTSEC_SPOOL_DIR=str(spool)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    offline = run_audit([SAMPLE], tmp_path / "offline")
    try:
        time.sleep(2.5)
        send_sample()
        seen: dict = {}
        for _ in range(80):  # the files follow the traffic while the cluster hangs
            time.sleep(0.1)
            if (out / "summary.json").exists():
                seen = json.loads((out / "summary.json").read_text())
                if seen["pdus"] == offline.summary["pdus"]:
                    break
        assert seen.get("pdus") == offline.summary["pdus"]
        started = time.monotonic()
        sensor.send_signal(signal.SIGTERM)
        _, stderr = sensor.communicate(timeout=60)
        assert time.monotonic() - started < 20
    finally:
        for proc in (sensor, hung):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert sensor.returncode == 0, stderr[-2000:]
    assert seen["kernel_drops"] == 0
    spooled = {json.loads(x)["_id"] for f in spool.glob("spool-*.ndjson") for x in f.open()}
    alerts = {json.loads(x)["event"]["id"] for x in (out / "alerts.ndjson").open()}
    assert alerts and alerts <= spooled  # every alert waits for the cluster


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_a_restart_keeps_the_alerts_of_the_run_before(veth: object,
                                                     public_tmp: PublicTmp) -> None:
    out = public_tmp("otsec-keep-")

    def run(replay: bool) -> dict[str, dict]:
        sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                                   "monitor", "-i", "mirror0", "--out", str(out),
                                   "--flush-every", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(2.5)
        if replay:
            send_sample()
            time.sleep(2)
        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=60)
        assert sensor.returncode == 0, err[-2000:]
        docs = [json.loads(x) for x in (out / "alerts.ndjson").open()]
        assert len(docs) == len({d["event"]["id"] for d in docs})  # each alert once
        incidents = [json.loads(x)["event"]["id"] for x in (out / "incidents.ndjson").open()]
        assert len(incidents) == len(set(incidents))
        return {d["event"]["id"]: d for d in docs}

    first = run(replay=True)
    assert first
    assert run(replay=False).keys() == first.keys()  # a restart without traffic: all kept
    third = run(replay=True)  # the attack goes on: its alerts go on, none raised anew
    assert third.keys() == first.keys()
    assert sum(d["otsec"]["alert"]["count"] for d in third.values()) > \
        sum(d["otsec"]["alert"]["count"] for d in first.values())


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_a_killed_worker_is_replaced_and_reported(veth: object, tmp_path: Path,
                                                  public_tmp: PublicTmp) -> None:
    out = public_tmp("otsec-crew-")
    sensor = subprocess.Popen(["ip", "netns", "exec", NS_RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(out), "--workers", "2",
                               "--flush-every", "0.5", "--heartbeat", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if (out / "summary.json").exists():
                break
            time.sleep(0.1)
        parent = sensor.pid  # `ip netns exec` execs the sensor
        (victim, _other) = sorted(children(parent))[:2]
        os.kill(victim, signal.SIGKILL)  # what the OOM killer or a crash does
        states = set()
        for _ in range(100):  # reported, and replaced within seconds
            time.sleep(0.1)
            states.add(json.loads((out / "summary.json").read_text())["sensor"].get("state"))
            kids = children(parent)
            if len(kids) >= 2 and victim not in kids and "degraded" in states:
                break
        assert victim not in children(parent) and len(children(parent)) >= 2
        assert "degraded" in states  # the heartbeat said so
        time.sleep(1.5)
        send_sample()  # the new worker reads its predecessor's ring: nothing is lost
        time.sleep(2)
        sensor.send_signal(signal.SIGTERM)
        _, stderr = sensor.communicate(timeout=60)
    finally:
        if sensor.poll() is None:
            sensor.kill()
    assert sensor.returncode == 0, stderr[-2000:]
    assert "capture worker" in stderr and "died" in stderr
    offline = run_audit([SAMPLE], tmp_path / "offline")
    live = json.loads((out / "summary.json").read_text())
    assert live["pdus"] == offline.summary["pdus"]
    died = [json.loads(x) for x in (out / "alerts.ndjson").open()
            if '"otsec-sensor-worker-died"' in x]
    assert died and died[0]["otsec"]["alert"]["count"] == 1
