"""Write a large Modbus/TCP capture for benchmarks: many HMIs polling several PLCs.

The frames are laid out byte by byte (Ethernet, IPv4 with checksums, TCP with consistent
sequence numbers) so that tshark and otsec read a plausible, well-formed conversation.
"""

from __future__ import annotations

import argparse
import random
import struct
from collections.abc import Callable
from pathlib import Path

REQUESTS = [  # (function code, request body, response body)
    (3, struct.pack("!HH", 0, 10), bytes([20]) + bytes(20)),
    (4, struct.pack("!HH", 100, 8), bytes([16]) + bytes(16)),
    (1, struct.pack("!HH", 0, 16), bytes([2, 0xAA, 0x55])),
    (6, struct.pack("!HH", 40, 7), struct.pack("!HH", 40, 7)),
    (16, struct.pack("!HHB", 10, 2, 4) + bytes(4), struct.pack("!HH", 10, 2)),
]


#: classic pcap, microsecond timestamps, Ethernet
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def record(ts: float, data: bytes) -> bytes:
    """One pcap record: its header and the frame."""
    sec = int(ts)
    return struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(data), len(data)) + data


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(smac: bytes, dmac: bytes, src: bytes, dst: bytes, sport: int, dport: int, seq: int,
          ack: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dmac + smac + b"\x08\x00" + ip + tcp


def handshakes(conns: list[dict], put: Callable[[bytes], None]) -> None:
    """Each connection's three-way handshake (its sequence numbers move past the SYNs)."""
    for c in conns:
        put(frame(c["cmac"], c["smac"], c["cip"], c["sip"], c["cport"], 502, c["cseq"], 0,
                  0x02, b""))
        put(frame(c["smac"], c["cmac"], c["sip"], c["cip"], 502, c["cport"], c["sseq"],
                  c["cseq"] + 1, 0x12, b""))
        c["cseq"] += 1
        c["sseq"] += 1
        put(frame(c["cmac"], c["smac"], c["cip"], c["sip"], c["cport"], 502, c["cseq"],
                  c["sseq"], 0x10, b""))


def write(path: Path, packets: int, clients: int = 20, servers: int = 5) -> int:
    rnd = random.Random(7)
    conns = []
    for c in range(clients):
        s = c % servers
        conns.append({
            "cmac": bytes([0x00, 0x0C, 0x29, 0, 1, c]), "smac": bytes([0x00, 0x80, 0xF4, 0, 2, s]),
            "cip": bytes([10, 1, 0, 100 + c]), "sip": bytes([10, 1, 0, 10 + s]),
            "cport": 40000 + c, "cseq": rnd.randrange(1 << 32), "sseq": rnd.randrange(1 << 32),
            "tid": 0,
        })  # fmt: skip
    ts = 1_700_000_000.0
    n = 0
    with path.open("wb") as fh:
        fh.write(PCAP_HEADER)

        def put(data: bytes) -> None:
            nonlocal n, ts
            ts += 0.0002
            fh.write(record(ts, data))
            n += 1

        handshakes(conns, put)
        while n < packets:
            c = conns[rnd.randrange(clients)]
            fc, req, resp = REQUESTS[rnd.randrange(len(REQUESTS))]
            c["tid"] = (c["tid"] + 1) & 0xFFFF
            q = struct.pack("!HHHBB", c["tid"], 0, len(req) + 2, 1, fc) + req
            r = struct.pack("!HHHBB", c["tid"], 0, len(resp) + 2, 1, fc) + resp
            m = 0xFFFFFFFF
            put(frame(c["cmac"], c["smac"], c["cip"], c["sip"], c["cport"], 502, c["cseq"] & m,
                      c["sseq"] & m, 0x18, q))
            c["cseq"] += len(q)
            put(frame(c["smac"], c["cmac"], c["sip"], c["cip"], 502, c["cport"], c["sseq"] & m,
                      c["cseq"] & m, 0x18, r))
            c["sseq"] += len(r)
            if rnd.random() < 0.25:
                put(frame(c["cmac"], c["smac"], c["cip"], c["sip"], c["cport"], 502,
                          c["cseq"] & m, c["sseq"] & m, 0x10, b""))
    return n


def main(make: Callable[[Path, int], int] = write, doc: str = __doc__ or "") -> None:
    """The command line of a capture writer: where to, how many packets."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--packets", type=int, default=500_000)
    args = ap.parse_args()
    print(f"{make(args.out, args.packets)} packets written to {args.out}")


if __name__ == "__main__":
    main()
