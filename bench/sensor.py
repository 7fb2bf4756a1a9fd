#!/usr/bin/env python3
"""What an attacker or a slow cluster can do to the live sensor's capture.

    python3 bench/sensor.py flush        # in-process: flush costs after alert floods
    sudo python3 bench/sensor.py live    # a veth pair: packets lost while under strain

flush: the alert-burst capture (13 kinds of finding from 1,000 spoofed sources) and the
repeated-writer capture (50 HMIs writing every 2 h for 30 days: 18,000 alerts) are fed to
a sensor's pipeline; printed: the capture thread's share of each flush (the snapshot),
the writer's (files, incidents), the alerts held in memory and written in all.

live: the sensor on a veth pair in network namespaces; the burst is replayed, then
``--packets`` of steady polling at ``--rate``, while the cluster (on the sensor's own
loopback) is absent, answers 429 to everything, or takes connections and never answers.
Printed: packets sent and seen, the kernel's drops (0 is the goal), the writer's flush
time and the spool.
"""

from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(ROOT))
from live import RX, send, setup, teardown  # noqa: E402
from make_burst import again, burst  # noqa: E402
from make_capture import PCAP_HEADER, write  # noqa: E402

CLUSTERS = {
    "none": None,
    "throttling": """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        body = b'{"error": "too many requests", "status": 429}'
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_HEAD = _answer
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", 9299), H).serve_forever()
""",
    "hung": """
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9299))
s.listen(512)
held = []
while True:
    held.append(s.accept()[0])
""",
}


def write_records(path: Path, records: object) -> int:
    n = 0
    with path.open("wb") as fh:
        fh.write(PCAP_HEADER)
        for rec in records:  # type: ignore[attr-defined]
            fh.write(rec)
            n += 1
    return n


def flush(out: Path) -> None:
    from otsec.monitor import Monitor, MonitorOptions

    for name, records in (("burst", burst(1000)), ("again", again(50, 30))):
        cap = out / f"{name}.pcap"
        if not cap.exists():
            write_records(cap, records)
        folder = Path(tempfile.mkdtemp(prefix="otsec-flush-"))
        try:
            opts = MonitorOptions(iface="lo", out_dir=folder, user=None)
            mon = Monitor(opts)
            outputs = mon._start_outputs()
            mon.pipe.run([cap])  # type: ignore[union-attr]
            began = time.perf_counter()
            snap = mon._snapshot()
            first = time.perf_counter() - began
            outputs.write(snap)
            writer_first = outputs.flush_seconds = time.perf_counter() - began - first
            began = time.perf_counter()
            snap = mon._snapshot()
            again_snap = time.perf_counter() - began
            began = time.perf_counter()
            outputs.write(snap)
            writer_again = time.perf_counter() - began
            summary = outputs.close(mon._snapshot(final=True))
            held = len(mon.pipe.detector.alerts)  # type: ignore[union-attr]
            print(f"{name}: {summary['alerts']['total']} alerts, {held} held open; "
                  f"capture thread {first:.3f} s (first flush), {again_snap:.3f} s (next); "
                  f"writer {writer_first:.3f} s, {writer_again:.3f} s")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def live(out: Path, packets: int, rate: int, clusters: list[str]) -> None:
    burst_cap, steady = out / "burst.pcap", out / f"modbus-{packets}.pcap"
    if not burst_cap.exists():
        write_records(burst_cap, burst(1000))
    if not steady.exists():
        write(steady, packets)
    setup()
    try:
        subprocess.run(["ip", "-n", RX, "link", "set", "lo", "up"], check=True)
        for cluster in clusters:
            trial(burst_cap, steady, rate, cluster)
    finally:
        teardown()


def trial(burst_cap: Path, steady: Path, rate: int, cluster: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="otsec-strain-", dir="/tmp"))
    spool = folder / "spool"
    server = None
    if CLUSTERS[cluster] is not None:
        server = subprocess.Popen(["ip", "netns", "exec", RX, sys.executable, "-c",
                                   CLUSTERS[cluster]])
    es = ["--es", "http://127.0.0.1:9299"] if cluster != "none" else []
    sensor = subprocess.Popen(["ip", "netns", "exec", RX, sys.executable, "-m", "otsec",
                               "monitor", "-i", "mirror0", "--out", str(folder / "out"),
                               "--bpf", "", "--flush-every", "2", "--stay-root", *es],
                              env={"PATH": "/usr/bin:/bin", "OTSEC_SPOOL_DIR": str(spool),
                                   "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if (folder / "out" / "summary.json").exists():
                break
            time.sleep(0.1)
        send(burst_cap, 20_000, False)
        time.sleep(3)  # the burst's alerts are built and flushed while the traffic goes on
        sent = send(steady, rate, False)
        time.sleep(4)
        sensor.send_signal(signal.SIGTERM)
        sensor.wait(timeout=120)
        summary = json.loads((folder / "out" / "summary.json").read_text())
        flush_s = summary["sensor"].get("flush_seconds", {})
        spooled = sum(f.stat().st_size for f in spool.glob("*")) if spool.exists() else 0
        print(f"cluster {cluster:>10}: steady {rate} pkt/s asked, {sent:.0f} sent; "
              f"seen {summary['packets']}, kernel drops {summary.get('kernel_drops', 0)}, "
              f"alerts {summary['alerts']['total']}, writer flush max "
              f"{flush_s.get('max', 0):.2f} s, spool {spooled:,} bytes")
    finally:
        for proc in (sensor, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["flush", "live"])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=50_000)
    ap.add_argument("--clusters", nargs="+", choices=list(CLUSTERS),
                    default=["none", "throttling", "hung"])
    args = ap.parse_args()
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    if args.what == "flush":
        flush(out)
    else:
        live(out, args.packets, args.rate, args.clusters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
