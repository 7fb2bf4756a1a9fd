"""Shared test helpers: run the compiled core over packets and collect what comes out."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otsec import _core
from otsec.core import Facts
from otsec.events import Event
from tests import pcapgen as g


@dataclass
class Collect:
    events: list[Event] = field(default_factory=list)
    arp: list[tuple[str, str, float]] = field(default_factory=list)


def _collect(core: Any) -> tuple[dict[str, Any], Collect]:
    facts, sink = Facts(), Collect()
    for fact in core.take_facts():
        if fact[0] == "arp":
            sink.arp.append(fact[1:])
        elif fact[0] == "view":
            facts.view(fact)
        else:
            sink.events.append(facts.event(fact))
    return core.stats(), sink


def run_frames(frames: list[bytes], linktype: int = 1,
               max_flows: int = 200_000) -> tuple[dict[str, Any], Collect]:
    """Every record the core makes of these frames (one second apart), typed."""
    core = _core.Engine(max_flows=max_flows, cross_all=True)
    for i, frame in enumerate(frames):
        core.packet(1000.0 + i, linktype, frame, len(frame))
    core.finish()
    return _collect(core)


def run_file(path: Path) -> tuple[dict[str, Any], Collect]:
    core = _core.Engine(cross_all=True)
    capture = _core.Capture(str(path))
    while core.feed(capture):
        pass
    core.finish()
    return _collect(core)


class Parser:
    """One dissector of the core, on its own: stream bytes in, typed records out."""

    def __init__(self, protocol: str) -> None:
        self.dissector = _core.Dissector(protocol)
        self.facts = Facts()

    def feed(self, data: bytes, from_client: bool, gap: bool = False) -> list[Event]:
        return [self.facts.event(f) for f in self.dissector.feed(data, from_client, gap)]

    def held(self) -> tuple[int, int, int]:
        """(bytes buffered in the larger direction, open requests, partial reassemblies)"""
        return self.dissector.held()

    def feed_datagram(self, data: bytes, from_client: bool) -> list[Event]:
        return [self.facts.event(f) for f in self.dissector.feed_datagram(data, from_client)]


def ModbusParser() -> Parser:
    return Parser("modbus")


def S7Parser() -> Parser:
    return Parser("s7comm")


def Dnp3Parser() -> Parser:
    return Parser("dnp3")


def looks_like_modbus(payload: bytes, strict: bool) -> bool:
    return _core.looks_like("modbus", payload, strict)


def looks_like_tpkt(payload: bytes, strict: bool) -> bool:
    return _core.looks_like("s7comm", payload, strict)


def looks_like_dnp3(payload: bytes, strict: bool) -> bool:
    return _core.looks_like("dnp3", payload, strict)


def szl_identity(szl_id: int, data: bytes) -> dict[str, str]:
    return dict(_core.szl_identity(szl_id, data))


crc = _core.dnp3_crc


class Conversation:
    """A TCP connection between a client and a server, frame by frame."""

    def __init__(self, client: str = "10.0.0.20", server: str = "10.0.0.10", cport: int = 40000,
                 sport: int = 502, handshake: bool = True) -> None:
        self.c, self.s, self.cp, self.sp = client, server, cport, sport
        self.cseq, self.sseq = 1000, 5000
        self.frames: list[bytes] = []
        if handshake:
            self.frames.append(self._f(True, 0x02, b"", seq=self.cseq - 1))
            self.frames.append(self._f(False, 0x12, b"", seq=self.sseq - 1))

    def _f(self, from_client: bool, flags: int, payload: bytes, seq: int | None = None,
           window: int = 8192) -> bytes:
        if from_client:
            ip = g.ipv4_tcp(self.c, self.s, self.cp, self.sp, self.cseq if seq is None else seq,
                            self.sseq, flags, payload, window)
            return g.ether(ip, src=b"\x00\x0c\x29\x00\x00\x14", dst=b"\x00\x80\xf4\x00\x00\x0a")
        ip = g.ipv4_tcp(self.s, self.c, self.sp, self.cp, self.sseq if seq is None else seq,
                        self.cseq, flags, payload, window)
        return g.ether(ip, src=b"\x00\x80\xf4\x00\x00\x0a", dst=b"\x00\x0c\x29\x00\x00\x14")

    def frame(self, from_client: bool, flags: int) -> bytes:
        """A frame without payload (a FIN, an RST) at the side's current sequence number."""
        return self._f(from_client, flags, b"")

    def send(self, from_client: bool, payload: bytes) -> bytes:
        frame = self._f(from_client, 0x18, payload)
        if from_client:
            self.cseq += len(payload)
        else:
            self.sseq += len(payload)
        self.frames.append(frame)
        return frame


def read_holding(tid: int, addr: int = 0, count: int = 2) -> bytes:
    return g.mbap(tid, 1, bytes([3]) + struct.pack("!HH", addr, count))


def holding_reply(tid: int, count: int = 2) -> bytes:
    return g.mbap(tid, 1, bytes([3, 2 * count]) + bytes(2 * count))
