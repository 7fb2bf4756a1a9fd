"""DNP3 (IEEE 1815) over TCP and UDP, sans-IO: link frames, transport, application.

Link frames are found by their 0x05 0x64 start bytes and checked block by block (a CRC
every 16 bytes). A bad CRC is an anomaly: the frame's bytes are still used when the
header is sound, so a corrupted block does not blind the sensor. Transport segments are
reassembled per source/destination address pair into application fragments, whose
function code, IIN bits and object headers (group, variation, qualifier, range) are
decoded.
"""

from __future__ import annotations

from otsec.events import Anomaly, Event
from otsec.protocols.dnp3 import FUNCTION_NAMES, Dnp3Anomaly, Dnp3Object, Dnp3Pdu
from tests.pyengine.protocols.transactions import Pending

PORT = 20000
START = b"\x05\x64"
MAX_FRAGMENT = 64 * 1024
MAX_OBJECTS = 256
MAX_PENDING = 64

#: requests whose object headers carry no object data
HEADERS_ONLY = frozenset({1, 7, 8, 9, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 0})

# fixed object sizes in bytes per (group, variation); packed-bit objects are in BITS
_SIZES: dict[tuple[int, int], int] = {
    (1, 2): 1, (2, 1): 1, (2, 2): 7, (2, 3): 3, (3, 2): 1, (4, 1): 1, (4, 2): 7, (4, 3): 3,
    (10, 2): 1, (11, 1): 1, (11, 2): 7, (12, 1): 11, (12, 2): 11, (13, 1): 1, (13, 2): 7,
    (20, 1): 5, (20, 2): 3, (20, 5): 4, (20, 6): 2, (21, 1): 5, (21, 2): 3, (21, 5): 11,
    (21, 6): 9, (21, 9): 4, (21, 10): 2, (22, 1): 5, (22, 2): 3, (22, 5): 11, (22, 6): 9,
    (23, 1): 5, (23, 2): 3, (23, 5): 11, (23, 6): 9, (30, 1): 5, (30, 2): 3, (30, 3): 4,
    (30, 4): 2, (30, 5): 5, (30, 6): 9, (31, 1): 5, (31, 2): 3, (31, 3): 11, (31, 4): 9,
    (31, 5): 4, (31, 6): 2, (31, 7): 5, (31, 8): 9, (32, 1): 5, (32, 2): 3, (32, 3): 11,
    (32, 4): 9, (32, 5): 5, (32, 6): 9, (32, 7): 11, (32, 8): 15, (33, 1): 5, (33, 2): 3,
    (33, 3): 11, (33, 4): 9, (33, 5): 5, (33, 6): 9, (33, 7): 11, (33, 8): 15, (34, 1): 2,
    (34, 2): 4, (34, 3): 4, (40, 1): 5, (40, 2): 3, (40, 3): 5, (40, 4): 9, (41, 1): 5,
    (41, 2): 3, (41, 3): 5, (41, 4): 9, (42, 1): 5, (42, 2): 3, (42, 3): 11, (42, 4): 9,
    (42, 5): 5, (42, 6): 9, (42, 7): 11, (42, 8): 15, (43, 1): 5, (43, 2): 3, (43, 3): 11,
    (43, 4): 9, (43, 5): 5, (43, 6): 9, (43, 7): 11, (43, 8): 15, (50, 1): 6, (50, 2): 10,
    (50, 3): 6, (50, 4): 11, (51, 1): 6, (51, 2): 6, (52, 1): 2, (52, 2): 2,
}  # fmt: skip
_PACKED_BITS = {(1, 1): 1, (3, 1): 2, (10, 1): 1, (12, 3): 1, (80, 1): 1}
_PREFIX = {0: 0, 1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4}


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc(data: bytes) -> int:
    """DNP3's CRC-16 (polynomial 0x3D65, reflected, complemented)."""
    c = 0
    for b in data:
        c = (c >> 8) ^ _TABLE[(c ^ b) & 0xFF]
    return ~c & 0xFFFF


