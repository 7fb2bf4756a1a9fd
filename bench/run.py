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
    audit = [sys.executable, "-m", "otsec", "audit", str(cap), "--format", "json", "--out"]
    with tempfile.TemporaryDirectory() as out:
        full = best_of([*audit, out], args.repeat)
        lean = best_of([*audit, out, "--no-events"], args.repeat)
    tshark = best_of(["tshark", "-q", "-z", "io,phs", "-r", str(cap)], args.repeat)
    print(f"capture: {cap} ({packets} packets, {cap.stat().st_size / 1e6:.1f} MB)")
    print(f"tshark -q -z io,phs        : {tshark:6.2f} s {packets / tshark:>10,.0f} packets/s")
    print(f"otsec audit                : {full:6.2f} s {packets / full:>10,.0f} packets/s"
          f"  ratio tshark/otsec {tshark / full:.2f}x")
    print(f"otsec audit --no-events    : {lean:6.2f} s {packets / lean:>10,.0f} packets/s"
          f"  ratio tshark/otsec {tshark / lean:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
