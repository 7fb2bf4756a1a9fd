"""What a run produced, and its summary.json: shared by audit, the live sensor and the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from otsec import __version__
from otsec.detect.availability import Outage
from otsec.detect.catalog import SEVERITIES, SEVERITY_NAMES
from otsec.graph.edges import Edge
from otsec.inventory.assets import Asset
from otsec.process import Point, ProcessValues
from otsec.sensor import LOCAL, Sensor
from otsec.timefmt import epoch, iso


@dataclass
class AuditResult:
    out_dir: Path
    summary: dict[str, Any]
    alerts: list[dict[str, Any]]
    assets: list[Asset]
    edges: list[Edge]
    warnings: list[str] = field(default_factory=list)
    asset_docs: list[dict[str, Any]] = field(default_factory=list)
    edge_docs: list[dict[str, Any]] = field(default_factory=list)
    incident_docs: list[dict[str, Any]] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)  # process values
    metrics: list[tuple] = field(default_factory=list)  # the operations view's minutes
    sensor: Sensor = LOCAL  # who wrote the documents
    points_telling: int | None = None  # the points written or changed (points may list fewer)

    @cached_property
    def asset_by_id(self) -> dict[str, Asset]:
        return {a.id: a for a in self.assets}


def count_by_severity(docs: list[dict[str, Any]]) -> dict[str, int]:
    """Documents (incidents) per severity, as summary.json counts alerts."""
    out = {"total": len(docs), **{name: 0 for name in SEVERITIES}}
    for d in docs:
        out[SEVERITY_NAMES[d["event"]["severity"]]] += 1
    return out


TCP_HEALTH = ("connections", "retransmissions", "resets", "zero_windows")


def metric_row(doc: dict[str, Any]) -> tuple:
    """A metrics.ndjson document as the core's row (see ``operations``)."""
    m = doc["otsec"]["metrics"]
    times, cycle, tcp = m.get("response_time_ms", {}), m.get("cycle_ms", {}), m.get("tcp", {})
    ms = [None if v is None else v / 1000 for v in (times.get("p50"), times.get("p95"),
                                                     times.get("max"), cycle.get("period"),
                                                     cycle.get("jitter"))]
    edge = (doc["source"]["ip"], doc["destination"]["ip"], doc["network"]["transport"],
            doc["destination"]["port"], doc["network"]["protocol"])
    counts = (m["requests"], m["responses"], m["exceptions"], m["unanswered"])
    return (edge, epoch(doc["event"]["start"]), counts, tuple(ms[:3]), tuple(ms[3:]),
            tuple(tcp.get(k, 0) for k in TCP_HEALTH))


def operations(rows: Sequence[tuple], outages: Sequence[Outage] = (),
               values: ProcessValues | None = None, slowest: int = 5) -> dict[str, Any]:
    """The few numbers an engineer wants first: requests, answers, what went unanswered,
    the edges whose answers were slowest (their worst minute's p95) and whose polling
    jittered most, the TCP health of their connections, the devices that stopped
    answering, and the points written. ``rows``
    are the core's minutes of the operations view (see metrics.ndjson)."""
    totals = [0, 0, 0, 0]
    tcp = [0, 0, 0, 0]
    worst: dict[tuple, float] = {}
    cycles: dict[tuple, list[float]] = {}  # edge -> [sum of periods, worst jitter, minutes]
    for edge, _start, counts, (_p50, p95, _max), (period, jitter), health in rows:
        for i, n in enumerate(counts):
            totals[i] += n
        for i, n in enumerate(health):
            tcp[i] += n
        if p95 is not None and p95 > worst.get(edge, -1.0):
            worst[edge] = p95
        if period is not None:
            c = cycles.setdefault(edge, [0.0, 0.0, 0])
            c[0], c[1], c[2] = c[0] + period, max(c[1], jitter), c[2] + 1
    ranked = sorted(worst.items(), key=lambda kv: -kv[1])[:slowest]
    jittery = sorted(cycles.items(), key=lambda kv: -kv[1][1])[:slowest]
    return {
        "requests": totals[0], "responses": totals[1], "exceptions": totals[2],
        "unanswered": totals[3],
        "tcp": dict(zip(TCP_HEALTH, tcp, strict=True)),
        "slowest": [{"client": c, "server": s, "port": p, "protocol": proto,
                     "p95_ms": round(v * 1000, 3)}
                    for (c, s, _t, p, proto), v in ranked],
        "polling": [{"client": c, "server": s, "port": p, "protocol": proto,
                     "period_ms": round(sum_ / n * 1000, 3), "jitter_ms": round(j * 1000, 3)}
                    for (c, s, _t, p, proto), (sum_, j, n) in jittery],
        "outages": [o.to_json() for o in outages],
        "devices_down": len({(o.device, o.protocol) for o in outages if o.back is None}),
        "points": (values or ProcessValues()).counts(),
    }


def build_summary(stats: dict[str, Any], files: list[str], elapsed: float,
                  severities: list[str], assets: list[Asset], edges: list[Edge],
                  warnings: list[str]) -> dict[str, Any]:
    """summary.json from the core's counters (``stats``) and what the policy made."""
    by_sev = {name: 0 for name in SEVERITIES}
    for s in severities:
        by_sev[s] += 1
    first, last = stats["first_ts"], stats["last_ts"]
    duration = (last - first) if first and last else 0.0
    roles: dict[str, int] = {}
    for a in assets:
        roles[a.role] = roles.get(a.role, 0) + 1
    flows = stats["flows"]
    packets = stats["packets"]
    return {
        "otsec_version": __version__,
        "files": files,
        "packets": packets,
        "bytes": stats["bytes"],
        "flows": flows["created"],
        "duration": round(duration, 6),
        "capture": {"start": iso(first) if first else None, "end": iso(last) if last else None},
        "processing_seconds": round(elapsed, 3),
        "packets_per_second": round(packets / elapsed) if elapsed > 0 else 0,
        "pdus": dict(sorted(stats["pdus"].items())),
        "events": stats["events_written"],
        "records_to_policy": stats["crossed"],
        "anomalies": dict(sorted(stats["anomalies"].items())),
        "pdu_anomalies": dict(sorted(stats.get("pdu_anomalies", {}).items())),
        "alerts": {"total": len(severities), **by_sev},
        "assets": {"total": len(assets), "by_role": dict(sorted(roles.items()))},
        "edges": len(edges),
        "decode": {
            "tcp_packets": stats["tcp_packets"],
            "udp_packets": stats["udp_packets"],
            "arp_packets": stats["arp_packets"],
            "not_ip": stats["not_ip"],
            "invalid": stats["invalid"],
            "ip_fragments": stats["ip_fragments"],
            "other_ip_protocols": stats["other_ip"],
            "unrecognised_on_ot_port": stats["unrecognised_on_ot_port"],
            "unknown_link_type": stats["unknown_linktype"],
        },
        "reassembly": dict(stats["reassembly"]),
        "defrag": dict(stats.get("defrag", {})),
        "flow_table": {"peak": flows["peak"], "expired": flows["expired"],
                       "evicted_when_full": flows["evicted_when_full"]},
        "tracking": dict(stats.get("tracking", {})),
        "warnings": warnings,
    }