def frame_size(length: int) -> int:
    """Bytes on the wire of a link frame whose LEN field is ``length`` (>= 5)."""
    user = length - 5
    return 10 + user + 2 * ((user + 15) // 16)


def looks_like_dnp3(payload: bytes, strict: bool) -> str:
    """Start bytes, a sane length and (``strict``) a valid header CRC: "yes", "no", or
    "more" while the bytes so far fit."""
    if not START.startswith(payload[:2]) or (len(payload) > 2 and payload[2] < 5):
        return "no"
    if len(payload) < 10:
        return "more"
    ok = not strict or crc(payload[:8]) == int.from_bytes(payload[8:10], "little")
    return "yes" if ok else "no"


class Dnp3Parser:
    """Per-connection (or per UDP flow) state: buffers, transport reassembly, requests."""

    protocol = "dnp3"

    def __init__(self) -> None:
        self._buf = [b"", b""]
        self._segments: dict[tuple[int, int], tuple[int, list[bytes], int]] = {}
        self.pending: Pending[Dnp3Pdu] = Pending(MAX_PENDING)

    def feed(self, data: bytes, from_client: bool, gap: bool = False) -> list[Event]:
        side = 0 if from_client else 1
        buf = data if gap else self._buf[side] + data
        out: list[Event] = []
        pos = 0
        n = len(buf)
        while n - pos >= 10:
            if buf[pos] != 0x05 or buf[pos + 1] != 0x64:
                found = buf.find(START, pos + 1)
                skipped = (found if found >= 0 else n - 1) - pos
                out.append(self._anomaly(from_client, Dnp3Anomaly.RESYNCHRONISED,
                                         f"skipped {skipped} bytes to the next 0x05 0x64"))
                pos += skipped
                continue
            length = buf[pos + 2]
            if length < 5:
                out.append(self._anomaly(from_client, Dnp3Anomaly.INVALID_LENGTH,
                                         f"link length {length}"))
                pos += 2
                continue
            size = frame_size(length)
            if pos + size > n:
                break
            self._frame(buf[pos : pos + size], from_client, out)
            pos += size
        self._buf[side] = buf[pos:] if pos < n else b""
        return out

    def feed_datagram(self, data: bytes, from_client: bool) -> list[Event]:
        return self.feed(data, from_client, gap=True)

    def close(self) -> list[Event]:
        self.pending.clear()
        self._segments.clear()
        return []

    @staticmethod
    def _anomaly(from_client: bool, kind: Dnp3Anomaly, detail: str) -> Anomaly:
        return Anomaly(from_client=from_client, protocol_name="dnp3", kind=kind, detail=detail)

    # -- link and transport -------------------------------------------------------

    def _frame(self, frame: bytes, from_client: bool, out: list[Event]) -> None:
        control = frame[3]
        dst = frame[4] | (frame[5] << 8)
        src = frame[6] | (frame[7] << 8)
        if crc(frame[:8]) != frame[8] | (frame[9] << 8):
            out.append(self._anomaly(from_client, Dnp3Anomaly.BAD_HEADER_CRC,
                                     f"link header {src}->{dst}"))
            return  # addresses and length cannot be trusted
        user = bytearray()
        bad_blocks = 0
        pos = 10
        while pos < len(frame):
            block = frame[pos : min(pos + 16, len(frame) - 2)]
            check = frame[pos + len(block) : pos + len(block) + 2]
            if crc(block) != int.from_bytes(check, "little"):
                bad_blocks += 1
            user += block
            pos += len(block) + 2
        if bad_blocks:
            out.append(self._anomaly(from_client, Dnp3Anomaly.BAD_DATA_CRC,
                                     f"{bad_blocks} user data block(s) {src}->{dst}"))
        if not user or not control & 0x40:
            return  # link-layer only (reset, link status) or a secondary frame (ack)
        self._transport(bytes(user), src, dst, control & 0x0F, from_client, out)

    def _transport(self, seg: bytes, src: int, dst: int, link_fn: int, from_client: bool,
                   out: list[Event]) -> None:
        th = seg[0]
        fir, fin, seq = th & 0x40, th & 0x80, th & 0x3F
        key = (src, dst)
        if fir:
            if key in self._segments:
                out.append(self._anomaly(from_client, Dnp3Anomaly.TRANSPORT_SEQUENCE,
                                         "new first segment before the last one ended"))
            parts: list[bytes] = [seg[1:]]
            size = len(seg) - 1
        else:
            state = self._segments.get(key)
            if state is None or (state[0] + 1) & 0x3F != seq:
                self._segments.pop(key, None)
                out.append(self._anomaly(from_client, Dnp3Anomaly.TRANSPORT_SEQUENCE,
                                         f"segment {seq} out of sequence {src}->{dst}"))
                return
            parts = state[1]
            parts.append(seg[1:])
            size = state[2] + len(seg) - 1
        if size > MAX_FRAGMENT:
            self._segments.pop(key, None)
            out.append(self._anomaly(from_client, Dnp3Anomaly.FRAGMENT_TOO_LONG,
                                     f"fragment over {MAX_FRAGMENT} bytes"))
            return
        if not fin:
            if len(self._segments) > 256:
                self._segments.clear()
            self._segments[key] = (seq, parts, size)
            return
        self._segments.pop(key, None)
        fragment = b"".join(parts)
        if len(fragment) >= 2:
            pdu = decode_fragment(fragment, src, dst, from_client)
            pdu.link_function = link_fn
            out.append(pdu)
            self._pair(pdu)

    def _pair(self, pdu: Dnp3Pdu) -> None:
        fc = pdu.function_code
        if fc < 0x80 and fc != 0:
            key = (pdu.source_address, pdu.destination_address, pdu.sequence)
            self.pending.open(key, pdu)
        elif fc == 0x81:
            req = self.pending.close((pdu.destination_address, pdu.source_address,
                                      pdu.sequence))
            if req is not None:
                pdu.request = req
                # IIN2 bits 0-2: function not supported, object unknown, parameter error
                req.accepted = pdu.iin is None or not pdu.iin & 0x0007


# -- application layer ---------------------------------------------------------------


def decode_fragment(frag: bytes, src: int, dst: int, from_client: bool) -> Dnp3Pdu:
    control, fc = frag[0], frag[1]
    pdu = Dnp3Pdu(from_client=from_client, source_address=src, destination_address=dst,
                  function_code=fc, app_control=control)
    pos = 2
    bad: tuple[Dnp3Anomaly, ...] = ()
    if fc >= 0x80:
        if len(frag) < 4:
            pdu.anomalies = (Dnp3Anomaly.TRUNCATED_OBJECTS,)
            return pdu
        pdu.iin = (frag[2] << 8) | frag[3]
        pos = 4
    if fc not in FUNCTION_NAMES:
        bad = (Dnp3Anomaly.RESERVED_FUNCTION,)
    with_data = fc not in HEADERS_ONLY
    objects, ok = _objects(frag, pos, with_data)
    pdu.objects = tuple(objects)
    if not ok:
        bad += (Dnp3Anomaly.TRUNCATED_OBJECTS,)
    if bad:
        pdu.anomalies = bad
    return pdu


def _objects(frag: bytes, pos: int, with_data: bool) -> tuple[list[Dnp3Object], bool]:
    """Object headers in order; stops (still 'ok') at an object whose size it cannot know."""
    out: list[Dnp3Object] = []
    n = len(frag)
    while pos < n and len(out) < MAX_OBJECTS:
        if pos + 3 > n:
            return out, False
        group, var, qual = frag[pos], frag[pos + 1], frag[pos + 2]
        pos += 3
        range_code = qual & 0x0F
        start: int | None = None
        if range_code in (0, 1, 2):
            w = (1, 2, 4)[range_code]
            if pos + 2 * w > n:
                return out, False
            start = int.from_bytes(frag[pos : pos + w], "little")
            stop = int.from_bytes(frag[pos + w : pos + 2 * w], "little")
            pos += 2 * w
            count = stop - start + 1 if stop >= start else 0
        elif range_code in (7, 8, 9, 0x0B):
            w = {7: 1, 8: 2, 9: 4, 0x0B: 1}[range_code]
            if pos + w > n:
                return out, False
            count = int.from_bytes(frag[pos : pos + w], "little")
            pos += w
        elif range_code == 6:
            count = 0
        else:
            out.append(Dnp3Object(group, var, qual, 0))
            return out, True
        data = with_data and range_code != 6 and group != 60
        points = _control_indexes(frag, pos, group, var, qual, count) if data and group in (
            12, 41) else ()
        out.append(Dnp3Object(group, var, qual, count, start, points))
        if not data:
            continue
        size = _data_size(group, var, qual, count, frag, pos)
        if size is None:
            return out, True  # unknown object size: the headers after it stay unread
        pos += size
        if pos > n:
            return out, False
    return out, True


def _control_indexes(frag: bytes, pos: int, group: int, var: int, qual: int,
                     count: int) -> tuple[int, ...]:
    prefix = {1: 1, 2: 2, 3: 4}.get((qual >> 4) & 0x07)
    size = _SIZES.get((group, var))
    if prefix is None or size is None:
        return ()
    out = []
    for k in range(min(count, 32)):
        at = pos + k * (prefix + size)
        if at + prefix > len(frag):
            break
        out.append(int.from_bytes(frag[at : at + prefix], "little"))
    return tuple(out)


def _data_size(group: int, var: int, qual: int, count: int, frag: bytes,
               pos: int) -> int | None:
    prefix = _PREFIX.get((qual >> 4) & 0x07)
    if prefix is None:
        return None
    if (qual >> 4) & 0x07 in (4, 5, 6):  # each object preceded by its own size
        total = 0
        for _ in range(count):
            if pos + total + prefix > len(frag):
                return len(frag) - pos + 1
            size = int.from_bytes(frag[pos + total : pos + total + prefix], "little")
            total += prefix + size
        return total
    bits = _PACKED_BITS.get((group, var))
    if bits is not None:
        return (count * bits + 7) // 8 if prefix == 0 else count * (prefix + 1)
    if group in (110, 111, 112, 113):  # octet strings: the variation is the length
        return count * (prefix + var)
    size = _SIZES.get((group, var))
    if size is None:
        return None
    return count * (prefix + size)
