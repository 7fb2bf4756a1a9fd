"""Write a large mixed plant capture from the real-stack samples (Modbus via pymodbus,
S7comm via python-snap7, DNP3 via opendnp3): the normal samples copied many times, each
copy with its own addresses and a small time offset, interleaved; the intrusion samples
once, in the middle.

    python bench/make_mixed.py OUT.pcap [--packets 500000]
"""

from __future__ import annotations

import heapq
from pathlib import Path

from make_capture import PCAP_HEADER, record
from make_capture import main as command_line

from otsec import _core

SAMPLES = Path(__file__).resolve().parents[1] / "pcaps"


def frames(path: Path) -> list[tuple[float, bytes]]:
    cap = _core.Capture(str(path))
    out: list[tuple[float, bytes]] = []
    while not cap.finished:
        out += [(ts, data) for ts, lt, data, _w in cap.read() if lt == 1]
    return out


def readdress(frame: bytes, copy: int) -> bytes:
    """Move the IPv4 addresses of one copy into their own /16 (10.<100 + copy>.x.y)."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return frame
    hi, lo = 100 + (copy >> 8), copy & 0xFF
    data = bytearray(frame)
    for off in (26, 30):
        if data[off] == 10:
            data[off + 1], data[off + 2] = hi % 256, lo
    return bytes(data)


def write(out: Path, packets: int) -> int:
    normal = [frames(p) for p in sorted(SAMPLES.glob("*-normal.pcap"))]
    intrusion = [frames(p) for p in sorted(SAMPLES.glob("*-intrusion.pcap"))]
    per_round = sum(len(s) for s in normal)
    copies = max(1, packets // per_round + 1)
    streams = []
    for copy in range(copies):
        for i, sample in enumerate(normal):
            t0 = sample[0][0]
            streams.append([(1_700_000_000 + (ts - t0) + copy * 0.37 + i * 0.011, copy, f)
                            for ts, f in sample])
    for i, sample in enumerate(intrusion):
        t0 = sample[0][0]
        start = 1_700_000_000 + copies * 0.37 / 2 + i * 0.013
        streams.append([(start + (ts - t0), copies, f) for ts, f in sample])
    n = 0
    with out.open("wb") as fh:
        fh.write(PCAP_HEADER)
        for ts, copy, frame in heapq.merge(*streams, key=lambda x: x[0]):
            fh.write(record(ts, readdress(frame, copy)))
            n += 1
            if n >= packets:
                break
    return n


if __name__ == "__main__":
    command_line(write, __doc__ or "")
