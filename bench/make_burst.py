#!/usr/bin/env python3
"""Captures that stress the sensor's alert path, not its packet path.

- burst: one-packet Modbus requests from ``sources`` spoofed sources, each sending one
  request of each of 13 alerting kinds (writes, diagnostics, identification, programming):
  13 x sources distinct alerts within seconds;
- again: ``hmis`` HMIs writing one register every ``every`` seconds for ``days`` days, so
  the same finding comes back after its alert window again and again.

    python bench/make_burst.py burst OUT.pcap [--sources 1000]
    python bench/make_burst.py again OUT.pcap [--hmis 50 --days 30]
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_capture import PCAP_HEADER, frame, record  # noqa: E402

SMAC, DMAC = bytes([0, 0x0C, 0x29, 9, 9, 9]), bytes([0, 0x80, 0xF4, 0, 2, 1])
PLC = bytes([10, 1, 0, 10])
T0 = 1_700_000_000.0
#: (function code, data): requests that each raise a different built-in rule
REQUESTS = [
    (5, struct.pack("!HH", 1, 0xFF00)),
    (6, struct.pack("!HH", 10, 950)),
    (15, struct.pack("!HHB", 1, 8, 1) + b"\x01"),
    (16, struct.pack("!HHB", 10, 1, 2) + b"\x03\xb6"),
    (8, struct.pack("!HH", 0x0004, 0)),
    (8, struct.pack("!HH", 0x0001, 0)),
    (8, struct.pack("!HH", 0x000A, 0)),
    (43, bytes([0x0E, 1, 0])),
    (17, b""),
    (90, bytes([0, 0x41])),
    (40, b""),
    (125, b""),
    (22, struct.pack("!HHH", 10, 0xFF00, 0x0012)),
]


def mbap(tid: int, fc: int, data: bytes, unit: int = 1) -> bytes:
    pdu = bytes([fc]) + data
    return struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def burst(sources: int, spacing: float = 0.0002) -> Iterator[bytes]:
    ts = T0
    for i in range(sources):
        src = bytes([10, 66, (i >> 8) & 0xFF, i & 0xFF])
        for k, (fc, data) in enumerate(REQUESTS):
            ts += spacing
            yield record(ts, frame(SMAC, DMAC, src, PLC, 20000 + k, 502, 1000 + i, 1, 0x18,
                                   mbap(i & 0xFFFF, fc, data)))


def again(hmis: int, days: float, every: float = 7200.0) -> Iterator[bytes]:
    ticks = int(days * 86400 / every)
    for t in range(ticks):
        for h in range(hmis):
            ts = T0 + t * every + h * 0.5
            src = bytes([10, 2, 0, 10 + h])
            yield record(ts, frame(SMAC, DMAC, src, PLC, 30000 + h, 502, 1000 + t * 20, 1,
                                   0x18, mbap(t & 0xFFFF, 6, struct.pack("!HH", 10, 50 + t % 7))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("kind", choices=["burst", "again"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--hmis", type=int, default=50)
    ap.add_argument("--days", type=float, default=30)
    args = ap.parse_args()
    records = burst(args.sources) if args.kind == "burst" else again(args.hmis, args.days)
    n = 0
    with args.out.open("wb") as fh:
        fh.write(PCAP_HEADER)
        for rec in records:
            fh.write(rec)
            n += 1
    print(f"{args.out}: {n} packets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
