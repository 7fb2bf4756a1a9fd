"""Siemens S7comm and S7comm-plus over ISO-on-TCP (sans-IO): stream bytes in, events out.

S7comm (protocol id 0x32) is decoded in depth: job/ack/ack_data/userdata, read/write
var items, block download/upload with block type and number, PI services, PLC stop,
userdata groups and sub-functions with SZL ids, and the device identity in SZL 0x0011
and 0x001C answers; jobs are paired with answers by PDU reference.

S7comm-plus (0x72) is recognised with its protocol version, and its opcode and function
(CreateObject, SetVariable, Invoke, ...) are read from the clear header. V3 sessions carry
a 32-byte integrity digest: it protects the content against tampering without encrypting
it, but the objects and values behind the header are not decoded here, so what a
protected session reads or writes inside those objects stays invisible.
"""

from __future__ import annotations

import struct

from otsec.events import Anomaly, Event
from otsec.protocols.s7comm import (  # noqa: F401
    FUNCTION_NAMES,
    GROUP_NAMES,
    PLUS_FUNCTIONS,
    S7Anomaly,
    S7Item,
    S7Pdu,
    S7PlusPdu,
)
from tests.pyengine.protocols.cotp import CC, CR, DT, CotpStream, looks_like_tpkt
from tests.pyengine.protocols.transactions import Pending

looks_like_s7 = looks_like_tpkt

PORT = 102
JOB, ACK, ACK_DATA, USERDATA = 1, 2, 3, 7
READ_VAR, WRITE_VAR = 0x04, 0x05
SETUP = 0xF0
PI_SERVICE, PLC_STOP = 0x28, 0x29
DOWNLOAD = (0x1A, 0x1B, 0x1C)
UPLOAD = (0x1D, 0x1E, 0x1F)
MAX_PENDING = 256

BLOCK_TYPES = {"08": "OB", "0A": "DB", "0B": "SDB", "0C": "FC", "0D": "SFC", "0E": "FB",
               "0F": "SFB"}  # fmt: skip
AREAS = {0x03: "system info", 0x05: "system flags", 0x06: "analog inputs",
         0x07: "analog outputs", 0x1C: "counters", 0x1D: "timers", 0x1E: "IEC counters",
         0x1F: "IEC timers", 0x80: "direct peripheral", 0x81: "inputs", 0x82: "outputs",
         0x83: "flags", 0x84: "data blocks", 0x85: "instance data blocks",
         0x86: "local data", 0x87: "previous local data"}  # fmt: skip

_HDR = struct.Struct("!BBHHHH").unpack_from
_H = struct.Struct("!H").unpack_from
_ITEM = struct.Struct("!BHHB3s").unpack_from  # transport size, length, db, area, address


class S7Parser:
    """Per-connection state: a COTP framer per direction and the open jobs."""

    protocol = "s7comm"

    def __init__(self) -> None:
        self._streams = (CotpStream(), CotpStream())
        self.pending: Pending[S7Pdu] = Pending(MAX_PENDING)
        self.tsaps: tuple[int | None, int | None] = (None, None)

    def feed(self, data: bytes, from_client: bool, gap: bool = False) -> list[Event]:
        units, problems = self._streams[0 if from_client else 1].feed(data, gap)
        out: list[Event] = [
            Anomaly(from_client=from_client, protocol_name="s7comm", kind=S7Anomaly(p),
                    detail="TPKT/COTP framing")
            for p in problems
        ]
        for unit in units:
            if unit.tpdu in (CR, CC):
                if unit.tpdu == CR or self.tsaps == (None, None):
                    self.tsaps = (unit.src_tsap, unit.dst_tsap)
            elif unit.tpdu == DT and unit.data:
                self._data(unit.data, from_client, out)
        return out

    def feed_datagram(self, data: bytes, from_client: bool) -> list[Event]:
        return self.feed(data, from_client, gap=True)

    def close(self) -> list[Event]:
        self.pending.clear()
        return []

    def _data(self, data: bytes, from_client: bool, out: list[Event]) -> None:
        proto = data[0]
        if proto == 0x32:
            pdu = decode_s7(data, from_client)
            pdu.src_tsap, pdu.dst_tsap = self.tsaps
            out.append(pdu)
            self._pair(pdu, out)
        elif proto == 0x72:
            out.append(decode_plus(data, from_client))
        else:
            out.append(Anomaly(from_client=from_client, protocol_name="s7comm",
                               kind=S7Anomaly.INVALID_HEADER,
                               detail=f"protocol id 0x{proto:02x} in a COTP data unit"))

    def _pair(self, pdu: S7Pdu, out: list[Event]) -> None:
        if pdu.rosctr == USERDATA and pdu.userdata_type == 0:
            return  # push messages (alarms, cyclic data) answer nothing
        if pdu.from_request:
            if self.pending.open(pdu.pdu_reference, pdu):
                out.append(Anomaly(from_client=pdu.from_client, protocol_name="s7comm",
                                   kind=S7Anomaly.FLOODED,
                                   detail=f"over {MAX_PENDING} jobs without an answer"))
            return
        if pdu.rosctr not in (ACK, ACK_DATA, USERDATA):
            return
        req = self.pending.close(pdu.pdu_reference)
        if req is None:
            out.append(Anomaly(from_client=pdu.from_client, protocol_name="s7comm",
                               kind=S7Anomaly.UNSOLICITED_RESPONSE,
                               detail=f"answer to PDU {pdu.pdu_reference} without a job"))
            return
        pdu.request = req
        if pdu.function_code is None and req.function_code is not None and pdu.rosctr != 7:
            pdu.function_code = req.function_code
        req.accepted = (not pdu.error_class and not pdu.error_code
                        and all(rc == 0xFF for rc in pdu.return_codes))


