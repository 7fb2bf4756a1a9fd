#!/usr/bin/env python3
"""Throughput of ``otsec audit`` against tshark's full dissection, on the same file, same run.

    python bench/run.py [--packets 500000] [--repeat 3]

Prints packets/s for each and the ratio tshark time / otsec time (higher is better).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_capture import write  # noqa: E402


def best_of(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--capture", type=Path, default=HERE / "out" / "modbus-500k.pcap")
    args = ap.parse_args()
    if not shutil.which("tshark"):
        print("bench: tshark is missing (apt-get install tshark)", file=sys.stderr)
        return 2
    cap: Path = args.capture
    if not cap.exists():
        cap.parent.mkdir(parents=True, exist_ok=True)
        write(cap, args.packets)
    packets = args.packets
    with tempfile.TemporaryDirectory() as out:
        otsec = best_of([sys.executable, "-m", "otsec", "audit", str(cap), "--out", out,
                         "--format", "json"], args.repeat)
    tshark = best_of(["tshark", "-q", "-z", "io,phs", "-r", str(cap)], args.repeat)
    print(f"capture: {cap} ({packets} packets, {cap.stat().st_size / 1e6:.1f} MB)")
    print(f"otsec audit : {otsec:7.2f} s  {packets / otsec:>10,.0f} packets/s")
    print(f"tshark -z io,phs: {tshark:7.2f} s  {packets / tshark:>10,.0f} packets/s")
    print(f"ratio tshark/otsec: {tshark / otsec:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
