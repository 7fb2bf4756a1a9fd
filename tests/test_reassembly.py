"""TCP reassembly: any segmentation, order and duplication gives back the stream."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from otsec.net.reassembly import MASK, ReassemblyStats, TcpStream


def segments(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [(a, data[a:b]) for a, b in itertools.pairwise(points) if b > a]


def run(stream: TcpStream, isn: int, segs: list[tuple[int, bytes]]) -> tuple[bytes, int]:
    out = b""
    gaps = 0
    for off, seg in segs:
        for chunk, gap, _tag in stream.add((isn + off) & MASK, seg):
            out += chunk
            gaps += gap
    for chunk, gap, _tag in stream.flush():
        out += chunk
        gaps += gap
    return out, gaps


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.lists(st.integers(0, 400), max_size=12),
       st.integers(0, MASK), st.randoms(use_true_random=False), st.integers(0, 3))
def test_reorder_and_duplicates_give_the_stream(data: bytes, cuts: list[int], isn: int,
                                                rnd, dups: int) -> None:
    segs = segments(data, cuts)
    segs += [rnd.choice(segs) for _ in range(dups)]  # retransmissions
    first, rest = segs[0], segs[1:]
    rnd.shuffle(rest)
    stream = TcpStream(ReassemblyStats())
    stream.syn((isn - 1) & MASK)
    out, gaps = run(stream, isn, [first, *rest])
    assert out == data
    assert gaps == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=20, max_size=400), st.lists(st.integers(0, 400), min_size=3,
                                                        max_size=12), st.integers(0, MASK))
def test_lost_segment_is_a_counted_gap(data: bytes, cuts: list[int], isn: int) -> None:
    segs = segments(data, cuts)
    if len(segs) < 3:
        return
    lost = segs.pop(1)
    stats = ReassemblyStats()
    stream = TcpStream(stats)
    stream.syn((isn - 1) & MASK)
    out, gaps = run(stream, isn, segs)
    assert out == data[: lost[0]] + data[lost[0] + len(lost[1]) :]
    assert gaps == 1
    assert stats.skipped_bytes == len(lost[1])


def test_peer_ack_past_a_hole_declares_it_lost() -> None:
    stats = ReassemblyStats()
    s = TcpStream(stats)
    s.syn(99)
    assert s.add(100, b"aaaa", 1) == [(b"aaaa", False, 1)]
    assert s.add(108, b"cccc", 2) == []  # bytes 104-107 missing so far
    assert s.ack(112) == [(b"cccc", True, 2)]  # the peer got them: the capture lost them
    assert stats.gaps == 1 and stats.skipped_bytes == 4


def test_overlap_keeps_first_bytes_and_counts_retransmission() -> None:
    stats = ReassemblyStats()
    s = TcpStream(stats)
    s.syn(0)
    s.add(1, b"abcdef")
    assert s.add(4, b"XYZghi") == [(b"ghi", False, None)]
    assert stats.retransmitted_bytes == 3


def test_midstream_pickup_and_sequence_wrap() -> None:
    s = TcpStream(ReassemblyStats())
    assert s.add(MASK - 1, b"abcd") == [(b"abcd", True, None)]  # no SYN seen: flagged as a gap
    assert s.add(2, b"efgh") == [(b"efgh", False, None)]  # 0xFFFFFFFE + 4 wraps to 2


def test_pending_is_bounded() -> None:
    stats = ReassemblyStats()
    s = TcpStream(stats, max_pending=1000)
    s.syn(0)
    delivered = []
    for i in range(50):
        delivered += s.add(1 + 10_000 + i * 100, b"x" * 100)
    assert s.pending_bytes <= 1000
    assert stats.gaps >= 1 and delivered
