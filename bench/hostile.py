#!/usr/bin/env python3
"""Peak memory and time of ``otsec audit`` on hostile captures: what an attacker (or a
broken network) can make the sensor hold.

    python bench/hostile.py

- flood: 1M SYNs from 1M distinct spoofed sources at one PLC's port 502;
- stalled: 8,000 connections that each lose their first segment and then send 20 more
  (the holes never fill: everything behind them waits);
- amplifier: one valid DNP3 link frame, then 1.5 MB of ``05 64 00`` (start bytes with
  nothing valid behind them) on the same connection to port 20000.
Prints seconds, peak RSS, alerts and what the outputs weigh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_capture import PCAP_HEADER, frame, record  # noqa: E402

HMI_MAC, PLC_MAC = bytes([0, 0x0C, 0x29, 9, 9, 9]), bytes([0, 0x80, 0xF4, 0, 2, 1])
PLC = bytes([10, 1, 0, 10])
T0 = 1_700_000_000.0


def flood() -> Iterator[bytes]:
    for i in range(1_000_000):
        src = bytes([10, 100 + (i >> 16), (i >> 8) & 0xFF, i & 0xFF])
        yield record(T0 + i * 0.00005,
                     frame(HMI_MAC, PLC_MAC, src, PLC, 1024 + i % 60000, 502, i * 7919 % 2**32, 0,
                           0x02, b""))


def stalled() -> Iterator[bytes]:
    payload = bytes(1400)
    ts = T0
    for c in range(8000):
        src = bytes([10, 2, c >> 8, c & 0xFF])
        seq = 1000
        ts += 0.0001
        yield record(ts, frame(HMI_MAC, PLC_MAC, src, PLC, 40000, 502, seq - 1, 0, 0x02, b""))
        yield record(ts, frame(PLC_MAC, HMI_MAC, PLC, src, 502, 40000, 5000, seq, 0x12, b""))
        for k in range(1, 21):  # segment 0 never arrives
            yield record(ts, frame(HMI_MAC, PLC_MAC, src, PLC, 40000, 502, seq + k * 1400,
                                   5001, 0x18, payload))


def amplifier() -> Iterator[bytes]:
    from otsec import _core

    head = bytes([0x05, 0x64, 0x05, 0xC9, 0x0A, 0x00, 0x01, 0x00])  # a valid link frame
    valid = head + _core.dnp3_crc(head).to_bytes(2, "little")
    src, chunk = bytes([10, 3, 0, 1]), b"\x05\x64\x00" * 486
    seq = 1000
    yield record(T0, frame(HMI_MAC, PLC_MAC, src, PLC, 40000, 20000, seq, 1, 0x18, valid))
    seq += len(valid)
    for i in range(1_500_000 // len(chunk)):
        yield record(T0 + i * 0.001, frame(HMI_MAC, PLC_MAC, src, PLC, 40000, 20000, seq, 1,
                                           0x18, chunk))
        seq += len(chunk)


def run(name: str, make: Iterator[bytes]) -> None:
    cap = HERE / "out" / f"hostile-{name}.pcap"
    if not cap.exists():
        cap.parent.mkdir(exist_ok=True)
        with cap.open("wb") as fh:
            fh.write(PCAP_HEADER)
            for rec in make:
                fh.write(rec)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "otsec", "audit", str(cap), "--out", out,
                                 "--format", "json"], stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        summary = json.loads((Path(out) / "summary.json").read_text())
        weight = sum(f.stat().st_size for f in Path(out).iterdir()) / 1e6
    print(f"{name:<10} {cap.stat().st_size / 1e6:7.1f} MB capture: {seconds:6.2f} s, "
          f"peak RSS {usage.ru_maxrss / 1024:,.0f} MB, exit {os.waitstatus_to_exitcode(status)}, "
          f"alerts {summary['alerts']['total']}, assets {summary['assets']['total']}, "
          f"outputs {weight:.1f} MB, reassembly {summary['reassembly']}, "
          f"anomalies {sum(summary['anomalies'].values())}")


def main() -> int:
    for name, make in (("flood", flood()), ("stalled", stalled()), ("amplifier", amplifier())):
        run(name, make)
    return 0


if __name__ == "__main__":
    sys.exit(main())
