#!/usr/bin/env python3
"""Memory the sensor holds under what an attacker or a long year sends.

    python3 bench/memory.py [--flows 1000000] [--packets 20000000]

- flood: ``--flows`` one-shot TCP flows to one PLC's port 502 from 200k spoofed
  sources, each with a valid Modbus write: peak RSS of the audit (the goal: 400 MB);
- drift: ``--packets`` of polling in which 2% of the packets come from sources never seen
  before, streamed through ``otsec audit -`` (no file on disk): the audit's RSS sampled
  as it runs, which should stay flat once the tables are full.
"""

from __future__ import annotations

import argparse
import random
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_burst import mbap  # noqa: E402
from make_capture import PCAP_HEADER, frame, record  # noqa: E402

SMAC, DMAC = bytes([0, 0x0C, 0x29, 9, 9, 9]), bytes([0, 0x80, 0xF4, 0, 2, 1])
PLC = bytes([10, 1, 0, 10])
T0 = 1_700_000_000.0


def flood(flows: int, sources: int = 200_000) -> Iterator[bytes]:
    rnd = random.Random(3)
    ts = T0
    for i in range(flows):
        s = rnd.randrange(sources)
        src = bytes([10, 200 + (s >> 16), (s >> 8) & 0xFF, s & 0xFF])
        seq, sport = rnd.randrange(1 << 32), 1024 + i % 60000
        ts += 0.00005
        yield record(ts, frame(SMAC, DMAC, src, PLC, sport, 502, seq, 0, 0x02, b""))
        ts += 0.00005
        write = mbap(i & 0xFFFF, 6, struct.pack("!HH", 10 + i % 5, i & 0xFFFF))
        yield record(ts, frame(SMAC, DMAC, src, PLC, sport, 502, seq + 1, 1, 0x18, write))


def drift(packets: int, new_share: float = 0.02) -> Iterator[bytes]:
    """20 HMIs polling 5 PLCs; every 1/new_share-th packet comes from a new source."""
    rnd = random.Random(5)
    every = round(1 / new_share)
    seqs = [rnd.randrange(1 << 31) for _ in range(20)]
    read = struct.pack("!HH", 0, 10)
    newcomer = 0
    for i in range(packets):
        ts = T0 + i * 0.0005
        if i % every == 0:
            newcomer += 1
            src = bytes([172, 16 + (newcomer >> 16 & 0x0F), newcomer >> 8 & 0xFF,
                         newcomer & 0xFF])
            yield record(ts, frame(SMAC, DMAC, src, PLC, 1024 + newcomer % 60000, 502,
                                   newcomer, 1, 0x18, mbap(newcomer & 0xFFFF, 3, read)))
            continue
        c = i % 20
        client, server = bytes([10, 1, 0, 100 + c]), bytes([10, 1, 0, 10 + c % 5])
        if (i // 20) % 2 == 0:
            yield record(ts, frame(SMAC, DMAC, client, server, 40000 + c, 502, seqs[c], 1,
                                   0x18, mbap(i & 0xFFFF, 3, read)))
            seqs[c] = (seqs[c] + 12) & 0xFFFFFFFF
        else:
            reply = bytes([20]) + bytes(20)
            yield record(ts, frame(DMAC, SMAC, server, client, 502, 40000 + c, 1, seqs[c],
                                   0x18, mbap((i - 20) & 0xFFFF, 3, reply)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def audit(records: Iterator[bytes], every: float = 2.0) -> tuple[list[float], float]:
    """Stream ``records`` into ``otsec audit -``; RSS samples (MB) and the peak."""
    proc = subprocess.Popen([sys.executable, "-m", "otsec", "audit", "-", "--no-events",
                             "--out", str(HERE / "out" / "memory-out"), "--format", "json"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None
    samples: list[float] = []
    peak = 0.0
    next_sample = time.monotonic() + every
    proc.stdin.write(PCAP_HEADER)
    batch = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= 10_000:
            proc.stdin.write(b"".join(batch))
            batch = []
            if time.monotonic() >= next_sample:
                next_sample += every
                samples.append(rss_mb(proc.pid))
                peak = max(peak, samples[-1])
    proc.stdin.write(b"".join(batch))
    proc.stdin.close()
    while proc.poll() is None:
        try:
            peak = max(peak, rss_mb(proc.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    proc.wait()
    return samples, peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--packets", type=int, default=20_000_000)
    args = ap.parse_args()
    (HERE / "out").mkdir(exist_ok=True)
    _samples, peak = audit(flood(args.flows))
    print(f"flood: {args.flows:,} one-shot flows with a write each, 200k sources: "
          f"peak RSS {peak:.0f} MB")
    samples, peak = audit(drift(args.packets))
    quarter = max(len(samples) // 4, 1)
    marks = ", ".join(f"{s:.0f}" for s in samples[quarter - 1::quarter])
    print(f"drift: {args.packets:,} packets, 2% from new sources: RSS by quarter of the run "
          f"{marks} MB, peak {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
