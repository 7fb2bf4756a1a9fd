"""A bounded flow table: one Flow per 5-tuple, both directions, with idle expiry.

Each flow is stored under both of its directional keys so the hot path needs one dict
lookup and no key normalisation. Side 0 is the sender of the first packet seen; which
side is the *client* is decided from the SYN, the protocol's well-known port, or (for a
stream picked up mid-connection) the first application data.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.pyengine.linktypes import format_mac
from tests.pyengine.net.community_id import community_id
from tests.pyengine.net.decode import TCP
from tests.pyengine.net.reassembly import ReassemblyStats, TcpStream

TRANSPORT_NAMES = {6: "tcp", 17: "udp"}


def ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


class Flow:
    """One connection (TCP) or address/port pair (UDP)."""

    __slots__ = (
        "_cid",
        "_ip_text",
        "client",
        "client_reason",
        "closed",
        "context",
        "first_ts",
        "held",
        "ips",
        "last_ts",
        "macs",
        "parser",
        "payload_seen",
        "ports",
        "probe_tries",
        "proto",
        "protocol",
        "side_bytes",
        "side_packets",
        "streams",
        "vlan",
    )  # fmt: skip

    def __init__(
        self, src: bytes, dst: bytes, proto: int, sport: int, dport: int, ts: float
    ) -> None:
        self.ips = (src, dst)
        self.ports = (sport, dport)
        self.proto = proto
        self.macs: list[bytes] = [b"", b""]
        self.vlan = -1
        self.first_ts = ts
        self.last_ts = ts
        self.side_packets = [0, 0]
        self.side_bytes = [0, 0]
        self.client: int | None = None  # 0 or 1 once known
        self.client_reason = ""
        self.streams: tuple[TcpStream, TcpStream] | None = None
        self.parser: Any = None
        self.protocol: str | None = None  # dissected protocol, once recognised
        self.probe_tries = 0
        # before recognition: per side (bytes, gap before the next), pieces in order
        self.held: Any = None
        self.closed = 0  # FIN/RST count
        self._cid: str | None = None
        self._ip_text: tuple[str, str] | None = None
        self.context: Any = None  # per-direction document fields, built by sinks on demand
        self.payload_seen = False

    @property
    def packets(self) -> int:
        return self.side_packets[0] + self.side_packets[1]

    @property
    def bytes(self) -> int:
        return self.side_bytes[0] + self.side_bytes[1]

    @property
    def transport(self) -> str:
        return TRANSPORT_NAMES.get(self.proto, str(self.proto))

    @property
    def community_id(self) -> str:
        if self._cid is None:
            self._cid = community_id(self.ips[0], self.ips[1], self.proto, *self.ports)
        return self._cid

    @property
    def ip_texts(self) -> tuple[str, str]:
        if self._ip_text is None:
            self._ip_text = (ip_text(self.ips[0]), ip_text(self.ips[1]))
        return self._ip_text

    @property
    def mac_texts(self) -> tuple[str | None, str | None]:
        return self.mac_text(0), self.mac_text(1)

    def mac_text(self, side: int) -> str | None:
        return format_mac(self.macs[side]) if self.macs[side] else None

    def set_client(self, side: int, reason: str) -> None:
        if self.client is None:
            self.client = side
            self.client_reason = reason

    @property
    def client_side(self) -> int:
        """The client side, guessing the lower-port side is the server when unknown."""
        if self.client is not None:
            return self.client
        return 0 if self.ports[0] >= self.ports[1] else 1

    def sender(self, from_client: bool) -> int:
        """The side that sent an event travelling client-to-server or back."""
        client = self.client_side
        return client if from_client else 1 - client

    def ensure_streams(self, stats: ReassemblyStats) -> tuple[TcpStream, TcpStream]:
        if self.streams is None:
            self.streams = (TcpStream(stats), TcpStream(stats))
        return self.streams


@dataclass(slots=True)
class FlowStats:
    created: int = 0
    expired: int = 0
    evicted_full: int = 0
    peak: int = 0


class FlowTable:
    """Bounded table; ``on_end`` is called once for every flow that leaves it."""

    def __init__(
        self,
        on_end: Callable[[Flow], None],
        max_flows: int = 200_000,
        tcp_idle: float = 600.0,
        udp_idle: float = 120.0,
        closed_idle: float = 30.0,
    ) -> None:
        self.index: dict[tuple[bytes, bytes, int, int, int], tuple[Flow, int]] = {}
        self.flows: dict[int, Flow] = {}
        self.on_end = on_end
        self.max_flows = max_flows
        self.tcp_idle = tcp_idle
        self.udp_idle = udp_idle
        self.closed_idle = closed_idle
        self.stats = FlowStats()
        self.last_sweep = 0.0

    def __len__(self) -> int:
        return len(self.flows)

    def __iter__(self) -> Iterator[Flow]:
        return iter(list(self.flows.values()))

    def create(self, src: bytes, dst: bytes, proto: int, sport: int, dport: int, ts: float) -> Flow:
        if len(self.flows) >= self.max_flows:
            self._make_room(ts)
        flow = Flow(src, dst, proto, sport, dport, ts)
        self.index[(src, dst, proto, sport, dport)] = (flow, 0)
        self.index[(dst, src, proto, dport, sport)] = (flow, 1)
        self.flows[id(flow)] = flow
        self.stats.created += 1
        if len(self.flows) > self.stats.peak:
            self.stats.peak = len(self.flows)
        return flow

    def end(self, flow: Flow) -> None:
        if self.flows.pop(id(flow), None) is None:
            return
        src, dst = flow.ips
        sport, dport = flow.ports
        self.index.pop((src, dst, flow.proto, sport, dport), None)
        self.index.pop((dst, src, flow.proto, dport, sport), None)
        self.on_end(flow)

    def sweep(self, now: float) -> None:
        """End flows idle past their timeout (call every few seconds of capture time)."""
        self.last_sweep = now
        for flow in list(self.flows.values()):
            if flow.closed:
                limit = self.closed_idle
            elif flow.proto == TCP:
                limit = self.tcp_idle
            else:
                limit = self.udp_idle
            if now - flow.last_ts > limit:
                self.stats.expired += 1
                self.end(flow)

    def _make_room(self, now: float) -> None:
        self.sweep(now)
        if len(self.flows) < self.max_flows:
            return
        victims = sorted(self.flows.values(), key=lambda f: f.last_ts)
        for flow in victims[: max(1, self.max_flows // 10)]:
            self.stats.evicted_full += 1
            self.end(flow)

    def close_all(self) -> None:
        for flow in list(self.flows.values()):
            self.end(flow)
