"""The asset inventory: every host seen, what it serves and uses, and who it is.

Assets are collected per IP address while packets flow; at output time IPs that share
a MAC address the capture shows they own are merged into one asset identified by that
MAC (a router's MAC, seen in front of many IPs, is not an identity).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from otsec.capture.linktypes import format_mac
from otsec.events import Event
from otsec.inventory.evidence import observe
from otsec.inventory.oui import mac_vendor
from otsec.inventory.roles import guess_role
from otsec.net.flows import Flow, ip_text
from otsec.protocols import PORT_NAMES, WELL_KNOWN


@dataclass
class Identity:
    manufacturer: str | None = None
    model_name: str | None = None
    model_identifier: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    name: str | None = None
    source: str | None = None


@dataclass
class HostRecord:
    """What one IP address did during the capture."""

    ip: str
    first_seen: float
    last_seen: float
    packets: int = 0
    bytes: int = 0
    macs: Counter[str] = field(default_factory=Counter)
    services: set[tuple[str, int, str]] = field(default_factory=set)
    uses: set[tuple[str, int, str]] = field(default_factory=set)
    peers: set[str] = field(default_factory=set)
    protocols: set[str] = field(default_factory=set)
    vlans: set[int] = field(default_factory=set)
    evidence: Counter[str] = field(default_factory=Counter)
    identity: Identity = field(default_factory=Identity)
    dnp3_addresses: set[int] = field(default_factory=set)


@dataclass
class Asset:
    """The merged view written to assets.json (one or more IPs behind one identity)."""

    id: str
    ips: list[str]
    macs: list[str]
    first_seen: float
    last_seen: float
    packets: int
    bytes: int
    services: list[tuple[str, int, str]]
    protocols: list[str]
    peers: set[str]
    vlans: list[int]
    role: str
    role_evidence: list[str]
    identity: Identity
    mac_vendor: str | None = None
    dnp3_addresses: list[int] = field(default_factory=list)


def protocol_name(flow: Flow, server: int) -> str:
    """The dissected protocol, else the name of the server port (a connection without data)."""
    if flow.protocol:
        return flow.protocol
    key = (flow.proto, flow.ports[server])
    return WELL_KNOWN.get(key) or PORT_NAMES.get(key, "unknown")


class Inventory:
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
        if obs.client:
            host = self.hosts.get(client_ip) or self._host(client_ip, event.ts)
            host.evidence[obs.client] += 1
        if obs.server or obs.identity:
            host = self.hosts.get(server_ip) or self._host(server_ip, event.ts)
            if obs.server:
                host.evidence[obs.server] += 1
            if obs.identity:
                _merge_identity(host, obs.identity, obs.source)

    def role_of(self, ip: str) -> str | None:
        """The role the evidence so far suggests for one address (for rules, on demand)."""
        host = self.hosts.get(ip)
        if host is None:
            return None
        return guess_role(host.evidence, host.services, host.uses,
                          host.last_seen - host.first_seen)[0]

    # -- the merged view ----------------------------------------------------------

    def owned_macs(self) -> dict[str, str]:
        """ip -> the MAC it owns: the one ARP claims, or its only MAC when no other IPv4
        address travels behind that MAC (a gateway's MAC fronts many)."""
        mac_ips: dict[str, set[str]] = {}
        for host in self.hosts.values():
            if ":" not in host.ip:
                for mac in host.macs:
                    if not usable_mac(mac):
                        continue
                    mac_ips.setdefault(mac, set()).add(host.ip)
        owned: dict[str, str] = {}
        for host in self.hosts.values():
            claimed = self.arp.get(host.ip)
            if claimed and len(claimed) == 1:
                owned[host.ip] = next(iter(claimed))
            elif len(host.macs) == 1 and usable_mac(next(iter(host.macs))):
                mac = next(iter(host.macs))
                v4 = mac_ips.get(mac, set())
                if len(v4) <= 1 and (":" in host.ip or v4 == {host.ip}):
                    owned[host.ip] = mac
        return owned

    def assets(self) -> tuple[list[Asset], dict[str, str]]:
        """The merged assets and the map from IP to asset id."""
        owned = self.owned_macs()
        groups: dict[str, list[HostRecord]] = {}
        for host in self.hosts.values():
            groups.setdefault(owned.get(host.ip, host.ip), []).append(host)
        id_of = {h.ip: aid for aid, hs in groups.items() for h in hs}
        out: list[Asset] = []
        for aid, hosts in sorted(groups.items()):
            evidence: Counter[str] = Counter()
            services: set[tuple[str, int, str]] = set()
            uses: set[tuple[str, int, str]] = set()
            protocols: set[str] = set()
            peers: set[str] = set()
            identity = Identity()
            for h in hosts:
                evidence.update(h.evidence)
                services |= h.services
                uses |= h.uses
                protocols |= h.protocols
                peers |= {id_of.get(p, p) for p in h.peers}
                for name in vars(identity):
                    if getattr(identity, name) is None:
                        setattr(identity, name, getattr(h.identity, name))
            first = min(h.first_seen for h in hosts)
            last = max(h.last_seen for h in hosts)
            role, role_evidence = guess_role(evidence, services, uses, last - first)
            macs = [aid] if aid in owned.values() else []
            vendor = mac_vendor(macs[0]) if macs else None
            if identity.manufacturer is None and vendor:
                identity.manufacturer = vendor
                identity.source = identity.source or "mac-oui"
            out.append(
                Asset(
                    id=aid,
                    ips=sorted(h.ip for h in hosts),
                    macs=macs,
                    first_seen=first,
                    last_seen=last,
                    packets=sum(h.packets for h in hosts),
                    bytes=sum(h.bytes for h in hosts),
                    services=sorted(services),
                    protocols=sorted(protocols),
                    peers=peers - {aid},
                    vlans=sorted({v for h in hosts for v in h.vlans}),
                    role=role,
                    role_evidence=role_evidence,
                    identity=identity,
                    mac_vendor=vendor,
                    dnp3_addresses=sorted({a for h in hosts for a in h.dnp3_addresses}),
                )
            )
        return out, id_of


def usable_mac(mac: str) -> bool:
    """A MAC that can identify a host: not all-zero (loopback), not group-addressed."""
    return mac != "00-00-00-00-00-00" and not int(mac[:2], 16) & 1


def _merge_identity(host: HostRecord, found: dict[str, str], source: str) -> None:
    ident = host.identity
    address = found.get("dnp3_address")
    if address is not None:
        host.dnp3_addresses.add(int(address))
        return
    weak = source == "modbus-fc17"  # a vendor-specific id never replaces a product code
    for name, value in found.items():
        if weak and getattr(ident, name):
            continue
        if getattr(ident, name) != value:
            setattr(ident, name, value)
            ident.source = source
