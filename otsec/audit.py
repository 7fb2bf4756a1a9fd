"""Offline audit: run captures through the engine and write the contract's files."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otsec import __version__
from otsec.atomic import write_json_atomic
from otsec.baseline.learn import learn
from otsec.baseline.model import Baseline
from otsec.capture.files import CaptureError, CaptureReader
from otsec.detect import Alert, Detector
from otsec.detect.catalog import SEVERITIES
from otsec.detect.deviations import Deviations
from otsec.detect.ruleset import RuleSet
from otsec.engine import Engine
from otsec.graph.edges import Edge, Graph, merged_edges
from otsec.inventory.assets import Asset, Inventory
from otsec.report.html import write_report
from otsec.sinks.documents import alert_document, asset_document, edge_document
from otsec.sinks.files import EventFiles, write_ndjson
from otsec.timefmt import iso

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with bytes of input consumed so far


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


def open_captures(paths: Sequence[str | Path]) -> list[CaptureReader]:
    """Open every input first, so a bad path fails before any work is done."""
    readers: list[CaptureReader] = []
    try:
        for p in paths:
            path = Path(p)
            if path.is_dir():
                raise CaptureError(f"{path}: is a directory, not a capture file")
            readers.append(CaptureReader(path))
    except CaptureError:
        for r in readers:
            r.close()
        raise
    return readers


def _run(readers: list[CaptureReader], engine: Engine, progress: Progress | None) -> list[str]:
    """Feed every packet of every capture to the engine; return the readers' warnings."""
    consumed = 0
    warnings: list[str] = []
    packet = engine.packet
    for reader in readers:
        with reader:
            for n, pkt in enumerate(reader, start=1):
                packet(*pkt)
                if progress is not None and not n & 0x3FFF:
                    progress(consumed + reader.position())
            consumed += reader.size
            warnings.extend(reader.warnings)
            if progress is not None:
                progress(consumed)
    engine.finish()
    return warnings


def run_learn(paths: Sequence[str | Path], progress: Progress | None = None,
              max_flows: int = 200_000) -> Baseline:
    """Learn a baseline from captures known to be normal."""
    readers = open_captures(paths)
    inventory = Inventory()
    graph = Graph()
    engine = Engine([inventory, graph], max_flows=max_flows)
    try:
        _run(readers, engine, progress)
    finally:
        for r in readers:
            r.close()
    assets, _ = inventory.assets()
    return learn(assets, list(graph.edges.values()), [str(p) for p in paths])


