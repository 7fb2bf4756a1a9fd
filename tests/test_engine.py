"""The packet path in the core: protocol recognition, directions, flows, community ids."""

from __future__ import annotations

import struct

import communityid
from hypothesis import given, settings
from hypothesis import strategies as st

from otsec.protocols.modbus import ModbusPdu
from tests import pcapgen as g
from tests.helpers import Conversation, holding_reply, read_holding, run_frames


def modbus(sink) -> list[ModbusPdu]:
    return [e for e in sink.events if isinstance(e, ModbusPdu)]


def test_polling_conversation_gives_paired_pdus() -> None:
    c = Conversation()
    for tid in range(5):
        c.send(True, read_holding(tid))
        c.send(False, holding_reply(tid))
    stats, sink = run_frames(c.frames)
    pdus = modbus(sink)
    assert [p.direction for p in pdus] == ["request", "response"] * 5
    assert all(p.request is not None for p in pdus if not p.from_client)
    assert stats["pdus"]["modbus"] == 10
    flow = pdus[0].flow
    assert flow.ip_texts[flow.client_side] == "10.0.0.20"


def test_http_and_tls_on_port_502_are_not_modbus() -> None:
    for payload in (b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00"):
        c = Conversation()
        c.send(True, payload)
        c.send(False, b"HTTP/1.1 200 OK\r\n\r\n")
        stats, sink = run_frames(c.frames)
        assert modbus(sink) == []
        assert stats["unrecognised_on_ot_port"] == 1


def test_modbus_recognised_by_content_on_another_port() -> None:
    c = Conversation(sport=5020)
    c.send(True, read_holding(1))
    c.send(False, holding_reply(1))
    _, sink = run_frames(c.frames)
    pdus = modbus(sink)
    assert [p.direction for p in pdus] == ["request", "response"]
    assert pdus[0].flow.protocol == "modbus"


def test_binary_protocol_on_other_port_is_not_taken_for_modbus() -> None:
    c = Conversation(sport=9999)
    c.send(True, b"\x00\x01\x00\x00\x00\x10\x01\x03garbage-garbage")
    _, sink = run_frames(c.frames)
    assert modbus(sink) == []


def test_stream_picked_up_mid_connection() -> None:
    c = Conversation(handshake=False)
    c.send(True, read_holding(1)[4:])  # the tail of a PDU whose start was not captured
    c.send(True, read_holding(2))
    c.send(False, holding_reply(2))
    _, sink = run_frames(c.frames)
    assert [p.transaction_id for p in modbus(sink)] == [2, 2]


def test_retransmission_and_reordering_do_not_duplicate_or_lose() -> None:
    c = Conversation()
    a = c.send(True, read_holding(1))
    b = c.send(True, read_holding(2))
    c.frames[-2:] = [b, a, a]  # out of order, then a retransmission
    c.send(False, holding_reply(1))
    c.send(False, holding_reply(2))
    _, sink = run_frames(c.frames)
    assert [p.transaction_id for p in modbus(sink)] == [1, 2, 1, 2]


def test_modbus_over_udp() -> None:
    udp_payload = read_holding(3)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(udp_payload), 0, 0, 64, 17, 0,
                     bytes([10, 0, 0, 20]), bytes([10, 0, 0, 10]))
    udp = struct.pack("!HHHH", 40000, 502, 8 + len(udp_payload), 0) + udp_payload
    _, sink = run_frames([g.ether(ip + udp)])
    (pdu,) = modbus(sink)
    assert pdu.flow.transport == "udp" and pdu.transaction_id == 3


def test_community_id_matches_the_reference_implementation() -> None:
    cid = communityid.CommunityID()
    for src, dst, sport, dport in (("10.0.0.1", "10.0.0.2", 40000, 502),
                                   ("10.0.0.2", "10.0.0.1", 502, 40000),
                                   ("192.168.1.1", "10.0.0.9", 1, 65535)):
        c = Conversation(client=src, server=dst, cport=sport, sport=dport)
        c.send(True, read_holding(1))
        _, sink = run_frames(c.frames)
        ref = cid.calc(communityid.FlowTuple.make_tcp(src, dst, sport, dport))
        assert modbus(sink)[0].flow.community_id == ref


def test_flow_table_is_bounded_and_counts_evictions() -> None:
    frames = []
    for i in range(300):
        c = Conversation(cport=20000 + i)
        c.send(True, read_holding(i))
        frames += c.frames
    stats, sink = run_frames(frames, max_flows=100)
    assert stats["flows"]["live"] == 0  # finish() ended them all
    assert stats["flows"]["evicted_when_full"] > 0
    assert stats["flows"]["peak"] <= 100
    assert len(modbus(sink)) == 300  # nothing lost by evicting idle flows


def _cut_session(sizes: list[int], frag: int, reverse: bool) -> list[bytes]:
    """Four Modbus writes and their answers, each side's bytes cut into segments of
    ``sizes`` (in turn, from the connection's first byte), each segment's IPv4 packet in
    fragments of ``frag`` bytes (0: whole), last first when ``reverse``."""
    c = Conversation()
    n = 0
    for tid in range(1, 5):
        pdu = g.mbap(tid, 1, bytes([6]) + struct.pack("!HH", tid, 100 + tid))
        for from_client in (True, False):
            pos = 0
            while pos < len(pdu):
                size = sizes[n % len(sizes)]
                n += 1
                c.send(from_client, pdu[pos:pos + size])
                pos += size
    if not frag:
        return c.frames
    frames = []
    for i, f in enumerate(c.frames):
        eth, ip = f[:14], f[14:]
        body = ip[20:]
        pieces = []
        for off in range(0, len(body), frag):
            more = 0x2000 if off + frag < len(body) else 0
            part = body[off:off + frag]
            head = ip[:2] + struct.pack("!HHH", 20 + len(part), i, more | off // 8) + ip[8:20]
            pieces.append(eth + head + part)
        frames += reversed(pieces) if reverse else pieces
    return frames


def _writes(frames: list[bytes]) -> list[tuple]:
    return [(p.direction, p.transaction_id, p.function_code, p.address, p.value)
            for p in modbus(run_frames(frames)[1])]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 13), min_size=1, max_size=12),
       st.sampled_from([0, 8, 16, 24]), st.booleans())
def test_any_cutting_of_a_connection_gives_the_same_pdus(sizes: list[int], frag: int,
                                                         reverse: bool) -> None:
    whole = _writes(_cut_session([1 << 16], 0, False))
    assert len(whole) == 8 and whole[0] == ("request", 1, 6, 1, 101)
    assert _writes(_cut_session(sizes, frag, reverse)) == whole
