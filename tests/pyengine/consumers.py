"""The former Python consumers that counted hosts and edges from every PDU (the core
counts them now): kept to show the core's aggregates are the same."""

from __future__ import annotations

from otsec.baseline.model import STARTUP
from otsec.events import Anomaly, Event
from otsec.graph.edges import Edge, EdgeKey
from otsec.graph.functions import describe
from otsec.inventory.assets import HostRecord, merge_identity
from otsec.protocols import PORT_NAMES, WELL_KNOWN
from otsec.protocols.s7comm import S7Pdu, S7PlusPdu
from tests.pyengine.evidence import observe
from tests.pyengine.linktypes import format_mac
from tests.pyengine.net.flows import Flow, ip_text


def protocol_name(flow: Flow, server: int) -> str:
    """The dissected protocol, else the name of the server port (a connection without data)."""
    if flow.protocol:
        return flow.protocol
    key = (flow.proto, flow.ports[server])
    return WELL_KNOWN.get(key) or PORT_NAMES.get(key, "unknown")


class OldInventory:
    """Engine consumer building host records; ``assets()`` gives the merged view."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostRecord] = {}
        self.arp: dict[str, set[str]] = {}  # ip -> macs claimed in ARP

    def _host(self, ip: str, ts: float) -> HostRecord:
        host = self.hosts.get(ip)
        if host is None:
            host = self.hosts[ip] = HostRecord(ip=ip, first_seen=ts, last_seen=ts)
        return host

    # -- consumer interface -------------------------------------------------------

    def on_flow_end(self, flow: Flow) -> None:
        ips = flow.ip_texts
        client = flow.client_side
        server = 1 - client
        proto = protocol_name(flow, server)
        service = (flow.transport, flow.ports[server], proto)
        answered = flow.side_packets[server] > 0
        for side in (0, 1):
            host = self._host(ips[side], flow.first_ts)
            host.first_seen = min(host.first_seen, flow.first_ts)
            host.last_seen = max(host.last_seen, flow.last_ts)
            host.packets += flow.packets
            host.bytes += flow.bytes
            host.peers.add(ips[1 - side])
            if flow.macs[side]:
                host.macs[format_mac(flow.macs[side])] += flow.side_packets[side]
            if flow.vlan >= 0:
                host.vlans.add(flow.vlan)
            if proto != "unknown" and answered:
                host.protocols.add(proto)
        if answered and (flow.client is not None or flow.protocol):
            self.hosts[ips[server]].services.add(service)
            self.hosts[ips[client]].uses.add(service)

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        if ip == b"\x00\x00\x00\x00":
            return
        text = ip_text(ip)
        self.arp.setdefault(text, set()).add(format_mac(mac))
        host = self._host(text, ts)
        host.last_seen = max(host.last_seen, ts)
        host.first_seen = min(host.first_seen, ts)

    def on_event(self, event: Event) -> None:
        obs = observe(event)
        if obs is None:
            return
        flow = event.flow
        ips = flow.ip_texts
        sender = flow.sender(event.from_client)
        if event.direction == "request":  # protocol roles, not TCP roles: an outstation
            client_ip, server_ip = ips[sender], ips[1 - sender]  # may be the one that dials
        else:
            client_ip, server_ip = ips[1 - sender], ips[sender]
        if isinstance(event, S7Pdu | S7PlusPdu) and flow.client is not None:
            side = sender if event.direction == "request" else 1 - sender  # the requester
            obs.server = None if 1 - side == flow.client else obs.server  # S7 roles follow
            obs.client = None if side != flow.client else obs.client  # the connection
        if obs.client:
            host = self.hosts.get(client_ip) or self._host(client_ip, event.ts)
            host.evidence[obs.client] += 1
        if obs.server or obs.identity:
            host = self.hosts.get(server_ip) or self._host(server_ip, event.ts)
            if obs.server:
                host.evidence[obs.server] += 1
            if obs.identity:
                _merge_identity(host, obs.identity, obs.source)


def _merge_identity(host: HostRecord, found: dict[str, str], source: str) -> None:
    address = found.get("dnp3_address")
    if address is not None:
        host.dnp3_addresses.add(int(address))
        return
    merge_identity(host.identity, found, source)


class OldGraph:
    """Engine consumer collecting edges keyed by IP addresses."""

    def __init__(self) -> None:
        self.edges: dict[EdgeKey, Edge] = {}
        self._by_flow: dict[int, Edge] = {}
        self._requests: dict[int, int] = {}

    def _edge(self, flow: Flow, protocol: str | None = None) -> Edge:
        edge = self._by_flow.get(id(flow))
        if edge is not None and (protocol is None or edge.protocol == protocol):
            return edge
        client = flow.client_side
        server = 1 - client
        ips = flow.ip_texts
        key = (ips[client], ips[server], flow.transport, flow.ports[server],
               protocol or protocol_name(flow, server))
        edge = self.edges.get(key)
        if edge is None:
            edge = self.edges[key] = Edge(*key, first_seen=flow.first_ts, last_seen=flow.last_ts)
        self._by_flow[id(flow)] = edge
        return edge

    def on_event(self, event: Event) -> None:
        earlier = None  # requests before this one on its connection (as the core counts)
        if event.direction == "request" and not isinstance(event, Anomaly):
            earlier = self._requests.get(id(event.flow), 0)
            self._requests[id(event.flow)] = earlier + 1
        use = describe(event)
        if use is None:
            return
        edge = self._edge(event.flow, event.protocol)
        if earlier is not None and earlier >= STARTUP:
            edge.steady.add(use.code)
        edge.pdus += 1
        edge.functions[(use.code, event.direction)] += 1
        edge.names.setdefault(use.code, use.name)
        if use.unit is not None:
            edge.unit_ids.add(use.unit)
        if event.direction == "request":
            edge.requests += 1
            c = edge.cadence.get(use.code)
            if c is None:
                edge.cadence[use.code] = [event.ts, event.ts, 1]
            else:
                c[1] = event.ts
                c[2] += 1
        if use.groups:
            edge.objects.update(use.groups)
        if use.writes:
            edge.writes += 1
        for table, start, count in use.ranges:
            edge.touch(use.unit or 0, table, start, count)

    def on_flow_end(self, flow: Flow) -> None:
        if flow.side_packets[flow.client_side ^ 1] == 0 and not flow.protocol:
            self._by_flow.pop(id(flow), None)
            return  # never answered: a scan probe, not a communication path
        edge = self._edge(flow)
        self._by_flow.pop(id(flow), None)
        edge.packets += flow.packets
        edge.bytes += flow.bytes
        edge.first_seen = min(edge.first_seen, flow.first_ts)
        edge.last_seen = max(edge.last_seen, flow.last_ts)

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        pass


