"""Modbus/TCP dissector (sans-IO): reassembled stream bytes in, typed events out.

One ``ModbusParser`` per TCP connection. It frames PDUs by their MBAP header across and
within segments, decodes the fields of each public function code, pairs responses with
requests by transaction id, and turns every malformation into an ``Anomaly`` event
while it goes on parsing (resynchronising on the next plausible MBAP header).
"""

from __future__ import annotations

import struct

from otsec.events import Anomaly, Event
from otsec.protocols.modbus import (  # noqa: F401
    FUNCTION_NAMES,
    PROGRAMMING_FUNCTIONS,
    UMAS,
    WRITE_FUNCTIONS,
    ModbusAnomaly,
    ModbusPdu,
)
from tests.pyengine.protocols.transactions import Pending

PORT = 502
MBAP_LEN = 7
MAX_LENGTH = 254  # unit id + a PDU of at most 253 bytes
OVERSIZE_LENGTH = 2048  # longer frames (some UMAS stacks) are parsed but flagged
MAX_PENDING = 512  # outstanding requests kept per connection
MAX_BUFFER = 4096  # bytes kept while looking for a header

PUBLIC_FUNCTIONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43})
#: functions accepted when recognising Modbus by content on a non-standard port
PROBE_FUNCTIONS = PUBLIC_FUNCTIONS | {UMAS} | PROGRAMMING_FUNCTIONS


_HH = struct.Struct("!HH").unpack_from
_HHH = struct.Struct("!HHH").unpack_from
_HHHH = struct.Struct("!HHHH").unpack_from
_H = struct.Struct("!H").unpack_from
_MBAP = struct.Struct("!HHHB").unpack_from


def looks_like_modbus(payload: bytes, strict: bool) -> str:
    """Do a stream's first bytes start with Modbus/TCP PDUs? "yes", "no", or "more" while
    the bytes so far fit an MBAP header.

    ``strict`` (used off port 502) also requires a known function code and whole PDUs
    ending where the bytes end, so other binary protocols are not mistaken for it.
    HTTP and TLS never pass: their first bytes cannot form protocol id 0.
    """
    pos = 0
    n = len(payload)
    while pos < n:
        head = payload[pos:pos + 8]
        if any(head[2:4]):
            return "no"
        if len(head) >= 6 and not 2 <= _H(head, 4)[0] <= MAX_LENGTH:
            return "no"
        if len(head) < 8:
            return "more"
        if strict and (head[7] & 0x7F) not in PROBE_FUNCTIONS:
            return "no"
        if not strict:
            return "yes"
        pos += 6 + _H(head, 4)[0]
    return "yes" if pos == n and n else "more"


