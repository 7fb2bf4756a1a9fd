"""Build capture files byte by byte for tests: every format and link type the reader takes."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence

Packet = tuple[float, bytes]  # (timestamp, frame bytes)


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
             payload: bytes = b"", window: int = 8192) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return ip + tcp


def ipv6_tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
             payload: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 8192, 0, 0) + payload
    return struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, src, dst) + tcp


MAC_A = b"\x00\x80\xf4\x00\x00\x01"
MAC_B = b"\x00\x0c\x29\x00\x00\x02"


def ether(ip: bytes, src: bytes = MAC_A, dst: bytes = MAC_B,
          vlans: Sequence[int] = (), ethertype: int = 0x0800) -> bytes:
    tags = b""
    for i, vid in enumerate(vlans):
        tpid = 0x88A8 if i == 0 and len(vlans) > 1 else 0x8100
        tags += struct.pack("!HH", tpid, vid)
    return dst + src + tags + struct.pack("!H", ethertype) + ip


def sll(ip: bytes, mac: bytes = b"\x00\x80\xf4\x00\x00\x01") -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, mac + b"\0\0", 0x0800) + ip


def sll2(ip: bytes, mac: bytes = b"\x00\x80\xf4\x00\x00\x01") -> bytes:
    return struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, mac + b"\0\0") + ip


def null(ip: bytes, big_endian: bool = False) -> bytes:
    return struct.pack(">I" if big_endian else "<I", 2) + ip


def pcap(packets: Sequence[Packet], linktype: int = 1, big_endian: bool = False,
         nanos: bool = False) -> bytes:
    o = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    unit = 1_000_000_000 if nanos else 1_000_000
    for ts, data in packets:
        sec = int(ts)
        frac = round((ts - sec) * unit)
        out.append(struct.pack(o + "IIII", sec, frac, len(data), len(data)) + data)
    return b"".join(out)


def _block(o: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def pcapng(packets: Sequence[tuple[int, float, bytes]], linktypes: Sequence[int],
           big_endian: bool = False, tsresol: int | None = None) -> bytes:
    """``packets`` are (interface index, ts, data); one IDB per entry of ``linktypes``."""
    o = ">" if big_endian else "<"
    out = [_block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for lt in linktypes:
        opts = b""
        if tsresol is not None:
            opts = struct.pack(o + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + struct.pack(
                o + "HH", 0, 0)
        out.append(_block(o, 1, struct.pack(o + "HHI", lt, 0, 262144) + opts))
    unit = 10 ** (tsresol if tsresol is not None else 6)
    for iface, ts, data in packets:
        t = round(ts * unit)
        out.append(_block(o, 6, struct.pack(o + "IIIII", iface, t >> 32, t & 0xFFFFFFFF,
                                             len(data), len(data)) + data))
    return b"".join(out)


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def mbap(tid: int, unit: int, pdu: bytes, pid: int = 0, length: int | None = None) -> bytes:
    return struct.pack("!HHHB", tid, pid, len(pdu) + 1 if length is None else length, unit) + pdu