# -- S7comm ----------------------------------------------------------------------


def decode_s7(data: bytes, from_client: bool) -> S7Pdu:
    """Decode one S7comm PDU; problems become anomalies on the PDU, never exceptions."""
    n = len(data)
    if n < 10:
        return S7Pdu(from_client=from_client, rosctr=data[1] if n > 1 else 0, pdu_reference=0,
                     anomalies=(S7Anomaly.TRUNCATED_PDU,))
    _pid, rosctr, _red, ref, plen, dlen = _HDR(data, 0)
    pdu = S7Pdu(from_client=from_client, rosctr=rosctr, pdu_reference=ref)
    hlen = 10
    if rosctr in (ACK, ACK_DATA):
        if n < 12:
            pdu.anomalies = (S7Anomaly.TRUNCATED_PDU,)
            return pdu
        pdu.error_class, pdu.error_code = data[10], data[11]
        hlen = 12
    elif rosctr not in (JOB, USERDATA):
        pdu.anomalies = (S7Anomaly.UNKNOWN_ROSCTR,)
        return pdu
    bad: tuple[S7Anomaly, ...] = ()
    if hlen + plen + dlen > n:
        bad = (S7Anomaly.TRUNCATED_PDU,)
    params = data[hlen : hlen + plen]
    body = data[hlen + plen : hlen + plen + dlen]
    try:
        if rosctr == USERDATA:
            _userdata(pdu, params, body)
        elif params:
            pdu.function_code = params[0]
            if rosctr == JOB:
                _job(pdu, params)
            elif rosctr == ACK_DATA:
                _ack_data(pdu, params, body)
    except (IndexError, struct.error, ValueError):
        bad += (S7Anomaly.TRUNCATED_PDU,)
    if bad:
        pdu.anomalies = tuple(dict.fromkeys(bad))
    return pdu


def _job(pdu: S7Pdu, p: bytes) -> None:
    fc = p[0]
    if fc in (READ_VAR, WRITE_VAR):
        pdu.items = tuple(_items(p))
    elif fc in (0x1A, 0x1B, 0x1C, 0x1D) and len(p) > 9:
        _block(pdu, p[9 : 9 + p[8]])
    elif fc == PI_SERVICE and len(p) >= 10:
        blen = _H(p, 8)[0]
        block = p[10 : 10 + blen]
        pos = 10 + blen
        if pos < len(p):
            pdu.pi_service = p[pos + 1 : pos + 1 + p[pos]].decode("latin-1")
        text = block.decode("latin-1")
        for start in range(len(text) - 7):  # a block named in the arguments: "0A00001P"
            if text[start : start + 2] in BLOCK_TYPES and text[start + 2 : start + 7].isdigit():
                _block(pdu, ("_" + text[start : start + 8]).encode("latin-1"))
                break
    elif fc == PLC_STOP and len(p) > 6:
        pdu.pi_service = p[7 : 7 + p[6]].decode("latin-1")


def _items(p: bytes) -> list[S7Item]:
    items = []
    pos = 2
    for _ in range(p[1]):
        if pos + 2 > len(p):
            raise ValueError("item past the parameters")
        spec_len = p[pos + 1]
        if p[pos] == 0x12 and spec_len >= 10 and p[pos + 2] == 0x10:
            ts, length, db, area, addr = _ITEM(p, pos + 3)
            address = int.from_bytes(addr, "big")
            items.append(S7Item(area, db, address >> 3, address & 7, length, ts))
        pos += 2 + spec_len
    return items


def _block(pdu: S7Pdu, name: bytes) -> None:
    """A block file name: '_' + type (2 hex chars) + number (5 digits) + file system."""
    text = name.decode("latin-1")
    if len(text) >= 8 and text[0] == "_":
        pdu.block_type = BLOCK_TYPES.get(text[1:3], text[1:3])
        if text[3:8].isdigit():
            pdu.block_number = int(text[3:8])


