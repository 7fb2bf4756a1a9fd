#!/usr/bin/env python3
"""Highest replay rate the live sensor takes with zero kernel drops, for 1 and 2 workers.

Needs root (it builds two network namespaces joined by a veth pair). The bench capture
(bench/make_capture.py) is replayed through an AF_PACKET socket at a paced rate into
`otsec monitor`, then the sensor's summary is read: kernel drops and packets seen.

    sudo python3 bench/live.py [--packets 200000] [--rates 20000 50000 100000 200000]
                               [--tcpreplay] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from make_capture import write  # noqa: E402

TX, RX = "otsec-btx", "otsec-brx"
SENDER = """
import socket, sys, time
sys.path.insert(0, {root!r})
from otsec import _core
cap = _core.Capture({pcap!r})
frames = []
while not cap.finished:
    frames += [data for _t, _l, data, _w in cap.read()]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("feed0", 0))
rate, burst = {rate}, 100
start = time.perf_counter()
for i in range(0, len(frames), burst):
    for f in frames[i:i + burst]:
        s.send(f)
    ahead = (i + burst) / rate - (time.perf_counter() - start)
    if ahead > 0:
        time.sleep(ahead)
print(len(frames) / (time.perf_counter() - start))
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def setup() -> None:
    teardown()
    sh("ip", "netns", "add", TX)
    sh("ip", "netns", "add", RX)
    sh("ip", "link", "add", "mirror0", "netns", RX, "type", "veth", "peer", "name", "feed0",
       "netns", TX)
    for ns, dev in ((TX, "feed0"), (RX, "mirror0")):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
        sh("ip", "-n", ns, "link", "set", dev, "up")


def teardown() -> None:
    for ns in (TX, RX):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def send(pcap: Path, rate: int, tcpreplay: bool) -> float:
    """Replay the capture into the veth pair at ``rate``; return the rate achieved."""
    if tcpreplay:
        done = subprocess.run(["ip", "netns", "exec", TX, "tcpreplay", "-i", "feed0",
                               f"--pps={rate}", str(pcap)], capture_output=True, text=True,
                              check=True)
        rated = re.search(r"Rated: .*?([0-9.]+) pps", done.stdout)
        return float(rated.group(1)) if rated else 0.0
    done = subprocess.run(["ip", "netns", "exec", TX, sys.executable, "-c",
                           SENDER.format(root=str(ROOT), pcap=str(pcap), rate=rate)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def trial(pcap: Path, rate: int, workers: int, tcpreplay: bool) -> tuple[float, int, int]:
    out = Path(tempfile.mkdtemp(prefix="otsec-bench-", dir="/tmp"))
    sensor = subprocess.Popen(["ip", "netns", "exec", RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(out), "--bpf", "",
                               "--flush-every", "2", "--workers", str(workers), "--stay-root"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if (out / "summary.json").exists():
            break
        time.sleep(0.1)
    sent = send(pcap, rate, tcpreplay)
    time.sleep(3)
    sensor.send_signal(signal.SIGTERM)
    sensor.wait(timeout=120)
    summary = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return sent, summary["packets"], summary.get("kernel_drops", 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--rates", type=int, nargs="+", default=[20_000, 50_000, 100_000, 200_000])
    ap.add_argument("--tcpreplay", action="store_true",
                    help="replay with tcpreplay (apt-get install tcpreplay), not Python")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    if args.tcpreplay and not shutil.which("tcpreplay"):
        print("bench: tcpreplay is missing (apt-get install tcpreplay)", file=sys.stderr)
        return 2
    pcap = HERE / "out" / f"modbus-{args.packets}.pcap"
    if not pcap.exists():
        pcap.parent.mkdir(parents=True, exist_ok=True)
        write(pcap, args.packets)
    setup()
    try:
        for workers in args.workers:
            best = 0.0
            for rate in args.rates:
                achieved, seen, drops = trial(pcap, rate, workers, args.tcpreplay)
                ok = drops == 0 and seen >= args.packets
                print(f"workers {workers}: asked {rate:>7} pkt/s, sent {achieved:>9.0f} pkt/s, "
                      f"seen {seen}, kernel drops {drops} {'ok' if ok else 'LOSS'}")
                if ok:
                    best = max(best, achieved)
            print(f"workers {workers}: highest rate with zero drops: {best:.0f} pkt/s")
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