class ModbusParser:
    """Per-connection Modbus/TCP state: one buffer per direction and open transactions."""

    protocol = "modbus"

    def __init__(self) -> None:
        self._buf = [b"", b""]  # [server-bound, client-bound]
        self._resync = [False, False]  # set after a gap or a malformed header
        self.pending: Pending[ModbusPdu] = Pending(MAX_PENDING)
        self.skipped_bytes = 0

    def feed(self, data: bytes, from_client: bool, gap: bool = False) -> list[Event]:
        """Parse what the stream delivered; ``gap`` says bytes before ``data`` were lost."""
        side = 0 if from_client else 1
        if gap:
            self._buf[side] = data
            self._resync[side] = True
        else:
            buf = self._buf[side]
            self._buf[side] = buf + data if buf else data
        return self._parse(side, from_client)

    def feed_datagram(self, data: bytes, from_client: bool) -> list[Event]:
        """Modbus over UDP: every datagram stands alone."""
        side = 0 if from_client else 1
        self._buf[side] = data
        self._resync[side] = False
        out = self._parse(side, from_client)
        self._buf[side] = b""
        return out

    def close(self) -> list[Event]:
        """End of connection: requests that never got an answer stay unanswered."""
        self.pending.clear()
        return []

    # -- framing ------------------------------------------------------------------

    def _parse(self, side: int, from_client: bool) -> list[Event]:
        buf = self._buf[side]
        n = len(buf)
        if n >= 8 and not self._resync[side]:  # fast path: exactly one well-formed PDU
            tid, pid, length, unit = _MBAP(buf, 0)
            if pid == 0 and n == 6 + length and 2 <= length <= MAX_LENGTH:
                self._buf[side] = b""
                pdu = _decode(buf, 7, n, tid, unit, length, from_client)
                one: list[Event] = [pdu]
                if from_client:
                    self._open(pdu, one)
                else:
                    self._close(pdu, one)
                return one
        out: list[Event] = []
        pos = 0
        while n - pos >= 8:
            if self._resync[side]:
                found = _find_header(buf, pos)
                if found < 0:
                    keep = max(pos, n - MAX_BUFFER) if n - pos > MAX_BUFFER else pos
                    if keep > pos:
                        self._skip(out, from_client, keep - pos)
                    pos = keep
                    break
                if found > pos:
                    self._skip(out, from_client, found - pos)
                pos = found
                self._resync[side] = False
            tid, pid, length, unit = _MBAP(buf, pos)
            if pid != 0 or not 2 <= length <= OVERSIZE_LENGTH:
                kind = (
                    ModbusAnomaly.INVALID_PROTOCOL_ID if pid != 0 else ModbusAnomaly.INVALID_LENGTH
                )
                out.append(_anomaly(from_client, kind,
                                    f"transaction {tid}: protocol id {pid}, length {length}"))
                self._resync[side] = True
                pos += 1
                continue
            end = pos + 6 + length
            if end > n:
                break
            pdu = _decode(buf, pos + 7, end, tid, unit, length, from_client)
            if length > MAX_LENGTH:
                pdu.anomalies += (ModbusAnomaly.INVALID_LENGTH,)
            out.append(pdu)
            if from_client:
                self._open(pdu, out)
            else:
                self._close(pdu, out)
            pos = end
        self._buf[side] = buf[pos:] if pos < n else b""
        return out

    def _skip(self, out: list[Event], from_client: bool, count: int) -> None:
        self.skipped_bytes += count
        out.append(_anomaly(from_client, ModbusAnomaly.RESYNCHRONISED,
                            f"skipped {count} bytes to the next Modbus header"))

    # -- transactions -------------------------------------------------------------

    def _open(self, pdu: ModbusPdu, out: list[Event]) -> None:
        if self.pending.open(pdu.transaction_id, pdu):
            out.append(_anomaly(True, ModbusAnomaly.FLOODED,
                                f"over {MAX_PENDING} requests without responses"))

    def _close(self, pdu: ModbusPdu, out: list[Event]) -> None:
        req = self.pending.close(pdu.transaction_id)
        if req is None:
            out.append(_anomaly(False, ModbusAnomaly.UNSOLICITED_RESPONSE,
                                f"response to transaction {pdu.transaction_id} without a request"))
            return
        pdu.request = req
        req.accepted = pdu.exception_code is None
        if req.code != pdu.code:
            pdu.anomalies += (ModbusAnomaly.FUNCTION_MISMATCH,)


def _anomaly(from_client: bool, kind: ModbusAnomaly, detail: str) -> Anomaly:
    return Anomaly(from_client=from_client, protocol_name="modbus", kind=kind, detail=detail)


def _find_header(buf: bytes, pos: int) -> int:
    """Offset of the next plausible MBAP header at or after ``pos``, or -1.

    A candidate needs protocol id 0, a valid length and function code, and must either end
    exactly at the end of the buffer or be followed by another candidate header; a
    candidate that runs past the buffer is accepted only at ``pos`` itself (the usual
    case of a segment that starts on a PDU boundary).
    """
    n = len(buf)
    i = buf.find(b"\x00\x00", pos + 2) - 2
    while i >= 0 and i + 8 <= n:
        length = (buf[i + 4] << 8) | buf[i + 5]
        if 2 <= length <= MAX_LENGTH and buf[i + 7] & 0x7F:
            end = i + 6 + length
            if end == n or (end > n and i == pos):
                return i
            if end + 8 <= n and buf[end + 2] == 0 and buf[end + 3] == 0:
                nxt = (buf[end + 4] << 8) | buf[end + 5]
                if 2 <= nxt <= MAX_LENGTH:
                    return i
        i = buf.find(b"\x00\x00", i + 3) - 2
    return -1


# -- PDU decoding -----------------------------------------------------------------


def _decode(
    buf: bytes, start: int, end: int, tid: int, unit: int, length: int, request: bool
) -> ModbusPdu:
    fc = buf[start]
    d = start + 1  # first data byte
    size = end - d
    pdu = ModbusPdu(
        from_client=request, transaction_id=tid, unit_id=unit, function_code=fc, length=length
    )
    bad: tuple[ModbusAnomaly, ...] = ()
    code = fc & 0x7F
    if code == 0 or (request and fc & 0x80):
        bad = (ModbusAnomaly.INVALID_FUNCTION_CODE,)
    if not request and fc & 0x80:
        if size >= 1:
            pdu.exception_code = buf[d]
        if size != 1:
            bad += (ModbusAnomaly.LENGTH_MISMATCH,)
    elif request:
        ok = _request_fields(pdu, buf, d, size, fc)
        if not ok:
            bad += (ModbusAnomaly.LENGTH_MISMATCH,)
    else:
        ok = _response_fields(pdu, buf, d, size, fc)
        if not ok:
            bad += (ModbusAnomaly.LENGTH_MISMATCH,)
    if bad:
        pdu.anomalies = bad
    return pdu