def _ack_data(pdu: S7Pdu, p: bytes, body: bytes) -> None:
    fc = p[0]
    if fc == READ_VAR:
        pdu.return_codes = tuple(_read_results(body, p[1] if len(p) > 1 else 0))
    elif fc == WRITE_VAR and len(p) > 1:
        pdu.return_codes = tuple(body[: p[1]])


def _read_results(body: bytes, count: int) -> list[int]:
    codes = []
    pos = 0
    for i in range(count):
        if pos + 4 > len(body):
            if pos < len(body):
                codes.append(body[pos])
            break
        rc, ts, length = body[pos], body[pos + 1], _H(body, pos + 2)[0]
        codes.append(rc)
        size = (length + 7) // 8 if ts in (3, 4, 5) else length
        pos += 4 + size
        if size % 2 and i < count - 1:
            pos += 1
    return codes


def _userdata(pdu: S7Pdu, p: bytes, body: bytes) -> None:
    if len(p) < 8:
        raise ValueError("userdata parameters too short")
    tg = p[5]
    pdu.userdata_type = tg >> 4
    pdu.group = tg & 0x0F
    pdu.subfunction = p[6]
    if len(p) >= 12:
        code = _H(p, 10)[0]
        if code:
            pdu.error_class, pdu.error_code = code >> 8, code & 0xFF
    if len(body) < 4:
        return
    rc = body[0]
    pdu.return_codes = (rc,)
    if pdu.group == 4 and pdu.subfunction == 1 and len(body) >= 8:  # read SZL
        pdu.szl_id, pdu.szl_index = _H(body, 4)[0], _H(body, 6)[0]
        if pdu.userdata_type == 8 and rc == 0xFF:
            pdu.identity = szl_identity(pdu.szl_id, body[4:]) or None


def szl_identity(szl_id: int, data: bytes) -> dict[str, str]:
    """Device identity from SZL 0x0011 (module identification) and 0x001C (components)."""
    if len(data) < 8:
        return {}
    rec_len, count = _H(data, 4)[0], _H(data, 6)[0]
    out: dict[str, str] = {}
    pos = 8
    base = szl_id & 0x00FF
    if rec_len == 0 and base == 0x1C:  # some stacks leave the list header empty
        rec_len = 34
        count = (len(data) - 8) // rec_len
    for position in range(min(count, 64)):
        rec = data[pos : pos + rec_len]
        if len(rec) < rec_len or rec_len < 4:
            break
        pos += rec_len
        index = _H(rec, 0)[0] or position + 1
        if base == 0x11 and rec_len >= 22:
            order = rec[2:22].decode("latin-1").strip(" \x00")
            ausbg, ausbe = (_H(rec, 24)[0], _H(rec, 26)[0]) if rec_len >= 28 else (0, 0)
            first = index == 0x0001 or (index == 0x0006 and "order_number" not in out)
            if order and first:
                out["order_number"] = order
            elif index == 0x0007 and ausbg >> 8 == ord("V"):
                out["firmware_version"] = f"V{ausbg & 0xFF}.{ausbe >> 8}.{ausbe & 0xFF}"
        elif base == 0x1C:
            raw = rec[2:].split(b"\x00", 1)[0]
            text = raw[:256].decode("latin-1")
            if len(raw) > 256:  # as the core cuts long texts
                text += f"…[{len(raw) - 256} more bytes]"
            text = text.strip()
            field = {1: "plant_name", 2: "module_name", 3: "plant_designation",
                     4: "copyright", 5: "serial_number", 7: "module_type",
                     8: "memory_card_serial", 11: "location"}.get(index)  # fmt: skip
            if field and text:
                out[field] = text
    return out


# -- S7comm-plus -------------------------------------------------------------------


def decode_plus(data: bytes, from_client: bool) -> S7PlusPdu:
    """The header of an S7comm-plus PDU: version, integrity digest, opcode and function."""
    version = data[1] if len(data) > 1 else 0
    pdu = S7PlusPdu(from_client=from_client, version=version)
    if len(data) < 4:
        pdu.anomalies = (S7Anomaly.TRUNCATED_PDU,)
        return pdu
    pos = 4
    if version == 3 and len(data) > pos and data[pos] == 0x20:  # 32-byte integrity digest
        pdu.integrity = True
        pos += 33
    if version in (0xFE, 0xFF) or len(data) < pos + 5:
        return pdu  # keep-alive frames carry no opcode
    pdu.opcode = data[pos]
    if pdu.opcode in (0x31, 0x32, 0x02):
        pdu.function_code = _H(data, pos + 3)[0]
        if len(data) >= pos + 9:
            pdu.sequence = _H(data, pos + 7)[0]
    return pdu
