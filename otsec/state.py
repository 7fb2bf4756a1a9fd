"""The sensor's memory across restarts: hosts and edges as plain, versioned JSON."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from otsec.atomic import write_json_atomic
from otsec.graph.edges import Edge
from otsec.inventory.assets import HostRecord, Identity

VERSION = 1


def host_json(h: HostRecord) -> dict[str, Any]:
    return {"ip": h.ip, "first_seen": h.first_seen, "last_seen": h.last_seen,
            "packets": h.packets, "bytes": h.bytes, "macs": dict(h.macs),
            "services": sorted(map(list, h.services)), "uses": sorted(map(list, h.uses)),
            "peers": sorted(h.peers), "protocols": sorted(h.protocols), "vlans": sorted(h.vlans),
            "evidence": dict(h.evidence), "identity": vars(h.identity).copy(),
            "dnp3_addresses": sorted(h.dnp3_addresses)}


def host_from(d: dict[str, Any]) -> HostRecord:
    return HostRecord(ip=d["ip"], first_seen=d["first_seen"], last_seen=d["last_seen"],
                      packets=d["packets"], bytes=d["bytes"], macs=Counter(d["macs"]),
                      services={tuple(s) for s in d["services"]},
                      uses={tuple(s) for s in d["uses"]}, peers=set(d["peers"]),
                      protocols=set(d["protocols"]), vlans=set(d["vlans"]),
                      evidence=Counter(d["evidence"]), identity=Identity(**d["identity"]),
                      dnp3_addresses=set(d["dnp3_addresses"]))


def edge_json(e: Edge) -> dict[str, Any]:
    return {"key": list(e.key), "first_seen": e.first_seen, "last_seen": e.last_seen,
            "packets": e.packets, "bytes": e.bytes, "pdus": e.pdus, "writes": e.writes,
            "requests": e.requests,
            "functions": sorted([c, d, n] for (c, d), n in e.functions.items()),
            "names": sorted([c, n] for c, n in e.names.items()),
            "unit_ids": sorted(e.unit_ids), "objects": sorted(e.objects),
            "ranges": sorted([u, t, spans] for (u, t), spans in e.ranges.items()),
            "cadence": sorted([c, *v] for c, v in e.cadence.items())}


def edge_from(d: dict[str, Any]) -> Edge:
    e = Edge(*d["key"], first_seen=d["first_seen"], last_seen=d["last_seen"])
    e.packets, e.bytes, e.pdus = d["packets"], d["bytes"], d["pdus"]
    e.writes, e.requests = d["writes"], d["requests"]
    e.functions = Counter({(c, direction): n for c, direction, n in d["functions"]})
    e.names = {c: n for c, n in d["names"]}
    e.unit_ids, e.objects = set(d["unit_ids"]), set(d["objects"])
    e.ranges = {(u, t): spans for u, t, spans in d["ranges"]}
    e.cadence = {c: [f, last, n] for c, f, last, n in d["cadence"]}
    return e


def save(path: Path, hosts: dict[str, HostRecord], arp: dict[str, set[str]],
         edges: dict[Any, Edge]) -> None:
    write_json_atomic(path, {"version": VERSION,
                             "hosts": [host_json(h) for _ip, h in sorted(hosts.items())],
                             "arp": {ip: sorted(m) for ip, m in sorted(arp.items())},
                             "edges": [edge_json(e) for e in sorted(edges.values(),
                                                                    key=lambda x: x.key)]})


def load(path: Path) -> tuple[dict[str, HostRecord], dict[str, set[str]], dict[Any, Edge]]:
    """What a previous run knew, or nothing when the file is missing or from elsewhere."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, {}, {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return {}, {}, {}
    hosts = {h["ip"]: host_from(h) for h in data.get("hosts", [])}
    edges = {tuple(e["key"]): edge_from(e) for e in data.get("edges", [])}
    return hosts, {ip: set(m) for ip, m in data.get("arp", {}).items()}, edges
