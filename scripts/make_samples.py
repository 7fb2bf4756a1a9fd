#!/usr/bin/env python3
"""Generate the sample captures in pcaps/ from real protocol stacks (needs root).

Stacks: pymodbus (Modbus/TCP), python-snap7 (S7comm), opendnp3 via yadnp3 (DNP3). For
each protocol two captures: normal polling, and the same with an intruder; for Modbus and
DNP3 a third, "insider", where the known HMI or SCADA master itself attacks (a new register
range and a unit sweep; FC 21 mid-session and a relay operation). For Modbus also
"operations": an operator adjusts a setpoint within 40-60 every cycle while a SCADA station
polls once a second, then the operator's host writes 950 into the setpoint, then the PLC
hangs (its process stopped) for HANG seconds, comes back, is slowed for SLOW seconds, the
operator stops polling (the station goes on for SILENCE seconds), and a SYN flood hits the
PLC; the times of these steps go to a JSON file next to the capture.

A small plant network is built on this machine only: one network namespace per host,
veth pairs into a Linux bridge in a "switch" namespace, addresses in 10.77.0.0/24 that
exist inside those namespaces alone (no uplink, no route out). tcpdump on the bridge
captures everything. Everything is torn down at the end, also on failure.

    sudo python scripts/make_samples.py [--out pcaps] [--seconds 20] [--kinds operations]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent
STACKS = {  # protocol: (stack script, server port, serves one client at a time)
    "modbus": (ROOT / "stacks" / "modbus_stack.py", 502, False),
    "s7": (ROOT / "stacks" / "s7_stack.py", 102, False),
    "dnp3": (ROOT / "stacks" / "dnp3_stack.py", 20000, True),
}
INSIDERS = {"modbus", "dnp3"}  # stacks with steps a known host takes (the HMI itself)
HANG = 13.0  # seconds the PLC stays hung in the operations capture (outages count from 10)
SILENCE = 35.0  # seconds the operator's polling is missed before the flood (30 make silence)
SLOW = 8.0  # seconds it is slowed afterwards (stopped 0.35 s of every 0.7 s: out of step
# with the operator's half-second cycle, so that about half of its requests wait)
PREFIX = os.environ.get("OTSEC_NETNS_PREFIX", "otsec")  # names of the namespaces made here
SWITCH = f"{PREFIX}-sw"
HOSTS = {  # name: (address, MAC); the PLC's MAC has Schneider Electric's OUI
    "plc": ("10.77.0.10", "00:80:f4:10:00:0a"),
    "hmi": ("10.77.0.20", "00:0c:29:20:00:14"),
    "intruder": ("10.77.0.66", "02:42:de:ad:00:42"),
    "scada": ("10.77.0.30", "00:0c:29:30:00:1e"),  # a second station (operations sample)
}


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def ns(name: str) -> str:
    return f"{PREFIX}-{name}"


def teardown() -> None:
    for name in [*HOSTS, "sw"]:
        sh("ip", "netns", "del", ns(name), check=False)


@contextlib.contextmanager
def plant() -> Iterator[None]:
    """The namespaces, veths and bridge; removed on exit whatever happens."""
    teardown()
    try:
        sh("ip", "netns", "add", SWITCH)
        sh("ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", SWITCH, "link", "set", "br0", "up")
        for name, (addr, mac) in HOSTS.items():
            host = ns(name)
            sh("ip", "netns", "add", host)
            sh("ip", "link", "add", "eth0", "netns", host, "address", mac, "type", "veth",
               "peer", "name", f"p-{name}", "netns", SWITCH)
            sh("ip", "-n", host, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", host, "link", "set", "lo", "up")
            sh("ip", "-n", host, "link", "set", "eth0", "up")
            sh("ip", "-n", SWITCH, "link", "set", f"p-{name}", "master", "br0")
            sh("ip", "-n", SWITCH, "link", "set", f"p-{name}", "up")
            if shutil.which("ethtool"):  # real MTU-sized frames with real checksums
                for where, dev in ((host, "eth0"), (SWITCH, f"p-{name}")):
                    sh("ip", "netns", "exec", where, "ethtool", "-K", dev, "tx", "off", "rx",
                       "off", "tso", "off", "gso", "off", "gro", "off", check=False)
        yield
    finally:
        teardown()


def run_in(name: str, stack: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", ns(name), sys.executable, str(stack), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_port(name: str, addr: str, port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    probe = f"import socket; socket.create_connection(('{addr}', {port}), 1).close()"
    while time.monotonic() < end:
        done = sh("ip", "netns", "exec", ns(name), sys.executable, "-c", probe, check=False)
        if done.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{addr}:{port} did not come up")


@contextlib.contextmanager
def capture(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["ip", "netns", "exec", SWITCH, "tcpdump", "-i", "br0", "-U", "-s",
                             "0", "-w", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    time.sleep(1.0)
    try:
        yield
    finally:
        time.sleep(0.5)
        proc.terminate()
        proc.wait(timeout=10)


def scenario(out: Path, protocol: str, seconds: float,
             attacker_role: tuple[str, str] | None) -> None:
    """Normal polling, and (``attacker_role``: host and role) an attack half way through."""
    plc_addr = HOSTS["plc"][0]
    stack, port, exclusive = STACKS[protocol]
    with capture(out):
        server = run_in("plc", stack, "plc", "--bind", plc_addr)
        try:
            wait_port("hmi", plc_addr, port)
            hmi = run_in("hmi", stack, "hmi", "--server", plc_addr, "--seconds", str(seconds))
            if attacker_role is not None:
                if exclusive:  # a second master would take over the only connection
                    hmi.wait(timeout=seconds + 60)
                else:
                    time.sleep(seconds / 2)
                host, role = attacker_role
                attacker = run_in(host, stack, role, "--server", plc_addr)
                _, err = attacker.communicate(timeout=60)
                if attacker.returncode:
                    raise RuntimeError(f"intruder failed: {err.decode()[-500:]}")
            _, err = hmi.communicate(timeout=seconds + 60)
            if hmi.returncode:
                raise RuntimeError(f"hmi failed: {err.decode()[-500:]}")
        finally:
            server.terminate()
            server.wait(timeout=10)


def operations(out: Path, seconds: float) -> dict[str, float]:
    """The operations capture (Modbus): normal operation for ``seconds`` (at least 12: the
    operator's 21 setpoint values twice over), a setpoint written out of range, a hung
    PLC, its return, a slowed PLC, a poller that stops, a SYN flood. Returns the steps'
    times."""
    plc_addr = HOSTS["plc"][0]
    stack, port, _ = STACKS["modbus"]
    learn = max(seconds, 12.0)
    steps: dict[str, float] = {}
    with capture(out):
        server = run_in("plc", stack, "plc", "--bind", plc_addr)
        try:
            wait_port("hmi", plc_addr, port)
            steps["start"] = time.time()
            scada = run_in("scada", stack, "hmi", "--server", plc_addr, "--seconds", "3600",
                           "--period", "1")
            hmi = run_in("hmi", stack, "operator", "--server", plc_addr, "--seconds",
                         str(learn + HANG + SLOW + 10))
            time.sleep(learn)
            steps["tamper"] = time.time()
            tamper = run_in("hmi", stack, "tamper", "--server", plc_addr)
            _, err = tamper.communicate(timeout=60)
            if tamper.returncode:
                raise RuntimeError(f"tamper failed: {err.decode()[-500:]}")
            time.sleep(2.0)
            steps["hang"] = time.time()
            server.send_signal(signal.SIGSTOP)
            time.sleep(HANG)
            server.send_signal(signal.SIGCONT)
            steps["resume"] = time.time()
            time.sleep(4.0)
            steps["slow"] = time.time()
            while time.time() < steps["slow"] + SLOW:  # answers wait up to 0.35 s
                server.send_signal(signal.SIGSTOP)
                time.sleep(0.35)
                server.send_signal(signal.SIGCONT)
                time.sleep(0.35)
            steps["slow_end"] = time.time()
            _, err = hmi.communicate(timeout=60)
            if hmi.returncode:
                raise RuntimeError(f"operator failed: {err.decode()[-500:]}")
            steps["poller_stops"] = time.time()
            time.sleep(SILENCE)
            steps["flood"] = time.time()
            flood = run_in("intruder", ROOT / "stacks" / "syn_flood.py", plc_addr, "--port",
                           str(port), "--count", "1000", "--seconds", "1")
            _, err = flood.communicate(timeout=60)
            if flood.returncode:
                raise RuntimeError(f"flood failed: {err.decode()[-500:]}")
            time.sleep(1.0)
            scada.terminate()
            scada.wait(timeout=10)
        finally:
            server.send_signal(signal.SIGCONT)
            server.terminate()
            server.wait(timeout=10)
    out.with_suffix(".json").write_text(json.dumps(steps, indent=1) + "\n")
    return steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT.parent / "pcaps")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the polling")
    ap.add_argument("--protocols", nargs="+", choices=sorted(STACKS), default=list(STACKS))
    kinds = ["normal", "intrusion", "insider", "operations"]
    ap.add_argument("--kinds", nargs="+", choices=kinds, default=kinds)
    args = ap.parse_args()
    for tool in ("ip", "tcpdump"):
        if not shutil.which(tool):
            print(f"make_samples: {tool} is missing (apt-get install iproute2 tcpdump)",
                  file=sys.stderr)
            return 2
    with plant():
        for protocol in args.protocols:
            kinds = [("normal", None), ("intrusion", ("intruder", "intruder"))]
            if protocol in INSIDERS:
                kinds.append(("insider", ("hmi", "insider")))
            for kind, attacker_role in kinds:
                if kind not in args.kinds:
                    continue
                out = args.out / f"{protocol}-{kind}.pcap"
                scenario(out, protocol, args.seconds, attacker_role)
                print(out)
            if protocol == "modbus" and "operations" in args.kinds:
                out = args.out / "modbus-operations.pcap"
                operations(out, args.seconds)
                print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
