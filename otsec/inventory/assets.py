"""The asset inventory: every host seen, what it serves and uses, and who it is.

The compiled core counts hosts per IP address (MACs, services, peers, behaviour
evidence); this module adds who they are (identity records that cross from the core) and,
at output time, merges IPs that share a MAC address the capture shows they own into one
asset identified by that MAC (a router's MAC, seen in front of many IPs, is not one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from otsec.events import Event
from otsec.inventory.oui import mac_vendor
from otsec.inventory.roles import guess_role
from otsec.protocols import RECORDS


@dataclass
class Identity:
    manufacturer: str | None = None
    model_name: str | None = None
    model_identifier: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    name: str | None = None
    source: str | None = None


#: event type -> what its records tell of a device's identity
IDENTITY = {r.event: r.identity for r in RECORDS.values() if r.identity is not None}


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
    flags: list[str] = field(default_factory=list)  # what its incidents say it did


class Inventory:
    """Hosts as the core counted them, plus the identities the policy has read."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostRecord] = {}
        self.arp: dict[str, set[str]] = {}  # ip -> macs claimed in ARP
        self.identities: dict[str, Identity] = {}
        self.scanners: set[str] = set()  # IPs reported scanning the network

    def load(self, hosts: dict[str, HostRecord], arp: dict[str, list[str]]) -> None:
        """Take the core's hosts and ARP claims (a snapshot), with the identities known."""
        for ip, ident in self.identities.items():
            host = hosts.get(ip)
            if host is not None:
                host.identity = ident
        self.hosts = hosts
        self.arp = {ip: set(macs) for ip, macs in arp.items()}

    def on_event(self, event: Event) -> None:
        """Identity from a record that crossed (FC 43/17 answers, SZL lists: each protocol
        module says what its records tell)."""
        read = IDENTITY.get(type(event))
        found = read(event) if read is not None else None
        if not found:
            return
        told, source = found
        flow = event.flow
        ips = flow.ip_texts
        sender = flow.sender(event.from_client)
        server_ip = ips[sender] if event.direction == "response" else ips[1 - sender]
        ident = self.identities.get(server_ip)
        if ident is None:
            ident = self.identities[server_ip] = Identity()
        merge_identity(ident, told, source)
        host = self.hosts.get(server_ip)
        if host is not None:
            host.identity = ident

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
        owner_macs = set(owned.values())
        groups: dict[str, list[HostRecord]] = {}
        for host in self.hosts.values():
            groups.setdefault(owned.get(host.ip, host.ip), []).append(host)
        id_of = {h.ip: aid for aid, hs in groups.items() for h in hs}
        out: list[Asset] = []
        for aid, hosts in sorted(groups.items()):
            if len(hosts) == 1:  # most assets: nothing to merge
                h = hosts[0]
                evidence, services, uses, protocols = h.evidence, h.services, h.uses, h.protocols
                peers = set(map(id_of.get, h.peers, h.peers))
                identity = h.identity  # copied below only if it changes
                first, last, ips = h.first_seen, h.last_seen, [h.ip]
                packets, nbytes, vlans, dnp3 = h.packets, h.bytes, h.vlans, h.dnp3_addresses
            else:
                evidence = Counter()
                services, uses, protocols, peers = set(), set(), set(), set()
                identity = Identity()
                for h in hosts:
                    evidence.update(h.evidence)
                    services |= h.services
                    uses |= h.uses
                    protocols |= h.protocols
                    peers.update(map(id_of.get, h.peers, h.peers))
                    for name in vars(identity):
                        if getattr(identity, name) is None:
                            setattr(identity, name, getattr(h.identity, name))
                first = min(h.first_seen for h in hosts)
                last = max(h.last_seen for h in hosts)
                ips = sorted(h.ip for h in hosts)
                packets = sum(h.packets for h in hosts)
                nbytes = sum(h.bytes for h in hosts)
                vlans = {v for h in hosts for v in h.vlans}
                dnp3 = {a for h in hosts for a in h.dnp3_addresses}
            role, role_evidence = guess_role(evidence, services, uses, last - first)
            if role == "hmi" and self.scanners.intersection(ips) and not any(
                    k.endswith(("-read", "-write")) for k in evidence):
                # connected to OT ports while scanning, never asked anything: not an HMI
                role, role_evidence = "unknown", ["scanned the network (connections to many "
                                                  "address and port pairs, no requests)"]
            macs = [aid] if aid in owner_macs else []
            vendor = mac_vendor(macs[0]) if macs else None
            if identity.manufacturer is None and vendor:
                identity = replace(identity, manufacturer=vendor,
                                   source=identity.source or "mac-oui")
            out.append(
                Asset(
                    id=aid,
                    ips=ips,
                    macs=macs,
                    first_seen=first,
                    last_seen=last,
                    packets=packets,
                    bytes=nbytes,
                    services=sorted(services),
                    protocols=sorted(protocols),
                    peers=peers - {aid},
                    vlans=sorted(vlans),
                    role=role,
                    role_evidence=role_evidence,
                    identity=identity,
                    mac_vendor=vendor,
                    dnp3_addresses=sorted(dnp3),
                )
            )
        return out, id_of


def usable_mac(mac: str) -> bool:
    """A MAC that can identify a host: not all-zero (loopback), not group-addressed."""
    return mac != "00-00-00-00-00-00" and not int(mac[:2], 16) & 1


def merge_identity(ident: Identity, found: dict[str, str], source: str) -> None:
    weak = source == "modbus-fc17"  # a vendor-specific id never replaces a product code
    for name, value in found.items():
        if weak and getattr(ident, name):
            continue
        if getattr(ident, name) != value:
            setattr(ident, name, value)
            ident.source = source
