"""The DNP3 dissector: CRCs, link framing, transport reassembly, objects and fuzzing."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from otsec.events import Anomaly
from otsec.protocols.dnp3 import Dnp3Anomaly, Dnp3Pdu
from tests.helpers import Dnp3Parser, crc, looks_like_dnp3


def frame(dst: int, src: int, user: bytes, control: int = 0xC4) -> bytes:
    """A link frame with valid CRCs around ``user`` (transport header + application)."""
    head = bytes([0x05, 0x64, 5 + len(user), control]) + dst.to_bytes(2, "little") + \
        src.to_bytes(2, "little")
    out = head + crc(head).to_bytes(2, "little")
    for i in range(0, len(user), 16):
        block = user[i : i + 16]
        out += block + crc(block).to_bytes(2, "little")
    return out


def app(fc: int, body: bytes = b"", control: int = 0xC0, iin: bytes | None = None) -> bytes:
    return bytes([control, fc]) + (iin or b"") + body


def fragment(dst: int, src: int, apdu: bytes, seq: int = 0, size: int = 249) -> bytes:
    """Split an APDU into transport segments, each in its own link frame."""
    parts = [apdu[i : i + size] for i in range(0, len(apdu), size)] or [b""]
    out = b""
    for i, part in enumerate(parts):
        th = ((seq + i) & 0x3F) | (0x40 if i == 0 else 0) | (0x80 if i == len(parts) - 1 else 0)
        out += frame(dst, src, bytes([th]) + part)
    return out


def pdus(events: list) -> list[Dnp3Pdu]:
    return [e for e in events if isinstance(e, Dnp3Pdu)]


def test_crc_matches_the_standard_check_value() -> None:
    # header of a real frame "05 64 05 C0 01 00 00 04" has CRC bytes E9 21
    assert crc(bytes.fromhex("056405c001000004")).to_bytes(2, "little") == b"\xe9\x21"


def test_read_request_and_response_with_iin_and_objects() -> None:
    p = Dnp3Parser()
    read = app(1, bytes([60, 2, 6, 60, 3, 6, 60, 4, 6, 60, 1, 6]))
    (req,) = p.feed(fragment(10, 1, read), True)
    assert (req.function_code, req.source_address, req.destination_address) == (1, 1, 10)
    assert [(o.group, o.variation, o.qualifier) for o in req.objects] == [
        (60, 2, 6), (60, 3, 6), (60, 4, 6), (60, 1, 6)]
    body = bytes([30, 1, 0, 0, 1]) + bytes(10) + bytes([1, 2, 0, 0, 7, 0x81])
    (resp,) = p.feed(fragment(1, 10, app(129, body, iin=b"\x80\x00")), False)
    assert resp.iin == 0x8000 and resp.request is req and req.accepted is True
    assert [(o.group, o.variation, o.count) for o in resp.objects] == [(30, 1, 2), (1, 2, 8)]


def test_crob_control_and_unsolicited_response() -> None:
    crob = bytes([12, 1, 0x28, 1, 0, 3, 0]) + bytes([3, 1, 0xE8, 3, 0, 0, 0, 0, 0, 0, 0])
    (op,) = Dnp3Parser().feed(fragment(10, 1, app(5, crob)), True)
    assert op.function_code == 5 and op.objects[0].group == 12 and op.objects[0].count == 1
    (uns,) = Dnp3Parser().feed(fragment(1, 10, app(130, b"", control=0xF0, iin=b"\0\0")), False)
    assert uns.unsolicited and uns.direction == "response"


def test_multi_segment_fragment_is_reassembled() -> None:
    body = b"".join(bytes([30, 1, 0x00, i, i]) + bytes(5) for i in range(60))  # 600 bytes
    wire = fragment(1, 10, app(129, body, iin=b"\0\0"), size=100)
    p = Dnp3Parser()
    events = []
    for i in range(0, len(wire), 37):  # and torn across TCP segments
        events += p.feed(wire[i : i + 37], False)
    (resp,) = pdus(events)
    assert len(resp.objects) == 60 and not resp.anomalies


def test_bad_crcs_and_sequence_errors_are_anomalies() -> None:
    good = fragment(10, 1, app(1, bytes([60, 1, 6])))
    bad_header = good[:8] + b"\0\0" + good[10:]
    events = Dnp3Parser().feed(bad_header, True)
    assert [e.kind for e in events if isinstance(e, Anomaly)] == [Dnp3Anomaly.BAD_HEADER_CRC]
    bad_data = good[:-1] + bytes([good[-1] ^ 0xFF])
    events = Dnp3Parser().feed(bad_data, True)
    assert Dnp3Anomaly.BAD_DATA_CRC in [e.kind for e in events if isinstance(e, Anomaly)]
    assert len(pdus(events)) == 1  # the header is sound: the fragment is still parsed
    middle = frame(10, 1, bytes([0x05]) + b"abc")  # neither FIR nor a known sequence
    events = Dnp3Parser().feed(middle, True)
    assert Dnp3Anomaly.TRANSPORT_SEQUENCE in [e.kind for e in events if isinstance(e, Anomaly)]
    (odd,) = pdus(Dnp3Parser().feed(fragment(10, 1, app(77)), True))
    assert Dnp3Anomaly.RESERVED_FUNCTION in odd.anomalies


def test_probe_and_resync() -> None:
    wire = fragment(10, 1, app(1, bytes([60, 1, 6])))
    assert looks_like_dnp3(wire, strict=True)
    assert not looks_like_dnp3(b"\x05\x64" + bytes(8), strict=True)
    events = Dnp3Parser().feed(b"garbage" + wire, True)
    assert len(pdus(events)) == 1
    assert Dnp3Anomaly.RESYNCHRONISED in [e.kind for e in events if isinstance(e, Anomaly)]


STREAM = fragment(10, 1, app(1, bytes([60, 1, 6]))) + fragment(
    10, 1, app(5, bytes([12, 1, 0x28, 1, 0, 3, 0]) + bytes(11), control=0xC1), seq=1) + \
    fragment(10, 1, app(13, control=0xC2), seq=2)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_segmentation_gives_the_same_fragments(cuts: list[int]) -> None:
    points = sorted({0, len(STREAM), *cuts})
    p = Dnp3Parser()
    events = []
    for a, b in itertools.pairwise(points):
        events += p.feed(STREAM[a:b], True)
    assert [e.function_code for e in pdus(events)] == [1, 5, 13]
    assert not [e for e in events if isinstance(e, Anomaly)]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans(), st.booleans()), max_size=8))
def test_random_bytes_never_raise_and_stay_bounded(chunks: list) -> None:
    p = Dnp3Parser()
    for data, from_client, gap in chunks:
        p.feed(data, from_client, gap)
    buffered, pending, partial = p.held()
    assert buffered <= 300 * 8 + 300 and partial <= 257 and pending <= 64


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(STREAM) - 1), st.integers(0, 255)), min_size=1,
                max_size=8))
def test_mutated_link_frames_never_raise(mutations: list[tuple[int, int]]) -> None:
    data = bytearray(STREAM)
    for pos, value in mutations:
        data[pos] = value
    Dnp3Parser().feed(bytes(data), True)


APDUS = [app(1, bytes([60, 1, 6, 1, 2, 0, 0, 9])), app(5, bytes([12, 1, 0x28, 1, 0, 3, 0]) +
         bytes(11)), app(129, bytes([30, 1, 0, 0, 1]) + bytes(10), iin=b"\0\0"),
         app(2, bytes([50, 1, 7, 1]) + bytes(6))]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(APDUS), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255)),
                                        min_size=1, max_size=6), st.binary(max_size=40))
def test_mutated_application_layer_with_valid_crcs(apdu: bytes, mutations: list,
                                                   tail: bytes) -> None:
    data = bytearray(apdu + tail)
    for pos, value in mutations:
        if pos < len(data):
            data[pos] = value
    events = Dnp3Parser().feed(fragment(10, 1, bytes(data)), True)
    (pdu,) = pdus(events)  # valid CRCs: the fragment always reaches the application layer
    assert len(pdu.objects) <= 256
