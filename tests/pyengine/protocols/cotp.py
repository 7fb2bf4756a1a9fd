"""ISO-on-TCP framing (RFC 1006 TPKT + ISO 8073 COTP), sans-IO, for one direction.

Frames TPKT packets out of a byte stream, decodes the COTP header, reassembles data
TPDUs split over several fragments (EOT bit), and hands back complete user data.
"""

from __future__ import annotations

from dataclasses import dataclass

CR = 0xE0  # connection request
CC = 0xD0  # connection confirm
DT = 0xF0  # data
DR = 0x80  # disconnect request
DC = 0xC0  # disconnect confirm
ED = 0x10  # expedited data
COTP_TYPES = frozenset({CR, CC, DT, DR, DC, ED, 0x20, 0x50, 0x60, 0x70})

MAX_TPKT = 65535
MAX_REASSEMBLY = 64 * 1024


@dataclass(slots=True)
class CotpUnit:
    """One complete COTP unit: a connection TPDU (with TSAPs) or reassembled user data."""

    tpdu: int
    data: bytes = b""
    src_tsap: int | None = None
    dst_tsap: int | None = None


def looks_like_tpkt(payload: bytes, strict: bool) -> str:
    """TPKTs (version 3) with COTP inside up to the first data TPDU, which must carry
    S7comm (0x32) or S7comm-plus (0x72); connection TPDUs before it are walked over.
    "yes", "no", or "more" while the bytes so far fit. ``strict`` also wants the data
    TPDU's 2-byte COTP header."""
    pos, n = 0, len(payload)
    while True:
        q = payload[pos:]
        if not q:
            return "more"
        if q[0] != 3 or (len(q) > 1 and q[1] != 0):
            return "no"
        if len(q) < 4:
            return "more"
        length = (q[2] << 8) | q[3]
        if length < 7 or (len(q) >= 5 and q[4] + 5 > length):
            return "no"
        if len(q) < 6:
            return "more"
        if (q[5] & 0xF0) not in COTP_TYPES:
            return "no"
        li = q[4]
        if q[5] & 0xF0 == DT:
            if strict and li != 2:
                return "no"
            if len(q) <= 5 + li:
                return "more" if length > 5 + li else "no"
            return "yes" if q[5 + li] in (0x32, 0x72) else "no"
        if pos + length > n:
            return "more"
        pos += length


def _tsap(params: bytes, code: int) -> int | None:
    pos = 0
    while pos + 2 <= len(params):
        pcode, plen = params[pos], params[pos + 1]
        value = params[pos + 2 : pos + 2 + plen]
        if pcode == code and value:
            return int.from_bytes(value, "big") if len(value) <= 4 else None
        pos += 2 + plen
    return None


class CotpStream:
    """TPKT/COTP framer for one direction of a connection."""

    def __init__(self) -> None:
        self.buf = b""
        self.fragments: list[bytes] = []
        self.fragment_bytes = 0
        self.resync = False

    def feed(self, data: bytes, gap: bool = False) -> tuple[list[CotpUnit], list[str]]:
        """Return the complete units and the problems met (anomaly kind names)."""
        if gap:
            self.buf = data
            self.fragments.clear()
            self.fragment_bytes = 0
            self.resync = True
        else:
            self.buf = self.buf + data if self.buf else data
        buf = self.buf
        units: list[CotpUnit] = []
        problems: list[str] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            if self.resync or buf[pos] != 3 or buf[pos + 1] != 0:
                found = _find_tpkt(buf, pos)
                if found < 0:
                    if n - pos > 4096:
                        problems.append("resynchronised")
                        pos = n - 4
                    break
                if found > pos:
                    problems.append("resynchronised")
                pos = found
                self.resync = False
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if length < 7:
                problems.append("invalid_tpkt")
                self.resync = True
                pos += 1
                continue
            if pos + length > n:
                break
            unit = self._cotp(buf, pos + 4, pos + length, problems)
            if unit is not None:
                units.append(unit)
            pos += length
        self.buf = buf[pos:] if pos < n else b""
        return units, problems

    def _cotp(self, buf: bytes, start: int, end: int, problems: list[str]) -> CotpUnit | None:
        li = buf[start]
        if start + 1 + li > end or li < 1:
            problems.append("invalid_cotp")
            return None
        tpdu = buf[start + 1] & 0xF0
        if tpdu == DT:
            eot = li >= 2 and bool(buf[start + 2] & 0x80)
            part = buf[start + 1 + li : end]
            if self.fragments or not eot:
                self.fragment_bytes += len(part)
                if self.fragment_bytes > MAX_REASSEMBLY:
                    problems.append("fragment_overflow")
                    self.fragments.clear()
                    self.fragment_bytes = 0
                    return None
                self.fragments.append(part)
                if not eot:
                    return None
                part = b"".join(self.fragments)
                self.fragments.clear()
                self.fragment_bytes = 0
            return CotpUnit(DT, part)
        if tpdu in (CR, CC):
            params = buf[start + 7 : start + 1 + li]
            return CotpUnit(tpdu, src_tsap=_tsap(params, 0xC1), dst_tsap=_tsap(params, 0xC2))
        return CotpUnit(tpdu)


def _find_tpkt(buf: bytes, pos: int) -> int:
    """Next offset holding a plausible TPKT + COTP header, or -1."""
    n = len(buf)
    i = buf.find(b"\x03\x00", pos)
    while i >= 0 and i + 6 <= n:
        length = (buf[i + 2] << 8) | buf[i + 3]
        if length >= 7 and buf[i + 4] + 5 <= length and (buf[i + 5] & 0xF0) in COTP_TYPES:
            return i
        i = buf.find(b"\x03\x00", i + 1)
    return -1
