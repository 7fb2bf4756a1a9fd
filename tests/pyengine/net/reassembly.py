"""TCP stream reassembly for one direction of a connection.

The goal is a parser that never goes blind: retransmissions and overlaps are trimmed,
out-of-order segments wait (bounded) for the hole to fill, and a hole that will not
fill (a segment the capture lost, proven by the peer acknowledging past it, or too much
data waiting) becomes a *gap*: the stream jumps ahead, counts what it skipped, and tells
the dissector to resynchronise on the next PDU boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MASK = 0xFFFFFFFF
HALF = 0x80000000
MAX_SEGMENTS = 64  # segments waiting behind one hole before it is declared lost


@dataclass(slots=True)
class ReassemblyStats:
    """Counters shared by all streams of one engine (reported in summary.json)."""

    gaps: int = 0
    skipped_bytes: int = 0
    retransmitted_bytes: int = 0
    out_of_order_segments: int = 0
    dropped_pending_bytes: int = 0


Chunk = tuple[bytes, bool, Any]  # (data, gap before it, tag of the segment it came in)


class TcpStream:
    """Reassembles one direction. ``add`` returns the in-order chunks ready to parse.

    Every segment carries an opaque ``tag`` (the engine passes the packet's timestamp and
    frame number) that comes back with its bytes, so a PDU released later, when a hole
    fills, is still attributed to the packet that carried it.
    """

    __slots__ = ("acked", "max_pending", "next_seq", "pending", "pending_bytes", "stats")

    def __init__(self, stats: ReassemblyStats, max_pending: int = 256 * 1024) -> None:
        self.next_seq: int | None = None
        self.pending: dict[int, tuple[bytes, Any]] = {}
        self.pending_bytes = 0
        self.stats = stats
        self.max_pending = max_pending
        self.acked: int | None = None  # highest ack the peer sent for this direction

    def syn(self, seq: int) -> None:
        """A SYN fixes the initial sequence number; data starts one after it."""
        if self.next_seq is None or not self.pending:
            self.next_seq = (seq + 1) & MASK

    def add(self, seq: int, data: bytes, tag: Any = None) -> list[Chunk]:
        """Accept one segment; return ``[(chunk, gap_before, tag), ...]`` in stream order."""
        nxt = self.next_seq
        if nxt is None:  # picked up mid-connection
            self.next_seq = (seq + len(data)) & MASK
            return [(data, True, tag)]
        diff = (seq - nxt) & MASK
        if diff == 0:
            self.next_seq = (seq + len(data)) & MASK
            out = [(data, False, tag)]
            if self.pending:
                self._drain(out)
            return out
        if diff >= HALF:  # starts before what we have: retransmission or overlap
            overlap = (nxt - seq) & MASK
            if overlap >= len(data):
                self.stats.retransmitted_bytes += len(data)
                return []
            self.stats.retransmitted_bytes += overlap
            data = data[overlap:]
            self.next_seq = (nxt + len(data)) & MASK
            out = [(data, False, tag)]
            if self.pending:
                self._drain(out)
            return out
        # a hole before this segment: keep it until the hole fills or is proven lost
        self.stats.out_of_order_segments += 1
        old = self.pending.get(seq)
        if old is None or len(old[0]) < len(data):
            self.pending[seq] = (data, tag)
            self.pending_bytes += len(data) - (len(old[0]) if old else 0)
        if (
            self.pending_bytes > self.max_pending
            or len(self.pending) > MAX_SEGMENTS
            or self._hole_acked()
        ):
            return self.skip_gap()
        return []

    def ack(self, ack: int) -> list[Chunk]:
        """The peer acknowledged up to ``ack``: a hole it acknowledged was lost by the capture."""
        if self.acked is None or ((ack - self.acked) & MASK) < HALF:
            self.acked = ack
        if self.pending and self._hole_acked():
            return self.skip_gap()
        return []

    def _hole_acked(self) -> bool:
        if self.acked is None or self.next_seq is None:
            return False
        d = (self.acked - self.next_seq) & MASK
        return 0 < d < HALF

    def skip_gap(self) -> list[Chunk]:
        """Jump to the earliest waiting segment, counting the bytes never seen."""
        if not self.pending or self.next_seq is None:
            return []
        nxt = self.next_seq
        first = min(self.pending, key=lambda s: (s - nxt) & MASK)
        self.stats.gaps += 1
        self.stats.skipped_bytes += (first - nxt) & MASK
        data, tag = self.pending.pop(first)
        self.pending_bytes -= len(data)
        self.next_seq = (first + len(data)) & MASK
        out = [(data, True, tag)]
        self._drain(out)
        return out

    def _drain(self, out: list[Chunk]) -> None:
        """Move waiting segments that now continue the stream into ``out``."""
        pending = self.pending
        while pending:
            nxt = self.next_seq
            assert nxt is not None
            progressed = False
            for seq in list(pending):
                diff = (seq - nxt) & MASK
                data, tag = pending[seq]
                if diff == 0 or diff >= HALF:
                    del pending[seq]
                    self.pending_bytes -= len(data)
                    overlap = 0 if diff == 0 else (nxt - seq) & MASK
                    if overlap < len(data):
                        self.stats.retransmitted_bytes += overlap
                        data = data[overlap:]
                        out.append((data, False, tag))
                        self.next_seq = (nxt + len(data)) & MASK
                        progressed = True
                        break
                    self.stats.retransmitted_bytes += len(data)
            if not progressed:
                return

    def flush(self) -> list[Chunk]:
        """At the end of the flow: deliver whatever still waits behind holes."""
        out: list[Chunk] = []
        while self.pending:
            out.extend(self.skip_gap())
        return out
