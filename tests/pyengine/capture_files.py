"""Capture file readers: pcap (both byte orders, µs/ns) and pcapng, optionally gzipped.

The reader is the hot path, so it yields plain tuples that point into a large chunk
buffer instead of building an object per packet: ``(ts, linktype, buf, start, caplen,
wirelen)``. Callers slice ``buf[start:start + caplen]`` only when they need the bytes.
"""

from __future__ import annotations

import gzip
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

CHUNK = 4 * 1024 * 1024
MAX_RECORD = 16 * 1024 * 1024  # larger records mean a corrupt file, not a jumbo frame

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"

Packet = tuple[float, int, bytes, int, int, int]


class CaptureError(Exception):
    """The file is not a capture otsec can read (a user error, not a crash)."""


class CaptureReader:
    """Iterate the packets of one capture file, keeping counters and warnings."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.warnings: list[str] = []
        self.packets = 0
        self.format = ""
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise CaptureError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        self._raw = raw
        head = raw.read(4)
        raw.seek(0)
        self.compressed = head[:2] == GZIP_MAGIC
        self._fh: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw
        try:
            self._magic = self._fh.read(4) if self.compressed else head
        except (OSError, EOFError) as exc:
            raise CaptureError(f"{self.path}: corrupt gzip data ({exc})") from None
        if self.compressed:
            self._fh.seek(0)
        if self._magic in PCAP_MAGICS:
            self.format = "pcap"
        elif self._magic == PCAPNG_SHB:
            self.format = "pcapng"
        else:
            raw.close()
            raise CaptureError(f"{self.path}: not a pcap or pcapng capture")
        try:
            self.size = self.path.stat().st_size
        except OSError:
            self.size = 0

    def position(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for gzip), for progress."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return self.size

    def close(self) -> None:
        self._fh.close()
        self._raw.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Packet]:
        try:
            if self.format == "pcap":
                yield from self._pcap()
            else:
                yield from self._pcapng()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self._warn(f"read error after {self.packets} packets: {exc}")

    def _warn(self, msg: str) -> None:
        text = f"{self.path}: {msg}"
        self.warnings.append(text)
        log.warning(text)

    # -- pcap ---------------------------------------------------------------------

    def _pcap(self) -> Iterator[Packet]:
        header = self._fh.read(24)
        if len(header) < 24:
            raise CaptureError(f"{self.path}: pcap header truncated")
        order, unit = PCAP_MAGICS[header[:4]]
        linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
        rec = struct.Struct(order + "IIII")
        unpack = rec.unpack_from
        buf = b""
        pos = 0
        while True:
            data = self._fh.read(CHUNK)
            if not data:
                break
            buf = buf[pos:] + data if pos < len(buf) else data
            pos = 0
            end = len(buf)
            while pos + 16 <= end:
                sec, frac, caplen, wirelen = unpack(buf, pos)
                if caplen > MAX_RECORD:
                    self._warn(f"corrupt record header at packet {self.packets + 1}; stopping")
                    return
                if pos + 16 + caplen > end:
                    break
                self.packets += 1
                yield sec + frac * unit, linktype, buf, pos + 16, caplen, wirelen
                pos += 16 + caplen
        if buf and pos < len(buf):
            self._warn(f"truncated last record ({len(buf) - pos} bytes) "
                       f"after {self.packets} packets")

    # -- pcapng -------------------------------------------------------------------

    def _pcapng(self) -> Iterator[Packet]:
        buf = b""
        pos = 0
        order = "<"
        ifaces: list[tuple[int, float, float]] = []  # (linktype, ts unit, ts offset)
        u32 = struct.Struct("<I")
        while True:
            data = self._fh.read(CHUNK)
            if not data:
                break
            buf = buf[pos:] + data if pos < len(buf) else data
            pos = 0
            end = len(buf)
            while pos + 12 <= end:
                btype_raw = buf[pos : pos + 4]
                if btype_raw == PCAPNG_SHB:
                    bom = buf[pos + 8 : pos + 12]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        order = "<"
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        order = ">"
                    else:
                        self._warn("bad pcapng byte-order magic; stopping")
                        return
                    u32 = struct.Struct(order + "I")
                    ifaces = []
                btype = u32.unpack_from(buf, pos)[0]
                blen = u32.unpack_from(buf, pos + 4)[0]
                if blen < 12 or blen % 4 or blen > MAX_RECORD:
                    self._warn(f"corrupt pcapng block at packet {self.packets + 1}; stopping")
                    return
                if pos + blen > end:
                    break
                body = pos + 8
                if btype == 6:  # enhanced packet block
                    iface, hi, lo, caplen, wirelen = struct.unpack_from(order + "IIIII", buf, body)
                    if iface >= len(ifaces) or body + 20 + caplen > pos + blen:
                        self._warn(f"bad enhanced packet block at packet {self.packets + 1}")
                    else:
                        lt, unit, off = ifaces[iface]
                        self.packets += 1
                        yield ((hi << 32) | lo) * unit + off, lt, buf, body + 20, caplen, wirelen
                elif btype == 3 and ifaces:  # simple packet block
                    wirelen = u32.unpack_from(buf, body)[0]
                    caplen = min(wirelen, blen - 16)
                    self.packets += 1
                    yield 0.0, ifaces[0][0], buf, body + 4, caplen, wirelen
                elif btype == 2:  # obsolete packet block
                    iface, _drops, hi, lo, caplen, wirelen = struct.unpack_from(
                        order + "HHIIII", buf, body
                    )
                    if iface < len(ifaces) and body + 20 + caplen <= pos + blen:
                        lt, unit, off = ifaces[iface]
                        self.packets += 1
                        yield ((hi << 32) | lo) * unit + off, lt, buf, body + 20, caplen, wirelen
                elif btype == 1:  # interface description block
                    ifaces.append(_interface(buf, body, pos + blen - 4, order))
                pos += blen
        if buf and pos < len(buf):
            self._warn(f"truncated last block ({len(buf) - pos} bytes) "
                       f"after {self.packets} packets")


def _interface(buf: bytes, body: int, end: int, order: str) -> tuple[int, float, float]:
    """Parse an interface description block: link type, timestamp unit and offset."""
    linktype = struct.unpack_from(order + "H", buf, body)[0]
    unit = 1e-6
    offset = 0.0
    pos = body + 8
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, pos)
        if code == 0:
            break
        value = buf[pos + 4 : pos + 4 + length]
        if code == 9 and length >= 1:
            v = value[0]
            unit = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        elif code == 14 and length == 8:
            offset = float(struct.unpack(order + "q", value)[0])
        pos += 4 + ((length + 3) & ~3)
    return linktype, unit, offset