def _request_fields(pdu: ModbusPdu, buf: bytes, d: int, size: int, fc: int) -> bool:
    """Fill request fields; False when the body does not fit the function's layout."""
    if 1 <= fc <= 4:
        if size < 4:
            return False
        pdu.address, pdu.quantity = _HH(buf, d)
        return size == 4
    if fc == 5 or fc == 6:
        if size < 4:
            return False
        pdu.address, pdu.value = _HH(buf, d)
        pdu.quantity = 1
        return size == 4
    if fc == 15 or fc == 16:
        if size < 5:
            return False
        pdu.address, pdu.quantity = _HH(buf, d)
        return size == 5 + buf[d + 4]
    if fc == 8:
        return _diagnostics(pdu, buf, d, size)
    if fc == 43:
        if size < 1:
            return False
        pdu.mei_type = buf[d]
        return pdu.mei_type != 14 or size == 3
    if fc == 23:
        if size < 9:
            return False
        pdu.address, pdu.quantity, pdu.write_address, pdu.write_quantity = _HHHH(buf, d)
        return size == 9 + buf[d + 8]
    if fc == 22:
        if size < 2:
            return False
        pdu.address = _H(buf, d)[0]
        pdu.quantity = 1
        return size == 6
    if fc == 24:
        if size < 2:
            return False
        pdu.address = _H(buf, d)[0]
        return size == 2
    if fc == 20 or fc == 21:
        if size < 1:
            return False
        if size >= 7:  # first sub-request: ref type, file, record, length
            pdu.address = _H(buf, d + 4)[0]
            pdu.quantity = _H(buf, d + 6)[0]
        return size == 1 + buf[d]
    if fc == UMAS:
        if size >= 2:
            pdu.umas_function = buf[d + 1]
        return size >= 2
    if fc in (7, 11, 12, 17):
        return size == 0
    return True


def _response_fields(pdu: ModbusPdu, buf: bytes, d: int, size: int, fc: int) -> bool:
    """Fill response fields; False when the body does not fit the function's layout."""
    if 1 <= fc <= 4 or fc == 23 or fc == 12:
        return size >= 1 and size == 1 + buf[d]
    if fc in (5, 6, 15, 16):
        if size < 4:
            return False
        pdu.address, second = _HH(buf, d)
        if fc in (5, 6):
            pdu.value = second
            pdu.quantity = 1
        else:
            pdu.quantity = second
        return size == 4
    if fc == 8:
        return _diagnostics(pdu, buf, d, size)
    if fc == 43:
        if size < 1:
            return False
        pdu.mei_type = buf[d]
        if pdu.mei_type == 14:
            return _device_id(pdu, buf, d, d + size)
        return True
    if fc == 17:
        if size < 1 or size != 1 + buf[d]:
            return False
        count = buf[d]
        if count:
            body = buf[d + 1 : d + 1 + count]
            pdu.server_id = body[:-1].hex() if count > 1 else ""
            pdu.run_indicator = body[-1] == 0xFF
        return True
    if fc == 22:
        if size < 2:
            return False
        pdu.address = _H(buf, d)[0]
        return size == 6
    if fc == 7:
        return size == 1
    if fc == 11:
        return size == 4
    if fc == UMAS:
        if size >= 2:
            pdu.umas_function = buf[d + 1]
        return size >= 2
    return True


def _diagnostics(pdu: ModbusPdu, buf: bytes, d: int, size: int) -> bool:
    """FC 8, either way: a sub-function code, then data."""
    if size < 2:
        return False
    pdu.subfunction = _H(buf, d)[0]
    return True


def _device_id(pdu: ModbusPdu, buf: bytes, d: int, end: int) -> bool:
    """FC 43/14 read device identification: collect the objects (0 vendor, 1 product, 2 rev)."""
    if end - d < 6:
        return False
    count = buf[d + 5]
    pos = d + 6
    objects: dict[int, str] = {}
    for _ in range(count):
        if pos + 2 > end:
            pdu.device_id = objects
            return False
        oid, olen = buf[pos], buf[pos + 1]
        if pos + 2 + olen > end:
            pdu.device_id = objects
            return False
        objects[oid] = buf[pos + 2 : pos + 2 + olen].decode("latin-1").strip("\x00 ")
        pos += 2 + olen
    pdu.device_id = objects
    return pos == end