def run_audit(
    paths: Sequence[str | Path],
    out_dir: Path,
    progress: Progress | None = None,
    max_flows: int = 200_000,
    write_events: bool = True,
    baseline: Baseline | None = None,
    learn_for: float | None = None,
    ruleset: RuleSet | None = None,
) -> AuditResult:
    """Audit captures. With a baseline (or a learning window) deviations are reported once
    protecting starts; the baseline as it stands after learning goes to baseline.json."""
    readers = open_captures(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = EventFiles(out_dir, pdus=write_events)
    inventory = Inventory()
    graph = Graph()
    detector = Detector(ruleset)
    detector.roles = inventory.role_of
    consumers: list[Any] = [files, inventory, graph, detector]
    deviations = None
    if baseline is not None or learn_for is not None:
        base = baseline if baseline is not None else Baseline()

        def learned_so_far() -> None:  # the learning window closes: fold it in
            assets, _ = inventory.assets()
            base.merge(learn(assets, list(graph.edges.values()), [str(p) for p in paths]))

        deviations = Deviations(base, detector.add, detector.catalog, learn_for=learn_for or 0.0,
                                on_protect=learned_so_far if learn_for else None)
        detector.protect_with(base, deviations)
        consumers.append(deviations)
    engine = Engine(consumers, max_flows=max_flows)
    started = time.perf_counter()
    try:
        warnings = _run(readers, engine, progress)
    finally:
        files.close()
        for r in readers:
            r.close()
    elapsed = time.perf_counter() - started
    assets, id_of = inventory.assets()
    if deviations is not None:
        deviations.finish(engine.stats.last_ts or 0.0, assets)
        deviations.baseline.save(out_dir / "baseline.json")
    edges = merged_edges(graph.edges, id_of)
    asset_by_ip = {ip: a for a in assets for ip in a.ips}
    ip_of = {a.id: a.ips[0] for a in assets if a.ips}
    alerts = sorted(detector.alerts, key=lambda a: (a.start, a.rule.id))

    def state(alert: Alert) -> str:
        return "protecting" if deviations and deviations.protecting(alert.start) else "learning"

    alert_docs = [alert_document(a, asset_by_ip, state(a)) for a in alerts]
    write_ndjson(out_dir / "alerts.ndjson", alert_docs)
    asset_docs = [asset_document(a) for a in assets]
    edge_docs = [edge_document(e, ip_of) for e in edges]
    write_json_atomic(out_dir / "assets.json", asset_docs)
    write_json_atomic(out_dir / "edges.json", edge_docs)
    summary = build_summary(engine, [str(p) for p in paths], elapsed, alerts, assets, edges,
                            warnings, files.events.count)
    summary["suppressed"] = detector.suppressed
    summary["baseline"] = {
        "mode": "protecting" if deviations else "learning",
        "learn_for": learn_for,
        "assets": len(deviations.baseline.assets) if deviations else 0,
        "edges": len(deviations.baseline.edges) if deviations else 0,
    }
    write_json_atomic(out_dir / "summary.json", summary)
    result = AuditResult(out_dir, summary, alert_docs, assets, edges, warnings, asset_docs,
                         edge_docs)
    write_report(out_dir / "report.html", result)
    return result


def build_summary(
    engine: Any,
    files: list[str],
    elapsed: float,
    alerts: list[Alert] | list[str],
    assets: list[Asset],
    edges: list[Edge],
    warnings: list[str],
    events_written: int,
) -> dict[str, Any]:
    """``engine`` needs ``stats``, ``reassembly`` and ``flows.stats``; ``alerts`` may be given
    as their severity names."""
    st = engine.stats
    by_sev = {name: 0 for name in SEVERITIES}
    for a in alerts:
        by_sev[a if isinstance(a, str) else a.rule.severity] += 1
    duration = (st.last_ts - st.first_ts) if st.first_ts and st.last_ts else 0.0
    roles: dict[str, int] = {}
    for a in assets:
        roles[a.role] = roles.get(a.role, 0) + 1
    ra = engine.reassembly
    fs = engine.flows.stats
    return {
        "otsec_version": __version__,
        "files": files,
        "packets": st.packets,
        "bytes": st.bytes,
        "flows": fs.created,
        "duration": round(duration, 6),
        "capture": {
            "start": iso(st.first_ts) if st.first_ts else None,
            "end": iso(st.last_ts) if st.last_ts else None,
        },
        "processing_seconds": round(elapsed, 3),
        "packets_per_second": round(st.packets / elapsed) if elapsed > 0 else 0,
        "pdus": dict(sorted(st.pdus.items())),
        "events": events_written,
        "anomalies": dict(sorted(st.anomalies.items())),
        "alerts": {"total": len(alerts), **by_sev},
        "assets": {"total": len(assets), "by_role": dict(sorted(roles.items()))},
        "edges": len(edges),
        "decode": {
            "tcp_packets": st.tcp_packets,
            "udp_packets": st.udp_packets,
            "arp_packets": st.arp_packets,
            "not_ip": st.not_ip,
            "invalid": st.invalid,
            "ip_fragments_skipped": st.ip_fragments,
            "other_ip_protocols": st.other_ip,
            "unrecognised_on_ot_port": st.unrecognised_on_ot_port,
        },
        "reassembly": {
            "gaps": ra.gaps,
            "skipped_bytes": ra.skipped_bytes,
            "retransmitted_bytes": ra.retransmitted_bytes,
            "out_of_order_segments": ra.out_of_order_segments,
        },
        "flow_table": {
            "peak": fs.peak,
            "expired": fs.expired,
            "evicted_when_full": fs.evicted_full,
        },
        "warnings": warnings,
    }
