"""Turn what an audit saw (assets, edges, their cadence) into a baseline."""

from __future__ import annotations

from collections.abc import Sequence

from otsec.baseline.model import (
    AssetEntry,
    Baseline,
    EdgeEntry,
    ValueEntry,
    edge_key,
    merge_spans,
)
from otsec.graph.edges import Edge
from otsec.inventory.assets import Asset
from otsec.process import Point, number
from otsec.protocols import PORT_NAMES
from otsec.timefmt import iso

MIN_CYCLES = 5  # requests of one function before its period means anything


def learn(assets: list[Asset], ip_edges: list[Edge], sources: list[str],
          points: Sequence[Point] = ()) -> Baseline:
    """``ip_edges`` are the graph's edges keyed by IP (not merged into asset ids);
    ``points``: process values, whose written ranges and writers are learned."""
    base = Baseline(sources=list(sources))
    for p in points:
        if p.writes and p.written_min is not None and p.written_max is not None:
            v = ValueEntry(p.device, p.protocol, p.unit, p.table, p.address,
                           number(p.written_min) or 0, number(p.written_max) or 0,
                           sorted(p.writers), p.writes)
            base.values[v.key] = v
    for a in assets:
        ident = a.identity
        for ip in a.ips:
            base.assets[ip] = AssetEntry(
                macs=list(a.macs) or [],
                role=a.role,
                manufacturer=ident.manufacturer if ident.source != "mac-oui" else None,
                model=ident.model_identifier or ident.model_name,
                firmware=ident.firmware_version,
                first_seen=iso(a.first_seen),
                last_seen=iso(a.last_seen),
            )
    for e in ip_edges:
        if not e.pdus and (e.transport == "udp" or (6, e.port) not in PORT_NAMES):
            continue  # only application conversations otsec understands are learned
        entry = EdgeEntry(e.client, e.server, e.transport, e.port, e.protocol,
                          requests=e.requests)
        for (code, direction), _n in e.functions.items():
            entry.functions.setdefault(direction, []).append(code)
        for direction in entry.functions:
            entry.functions[direction] = sorted(set(entry.functions[direction]))
        entry.units = sorted(e.unit_ids)
        entry.objects = sorted(e.objects)
        entry.ranges = {f"{unit}/{table}": merge_spans([list(s) for s in spans])
                        for (unit, table), spans in e.ranges.items()}
        entry.writes = e.writes > 0
        if e.steady:  # a connection went past its start-up: what only started one is known
            entry.startup_only = sorted(set(entry.functions.get("request", [])) - e.steady)
        span = e.last_seen - e.first_seen
        entry.rate = round(e.requests / span, 4) if span > 0 else 0.0
        periods = [(last - first) / (n - 1) for first, last, n in e.cadence.values()
                   if n >= MIN_CYCLES and last > first]
        entry.period = round(min(periods), 4) if periods else None
        base.edges[edge_key(*e.key)] = entry
    return base
