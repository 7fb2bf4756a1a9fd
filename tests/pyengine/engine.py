"""The packet path: decode, flows, reassembly, dissection, and fan-out of typed events.

The engine only moves bytes and events. What an event means (inventory, graph, alerts,
documents) is decided by the consumers it hands them to.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from otsec.events import Anomaly, Event
from tests.pyengine.meaning import derive
from tests.pyengine.net.decode import ACK, ARP, FIN, RST, SYN, TCP, UDP, decode_arp, decode_frame
from tests.pyengine.net.flows import Flow, FlowTable
from tests.pyengine.net.reassembly import Chunk, ReassemblyStats
from tests.pyengine.protocols import REGISTRY, ProtocolSpec, is_other_protocol

log = logging.getLogger(__name__)

PROBE_TRIES = 4  # first bytes judged "not ours" before a flow is declared so
MAX_HELD = 512  # bytes one side holds before its protocol is known
SWEEP_EVERY = 10.0  # seconds of capture time between idle-flow sweeps


class Consumer(Protocol):
    def on_event(self, event: Event) -> None: ...
    def on_flow_end(self, flow: Flow) -> None: ...
    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None: ...


@dataclass
class EngineStats:
    packets: int = 0
    bytes: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    tcp_packets: int = 0
    udp_packets: int = 0
    arp_packets: int = 0
    not_ip: int = 0
    invalid: int = 0
    ip_fragments: int = 0
    other_ip: int = 0
    pdus: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)
    unrecognised_on_ot_port: int = 0


class Engine:
    """Feed it packets with ``packet(...)``; call ``finish()`` at the end."""

    def __init__(self, consumers: Iterable[Consumer], max_flows: int = 200_000) -> None:
        self.consumers = list(consumers)
        self._event_handlers: list[Callable[[Event], None]] = [c.on_event for c in self.consumers]
        self.stats = EngineStats()
        self.reassembly = ReassemblyStats()
        self.flows = FlowTable(self._flow_ended, max_flows=max_flows)
        self._tcp_specs = {p: s for s in REGISTRY for p in s.tcp_ports}
        self._udp_specs = {p: s for s in REGISTRY for p in s.udp_ports}
        self._frame = 0
        self._now = 0.0

    # -- the hot path -------------------------------------------------------------

    def packet(
        self, ts: float, linktype: int, buf: bytes, start: int, caplen: int, wirelen: int
    ) -> None:
        stats = self.stats
        stats.packets += 1
        stats.bytes += wirelen
        self._frame += 1
        if ts > self._now:
            self._now = ts
            if stats.first_ts is None:
                stats.first_ts = ts
            if ts - self.flows.last_sweep > SWEEP_EVERY:
                if self.flows.last_sweep:
                    self.flows.sweep(ts)
                else:
                    self.flows.last_sweep = ts
        res = decode_frame(linktype, buf, start, start + caplen)
        if len(res) == 2:
            self._not_transport(res, ts, buf, start + caplen)  # type: ignore[arg-type]
            return
        smac, dmac, vlan, src, dst, proto, sport, dport, seq, ack, flags, pstart, pend = res
        hit = self.flows.index.get((src, dst, proto, sport, dport))
        if hit is None:
            flow = self.flows.create(src, dst, proto, sport, dport, ts)
            side = 0
        else:
            flow, side = hit
            if proto == TCP and flags & SYN and not flags & ACK and flow.closed:
                self.flows.end(flow)  # port reuse: a new connection
                flow = self.flows.create(src, dst, proto, sport, dport, ts)
                side = 0
        flow.side_packets[side] += 1
        flow.side_bytes[side] += wirelen
        flow.last_ts = ts
        if smac:
            known = flow.macs[side]
            if not known:
                flow.macs[side] = smac
                flow.macs[1 - side] = dmac
                flow.vlan = vlan
            elif known != smac:  # the same address now answers from another MAC
                flow.macs[side] = smac
                flow.context = None
        if proto == TCP:
            stats.tcp_packets += 1
            self._tcp(flow, side, ts, seq, ack, flags, buf, pstart, pend)
        elif proto == UDP:
            stats.udp_packets += 1
            if pend > pstart:
                self._udp(flow, side, ts, buf[pstart:pend])

    def _not_transport(self, res: tuple[int, int], ts: float, buf: bytes, end: int) -> None:
        reason, off = res
        stats = self.stats
        if reason == ARP:
            stats.arp_packets += 1
            arp = decode_arp(buf, off, end)
            if arp:
                for c in self.consumers:
                    c.on_arp(arp[0], arp[1], ts)
        elif reason == 0:
            stats.not_ip += 1
        elif reason == 1:
            stats.invalid += 1
        elif reason == 2:
            stats.ip_fragments += 1
        else:
            stats.other_ip += 1

    def _tcp(
        self, flow: Flow, side: int, ts: float, seq: int, ack: int, flags: int,
        buf: bytes, pstart: int, pend: int,
    ) -> None:  # fmt: skip
        if flags & SYN:
            if not flags & ACK:
                flow.set_client(side, "syn")
            elif flow.client is None:
                flow.set_client(1 - side, "syn-ack")
            if flow.parser is not False:
                flow.ensure_streams(self.reassembly)[side].syn(seq)
        if flags & (FIN | RST):
            flow.closed += 1
        streams = flow.streams
        if flow.parser is False:  # not a protocol we dissect
            return
        if streams is not None and flags & ACK:
            peer = streams[1 - side]
            if peer.pending:
                chunks = peer.ack(ack)
                if chunks:
                    self._deliver(flow, 1 - side, chunks)
            else:
                peer.acked = ack
        if pend > pstart:
            if streams is None:
                streams = flow.ensure_streams(self.reassembly)
            stream = streams[side]
            parser = flow.parser
            if seq == stream.next_seq and parser and not stream.pending:
                # the steady state: the next in-order segment of a dissected stream
                stream.next_seq = (seq + pend - pstart) & 0xFFFFFFFF
                events = parser.feed(buf[pstart:pend], side == flow.client, False)
                if events:
                    self._emit(flow, ts, self._frame, events)
                return
            chunks = stream.add(seq, buf[pstart:pend], (ts, self._frame))
            if chunks:
                self._deliver(flow, side, chunks)

    def _deliver(self, flow: Flow, side: int, chunks: list[Chunk]) -> None:
        parser = flow.parser
        if parser is False:
            return
        for data, gap, tag in chunks:
            if parser is None:
                parser = self._recognise(flow, side, data, gap, tag)
                if parser is False:
                    return
                continue
            events = parser.feed(data, side == flow.client, gap)
            if events:
                self._emit(flow, tag[0], tag[1], events)

    def _recognise(self, flow: Flow, side: int, data: bytes, gap: bool, tag: tuple):
        """Hold a stream's bytes until its protocol can be judged, then dissect all that
        was held in the order it came; None while undecided, False once never."""
        if flow.held is None:
            flow.held = ([bytearray(), bytearray()], [False, False], [])
        bufs, gaps, pieces = flow.held
        if gap:
            bufs[side].clear()
            pieces[:] = [p for p in pieces if p[0] != side]
            gaps[side] = True
        pieces.append((side, len(data), gaps[side] or gap, tag))
        gaps[side] = False
        bufs[side] += data
        verdict, spec, server = self._judge(flow, side, bytes(bufs[side]), TCP)
        if verdict == "yes":
            parser = self._attach(flow, spec, server)
            flow.held = None
            at = [0, 0]
            for s, n, g, (ts, frame) in pieces:
                events = parser.feed(bytes(bufs[s][at[s]:at[s] + n]), s == flow.client, g)
                at[s] += n
                if events:
                    self._emit(flow, ts, frame, events)
            return parser
        if verdict == "more" and len(bufs[side]) < MAX_HELD:
            return None
        flow.probe_tries += 1
        other = is_other_protocol(bytes(bufs[side]))
        bufs[side].clear()
        pieces[:] = [p for p in pieces if p[0] != side]
        gaps[side] = True
        if other or flow.probe_tries >= PROBE_TRIES:
            return self._not_ours(flow, TCP)
        return None

    def _udp(self, flow: Flow, side: int, ts: float, data: bytes) -> None:
        parser = flow.parser
        if parser is False:
            return
        if parser is None:
            flow.probe_tries += 1
            verdict, spec, server = self._judge(flow, side, data, UDP)
            if verdict != "yes":
                if is_other_protocol(data) or flow.probe_tries >= PROBE_TRIES:
                    self._not_ours(flow, UDP)
                return
            parser = self._attach(flow, spec, server)
        events = parser.feed_datagram(data, side == flow.client)
        if events:
            self._emit(flow, ts, self._frame, events)

    def _emit(self, flow: Flow, ts: float, frame: int, events: list[Event]) -> None:
        stats = self.stats
        handlers = self._event_handlers
        for ev in events:
            ev.ts = ts
            ev.frame = frame
            ev.flow = flow
            if type(ev) is Anomaly:
                stats.anomalies[f"{ev.protocol_name}.{ev.kind}"] += 1
            else:
                stats.pdus[ev.protocol] += 1
                ev.meaning = derive(ev)
            for handle in handlers:
                handle(ev)

    # -- protocol recognition -----------------------------------------------------

    def _judge(self, flow: Flow, side: int, data: bytes, proto: int) -> tuple:
        """(verdict, protocol, server side) of the first bytes one side sent."""
        specs = self._tcp_specs if proto == TCP else self._udp_specs
        for s in (1 - side, side):
            spec = specs.get(flow.ports[s])
            if spec is not None:
                return spec.probe(data, False), spec, s
        more = False
        for spec in REGISTRY:
            verdict = spec.probe(data, True)
            if verdict == "yes":
                return "yes", spec, 1 - side if flow.client is None else 1 - flow.client
            more = more or verdict == "more"
        other = len(data) >= 4 and is_other_protocol(data)
        return ("more" if more and not other else "no"), None, None

    def _attach(self, flow: Flow, spec: ProtocolSpec, server_side: int):
        if flow.client is None:
            flow.set_client(1 - server_side, "protocol")
        flow.protocol = spec.name
        flow.parser = spec.parser()
        return flow.parser

    def _not_ours(self, flow: Flow, proto: int) -> bool:
        specs = self._tcp_specs if proto == TCP else self._udp_specs
        if any(p in specs for p in flow.ports):
            self.stats.unrecognised_on_ot_port += 1
        flow.parser = False
        flow.streams = None
        flow.held = None
        return False

    # -- the end ------------------------------------------------------------------

    def _flow_ended(self, flow: Flow) -> None:
        if flow.streams is not None and flow.parser:
            for side in (0, 1):
                chunks = flow.streams[side].flush()
                if chunks:
                    self._deliver(flow, side, chunks)
        if flow.parser:
            events = flow.parser.close()
            if events:
                self._emit(flow, flow.last_ts, self._frame, events)
        for c in self.consumers:
            c.on_flow_end(flow)

    def finish(self) -> None:
        """Flush every open flow; consumers then hold the final state."""
        self.flows.close_all()
        self.stats.last_ts = self._now or None
