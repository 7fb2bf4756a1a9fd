"""Shared test helpers: run the engine over packets and collect what comes out."""

from __future__ import annotations

import struct
from pathlib import Path

from otsec.capture.files import CaptureReader
from otsec.engine import Engine
from otsec.events import Event
from tests import pcapgen as g


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.flows: list[object] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def on_flow_end(self, flow: object) -> None:
        self.flows.append(flow)

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        pass


def run_frames(frames: list[bytes], linktype: int = 1, **kw: object) -> tuple[Engine, Collect]:
    sink = Collect()
    engine = Engine([sink], **kw)  # type: ignore[arg-type]
    for i, frame in enumerate(frames):
        engine.packet(1000.0 + i, linktype, frame, 0, len(frame), len(frame))
    engine.finish()
    return engine, sink


def run_file(path: Path) -> tuple[Engine, Collect]:
    sink = Collect()
    engine = Engine([sink])
    with CaptureReader(path) as reader:
        for pkt in reader:
            engine.packet(*pkt)
    engine.finish()
    return engine, sink


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

    def _f(self, from_client: bool, flags: int, payload: bytes, seq: int | None = None) -> bytes:
        if from_client:
            ip = g.ipv4_tcp(self.c, self.s, self.cp, self.sp, self.cseq if seq is None else seq,
                            self.sseq, flags, payload)
            return g.ether(ip, src=b"\x00\x0c\x29\x00\x00\x14", dst=b"\x00\x80\xf4\x00\x00\x0a")
        ip = g.ipv4_tcp(self.s, self.c, self.sp, self.cp, self.sseq if seq is None else seq,
                        self.cseq, flags, payload)
        return g.ether(ip, src=b"\x00\x80\xf4\x00\x00\x0a", dst=b"\x00\x0c\x29\x00\x00\x14")

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
