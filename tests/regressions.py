"""Inputs that once broke the audit, each made by a generator here (never copied from a
capture), kept under tests/regressions/ so that every run replays them.

    python -m tests.regressions     # rewrites the files (they must not change)
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

from tests import pcapgen as g
from tests.helpers import Conversation, read_holding

HERE = Path(__file__).resolve().parent / "regressions"
LE = "<"


def _polling() -> list[bytes]:
    c = Conversation()
    for tid in range(3):
        c.send(True, read_holding(tid))
        c.send(False, g.mbap(tid, 1, bytes([3, 4, 0, 1, 0, 2])))
    return c.frames


def _shb() -> bytes:
    return g._block(LE, 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(options: bytes = b"") -> bytes:
    return g._block(LE, 1, struct.pack("<HHI", 1, 0, 262144) + options + b"\0\0\0\0")


def _epb(ticks: int, data: bytes, caplen: int | None = None) -> bytes:
    n = len(data) if caplen is None else caplen
    return g._block(LE, 6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, n,
                                       len(data)) + data)


def tsresol_zero() -> bytes:
    """if_tsresol 0 (seconds) with a 2^64-1 timestamp: a date past year 9999."""
    return _shb() + _idb(struct.pack("<HHB3x", 9, 1, 0)) + _epb(2**64 - 1, _polling()[0])


def tsoffset_min() -> bytes:
    """if_tsoffset of -2^63 seconds."""
    return _shb() + _idb(struct.pack("<HHq", 14, 8, -2**63)) + _epb(1, _polling()[0])


def short_epb() -> bytes:
    """An enhanced packet block shorter than its own header, between good ones."""
    frames = _polling()
    good = [_epb(1_700_000_000_000_000 + i, f) for i, f in enumerate(frames)]
    return _shb() + _idb() + good[0] + g._block(LE, 6, struct.pack("<II", 0, 0)) + b"".join(
        good[1:])


def epb_caplen_past_block() -> bytes:
    """A captured length that runs past the end of its block."""
    frames = _polling()
    return _shb() + _idb() + _epb(1, frames[0], caplen=0xFFFF) + _epb(2, frames[1])


def zero_length_records() -> bytes:
    """Records of no bytes: what a pcap header followed by zeros reads as."""
    return g.pcap([(1.0, _polling()[0])]) + bytes(16 * 8)


def gzip_of_zeros() -> bytes:
    return gzip.compress(g.pcap([]) + bytes(200_000), mtime=0)


def long_tsap() -> bytes:
    """A COTP connection request with a 16-byte TSAP: once a 128-bit number in a document."""
    c = Conversation(sport=102)
    cr = bytes([0xE0, 0, 0, 0, 1, 0, 0xC1, 2, 1, 0, 0xC2, 16]) + bytes(range(16))
    cotp = bytes([len(cr)]) + cr
    c.send(True, struct.pack("!BBH", 3, 0, 4 + len(cotp)) + cotp)
    setup = bytes([0xF0, 0, 0, 1, 0, 1, 1, 0xE0])
    stop = bytes([0x29, 0, 0, 0, 0, 0, 9]) + b"P_PROGRAM"  # raises an alert: a document
    for ref, param in ((1, setup), (2, stop)):
        s7 = bytes([0x32, 1, 0, 0]) + struct.pack("!HHH", ref, len(param), 0) + param
        data = bytes([2, 0xF0, 0x80]) + s7
        c.send(True, struct.pack("!BBH", 3, 0, 4 + len(data)) + data)
    return g.pcap([(1.0 + i, f) for i, f in enumerate(c.frames)])


CASES: dict[str, Callable[[], bytes]] = {
    "pcapng-tsresol-zero.pcapng": tsresol_zero,
    "pcapng-tsoffset-min.pcapng": tsoffset_min,
    "pcapng-short-epb.pcapng": short_epb,
    "pcapng-caplen-past-block.pcapng": epb_caplen_past_block,
    "pcap-zero-length-records.pcap": zero_length_records,
    "gzip-of-zeros.pcap.gz": gzip_of_zeros,
    "s7-long-tsap.pcap": long_tsap,
}


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    for name, make in CASES.items():
        (HERE / name).write_bytes(make())
        print(HERE / name)
