"""The Modbus/TCP dissector: fields, pairing, anomalies, framing and fuzzing."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otsec.events import Anomaly
from otsec.protocols.modbus import ModbusAnomaly, ModbusPdu
from tests.helpers import ModbusParser, looks_like_modbus
from tests.pcapgen import mbap


def pdus(events: list) -> list[ModbusPdu]:
    return [e for e in events if isinstance(e, ModbusPdu)]


def anomalies(events: list) -> list[ModbusAnomaly]:
    return [e.kind for e in events if isinstance(e, Anomaly)] + [
        a for e in events if isinstance(e, ModbusPdu) for a in e.anomalies]


def test_read_request_and_response_are_paired() -> None:
    p = ModbusParser()
    (req,) = p.feed(mbap(7, 1, bytes([3]) + struct.pack("!HH", 100, 2)), True)
    (resp,) = p.feed(mbap(7, 1, bytes([3, 4, 0, 1, 0, 2])), False)
    assert (req.function_code, req.address, req.quantity, req.unit_id) == (3, 100, 2, 1)
    assert resp.request is req and req.accepted is True and resp.direction == "response"
    assert not req.anomalies and not resp.anomalies


def test_exception_response() -> None:
    p = ModbusParser()
    p.feed(mbap(1, 1, bytes([6]) + struct.pack("!HH", 40, 9)), True)
    (resp,) = p.feed(mbap(1, 1, bytes([0x86, 2])), False)
    assert resp.function_code == 0x86 and resp.exception_code == 2 and resp.code == 6
    assert resp.request is not None and resp.request.accepted is False


def test_write_functions_fields() -> None:
    p = ModbusParser()
    (w16,) = p.feed(mbap(1, 1, bytes([16]) + struct.pack("!HHB", 10, 2, 4) + bytes(4)), True)
    assert (w16.address, w16.quantity) == (10, 2) and not w16.anomalies
    (w5,) = p.feed(mbap(2, 1, bytes([5]) + struct.pack("!HH", 3, 0xFF00)), True)
    assert (w5.address, w5.value) == (3, 0xFF00)
    (w23,) = p.feed(mbap(3, 1, bytes([23]) + struct.pack("!HHHHB", 1, 2, 30, 1, 2) + bytes(2)),
                    True)
    assert (w23.address, w23.quantity, w23.write_address, w23.write_quantity) == (1, 2, 30, 1)


def test_diagnostics_device_id_server_id_and_umas() -> None:
    p = ModbusParser()
    (diag,) = p.feed(mbap(1, 1, bytes([8]) + struct.pack("!HH", 4, 0)), True)
    assert diag.subfunction == 4
    (mei,) = p.feed(mbap(2, 1, bytes([43, 14, 1, 0])), True)
    assert mei.mei_type == 14
    objs = b"".join(bytes([i, len(v)]) + v for i, v in enumerate([b"Schneider", b"M340", b"3.2"]))
    (ident,) = p.feed(mbap(2, 1, bytes([43, 14, 1, 0x81, 0, 0, 3]) + objs), False)
    assert ident.device_id == {0: "Schneider", 1: "M340", 2: "3.2"} and not ident.anomalies
    p.feed(mbap(3, 1, bytes([17])), True)
    (sid,) = p.feed(mbap(3, 1, bytes([17, 3, 0xAB, 0xCD, 0xFF])), False)
    assert sid.server_id == "abcd" and sid.run_indicator is True
    (umas,) = p.feed(mbap(4, 0, bytes([90, 0, 0x41])), True)
    assert umas.umas_function == 0x41


def test_several_pdus_per_segment_and_one_pdu_across_segments() -> None:
    p = ModbusParser()
    req = mbap(1, 1, bytes([3]) + struct.pack("!HH", 0, 1))
    req2 = mbap(2, 1, bytes([4]) + struct.pack("!HH", 5, 1))
    assert len(pdus(p.feed(req + req2, True))) == 2
    blob = mbap(9, 1, bytes([1]) + struct.pack("!HH", 0, 8))
    assert p.feed(blob[:3], True) == []
    assert p.feed(blob[3:9], True) == []
    (one,) = p.feed(blob[9:], True)
    assert one.transaction_id == 9


def test_malformed_headers_are_anomalies_and_parsing_goes_on() -> None:
    p = ModbusParser()
    bad = mbap(1, 1, bytes([3]) + struct.pack("!HH", 0, 1), pid=7)
    good = mbap(2, 1, bytes([3]) + struct.pack("!HH", 0, 1))
    events = p.feed(bad + good, True)
    assert ModbusAnomaly.INVALID_PROTOCOL_ID in anomalies(events)
    assert [e.transaction_id for e in pdus(events)] == [2]
    p2 = ModbusParser()
    events = p2.feed(mbap(1, 1, bytes([3, 0, 0])) + good, True)  # FC 3 with a short body
    assert ModbusAnomaly.LENGTH_MISMATCH in anomalies(events)
    assert len(pdus(events)) == 2
    (fc0,) = ModbusParser().feed(mbap(1, 1, bytes([0, 0, 0])), True)
    assert ModbusAnomaly.INVALID_FUNCTION_CODE in fc0.anomalies


def test_oversized_pdu_is_flagged_but_decoded() -> None:
    (big,) = ModbusParser().feed(mbap(1, 0, bytes([90, 0, 0x50]) + bytes(300)), True)
    assert ModbusAnomaly.INVALID_LENGTH in big.anomalies and big.umas_function == 0x50


def test_unsolicited_response_and_flood_bound() -> None:
    p = ModbusParser()
    events = p.feed(mbap(5, 1, bytes([3, 2, 0, 0])), False)
    assert ModbusAnomaly.UNSOLICITED_RESPONSE in anomalies(events)
    flood = b"".join(mbap(i, 1, bytes([3, 0, 0, 0, 1])) for i in range(2000))
    events = p.feed(flood, True)
    assert ModbusAnomaly.FLOODED in anomalies(events)
    # only the newest 512 stay open: the oldest request was forgotten, the newest pairs
    old = p.feed(mbap(0, 1, bytes([3, 2, 0, 0])), False)
    assert ModbusAnomaly.UNSOLICITED_RESPONSE in anomalies(old)
    new = p.feed(mbap(1999, 1, bytes([3, 2, 0, 0])), False)
    assert new[0].request is not None and not anomalies(new)


def test_resynchronises_after_a_gap() -> None:
    p = ModbusParser()
    good = mbap(2, 1, bytes([3]) + struct.pack("!HH", 0, 1))
    tail_of_lost_pdu = b"\x07\x08\x09"
    events = p.feed(tail_of_lost_pdu + good + good, True, gap=True)
    assert [e.transaction_id for e in pdus(events)] == [2, 2]
    assert ModbusAnomaly.RESYNCHRONISED in anomalies(events)


def test_probe_rejects_http_and_tls_and_accepts_modbus() -> None:
    req = mbap(1, 1, bytes([3]) + struct.pack("!HH", 0, 1))
    assert looks_like_modbus(req, strict=True) and looks_like_modbus(req, strict=False)
    for other in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"):
        assert not looks_like_modbus(other, strict=False)
    assert not looks_like_modbus(req + b"\x00", strict=True)  # not whole PDUs


VALID_STREAM = b"".join([
    mbap(1, 1, bytes([3]) + struct.pack("!HH", 0, 10)),
    mbap(2, 1, bytes([16]) + struct.pack("!HHB", 10, 2, 4) + bytes(4)),
    mbap(3, 1, bytes([8]) + struct.pack("!HH", 4, 0)),
    mbap(4, 1, bytes([43, 14, 1, 0])),
    mbap(5, 0, bytes([90, 0, 0x02])),
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(VALID_STREAM)), max_size=10))
def test_any_segmentation_gives_the_same_pdus(cuts: list[int]) -> None:
    points = sorted({0, len(VALID_STREAM), *cuts})
    p = ModbusParser()
    events = []
    for a, b in itertools.pairwise(points):
        events += p.feed(VALID_STREAM[a:b], True)
    assert [e.transaction_id for e in pdus(events)] == [1, 2, 3, 4, 5]
    assert not anomalies(events)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans(), st.booleans()), max_size=8))
def test_random_bytes_never_raise_and_stay_bounded(chunks: list) -> None:
    p = ModbusParser()
    for data, from_client, gap in chunks:
        for ev in p.feed(data, from_client, gap):
            assert isinstance(ev, ModbusPdu | Anomaly)
        p.feed_datagram(data, from_client)
    buffered, pending, _ = p.held()
    assert buffered <= 4096 + 300 + 2048 and pending <= 512


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID_STREAM) - 1), st.integers(0, 255)),
                min_size=1, max_size=6))
def test_mutated_real_pdus_never_raise(mutations: list[tuple[int, int]]) -> None:
    data = bytearray(VALID_STREAM)
    for pos, value in mutations:
        data[pos] = value
    p = ModbusParser()
    p.feed(bytes(data), True)
    p.feed(bytes(data), False)
