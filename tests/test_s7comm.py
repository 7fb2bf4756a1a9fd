"""The S7comm / S7comm-plus dissector: framing, fields, pairing, identity and fuzzing."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otsec.events import Anomaly
from otsec.protocols.s7comm import S7Anomaly, S7Pdu, S7PlusPdu
from tests.helpers import S7Parser, looks_like_tpkt, szl_identity


def tpkt(payload: bytes) -> bytes:
    """TPKT + COTP DT (last fragment) around an S7 PDU."""
    return struct.pack("!BBH", 3, 0, 7 + len(payload)) + b"\x02\xf0\x80" + payload


def s7(rosctr: int, ref: int, params: bytes, data: bytes = b"", error: bytes = b"") -> bytes:
    return struct.pack("!BBHHHH", 0x32, rosctr, 0, ref, len(params), len(data)) + error + \
        params + data


# real PDUs seen in public captures (hex from the corpus' snap7 and step7 traces)
SETUP = bytes.fromhex("0300001902f08032010000020000080000f0000001000101e0")
DOWNLOAD = bytes.fromhex("0300003102f080320100008300002000001a00010000000000095f304130303030"
                         "31500d31303030323136303030303838")
PI_INSE = bytes.fromhex("0300002b02f080320100008400001a000028000000000000fd000a01003041303030"
                        "303150055f494e5345")
UPLOAD = bytes.fromhex("0300002302f080320100000800001200001d00000000000000095f3042303030303041")
USERDATA_REQ = bytes.fromhex("0300002702f0803207000005000008000e0001120411440200ff09000a0100555345"
                             "5231000000")
PLUS_V3 = tpkt(bytes.fromhex(  # the start of a real V3 SetVariable (digest, then opcode 0x31)
    "7203005920e969a95a852ab0e288480ccecb618e48779f4b68a1ce9a9c42cd6aa53680068331000004f20000"
    "831a70000e4d7470000e5101881d000700ce000004e88969001200000000896a001300896b00040000008"
    "4eb27000000"))
PLUS_V2 = bytes.fromhex("0300001f02f080720200103200000542000000023400000000000072020000")


def pdus(events: list) -> list:
    return [e for e in events if isinstance(e, S7Pdu | S7PlusPdu)]


def test_real_jobs_decode() -> None:
    p = S7Parser()
    (setup,) = p.feed(SETUP, True)
    assert (setup.rosctr, setup.function_code, setup.direction) == (1, 0xF0, "request")
    (dl,) = p.feed(DOWNLOAD, True)
    assert (dl.function_code, dl.block_type, dl.block_number) == (0x1A, "DB", 1)
    (pi,) = p.feed(PI_INSE, True)
    assert (pi.pi_service, pi.block_type, pi.block_number) == ("_INSE", "DB", 1)
    (up,) = p.feed(UPLOAD, True)
    assert (up.function_code, up.block_type, up.block_number) == (0x1D, "SDB", 0)
    (ud,) = p.feed(USERDATA_REQ, True)
    assert (ud.rosctr, ud.userdata_type, ud.group, ud.subfunction) == (7, 4, 4, 2)


def test_read_var_items_and_pairing_with_return_codes() -> None:
    item = bytes([0x12, 0x0A, 0x10, 0x02]) + struct.pack("!HHB", 4, 1, 0x84) + \
        (10 * 8 + 3).to_bytes(3, "big")
    job = tpkt(s7(1, 7, bytes([4, 1]) + item))
    answer = tpkt(s7(3, 7, bytes([4, 1]), bytes([0xFF, 4, 0, 32]) + bytes(4), error=b"\0\0"))
    p = S7Parser()
    (req,) = p.feed(job, True)
    assert req.items[0].area == 0x84 and (req.items[0].db, req.items[0].byte,
                                          req.items[0].bit) == (1, 10, 3)
    (resp,) = p.feed(answer, False)
    assert resp.request is req and resp.return_codes == (0xFF,) and req.accepted is True
    refused = tpkt(s7(3, 8, bytes([5, 1]), bytes([0x05]), error=b"\0\0"))
    p.feed(tpkt(s7(1, 8, bytes([5, 1]) + item, bytes([0, 4, 0, 8, 1]))), True)
    (bad,) = p.feed(refused, False)
    assert bad.request is not None and bad.request.accepted is False


def test_cotp_fragments_are_reassembled_and_tsaps_kept() -> None:
    cr = bytes.fromhex("0300001611e00000000100c0010ac1020100c2020102")
    p = S7Parser()
    assert p.feed(cr, True) == []
    whole = s7(1, 9, bytes([0x29, 0, 0, 0, 0, 0, 9]) + b"P_PROGRAM")
    first = struct.pack("!BBH", 3, 0, 7 + 10) + b"\x02\xf0\x00" + whole[:10]
    last = struct.pack("!BBH", 3, 0, 7 + len(whole) - 10) + b"\x02\xf0\x80" + whole[10:]
    assert pdus(p.feed(first, True)) == []
    (stop,) = p.feed(last[:5], True) + p.feed(last[5:], True)
    assert (stop.function_code, stop.pi_service) == (0x29, "P_PROGRAM")
    assert (stop.src_tsap, stop.dst_tsap) == (0x0100, 0x0102)


def test_szl_identity_records() -> None:
    rec11 = struct.pack("!H", 1) + b"6ES7 315-2EH14-0AB0 " + struct.pack("!HHH", 0, 0, 0)
    rec11_fw = struct.pack("!H", 7) + b" " * 20 + struct.pack("!HHH", 0, 0x5603, 0x0206)
    data = struct.pack("!HHHH", 0x0011, 0, 28, 2) + rec11 + rec11_fw
    assert szl_identity(0x0011, data) == {"order_number": "6ES7 315-2EH14-0AB0",
                                          "firmware_version": "V3.2.6"}
    rec1c = struct.pack("!H", 2) + b"PLC-Line-4".ljust(32, b"\0")
    rec1c_sn = struct.pack("!H", 5) + b"S C-C2UR28922012".ljust(32, b"\0")
    data = struct.pack("!HHHH", 0x001C, 0, 34, 2) + rec1c + rec1c_sn
    assert szl_identity(0x001C, data) == {"module_name": "PLC-Line-4",
                                          "serial_number": "S C-C2UR28922012"}


def test_s7comm_plus_header() -> None:
    p = S7Parser()
    (v3,) = p.feed(PLUS_V3, True)
    assert (v3.version, v3.integrity, v3.opcode, v3.function_code) == (3, True, 0x31, 0x04F2)
    (v2,) = p.feed(PLUS_V2, False)
    assert (v2.version, v2.integrity, v2.opcode, v2.function_code) == (2, False, 0x32, 0x0542)
    assert v2.direction == "response"


def test_malformed_pdus_are_anomalies() -> None:
    p = S7Parser()
    events = p.feed(tpkt(s7(1, 1, bytes([4, 3]))), True)  # 3 items announced, none there
    assert any(S7Anomaly.TRUNCATED_PDU in getattr(e, "anomalies", ()) for e in events)
    events = p.feed(tpkt(b"\x99\x01\x02"), True)
    assert any(isinstance(e, Anomaly) and e.kind == S7Anomaly.INVALID_HEADER for e in events)
    (rogue,) = pdus(p.feed(tpkt(s7(9, 1, b"")), True))
    assert S7Anomaly.UNKNOWN_ROSCTR in rogue.anomalies


def test_tpkt_probe() -> None:
    assert looks_like_tpkt(SETUP, strict=True) and looks_like_tpkt(PLUS_V2, strict=True)
    assert not looks_like_tpkt(b"GET / HTTP/1.1\r\n\r\n", strict=False)
    assert not looks_like_tpkt(b"\x16\x03\x01\x00\x10" + bytes(16), strict=False)


STREAM = SETUP + DOWNLOAD + PI_INSE + UPLOAD + USERDATA_REQ + PLUS_V3 + PLUS_V2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_segmentation_gives_the_same_pdus(cuts: list[int]) -> None:
    points = sorted({0, len(STREAM), *cuts})
    p = S7Parser()
    events = []
    for a, b in itertools.pairwise(points):
        events += p.feed(STREAM[a:b], True)
    got = [(type(e).__name__, getattr(e, "function_code", None)) for e in pdus(events)]
    assert got == [("S7Pdu", 0xF0), ("S7Pdu", 0x1A), ("S7Pdu", 0x28), ("S7Pdu", 0x1D),
                   ("S7Pdu", None), ("S7PlusPdu", 0x04F2), ("S7PlusPdu", 0x0542)]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=400), st.booleans(), st.booleans()), max_size=8))
def test_random_bytes_never_raise_and_stay_bounded(chunks: list) -> None:
    p = S7Parser()
    for data, from_client, gap in chunks:
        p.feed(data, from_client, gap)
    buffered, pending, fragments = p.held()
    assert buffered <= 65535 + 400 and fragments <= 64 * 1024 and pending <= 256


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(STREAM) - 1), st.integers(0, 255)), min_size=1,
                max_size=8))
def test_mutated_real_pdus_never_raise(mutations: list[tuple[int, int]]) -> None:
    data = bytearray(STREAM)
    for pos, value in mutations:
        data[pos] = value
    p = S7Parser()
    p.feed(bytes(data), True)
    p.feed(bytes(data), False)
