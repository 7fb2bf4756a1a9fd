"""Offline audit: run captures through the pipeline and write the contract's files."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from otsec import _core
from otsec.atomic import write_json
from otsec.baseline.learn import learn
from otsec.baseline.model import Baseline
from otsec.capture import NothingAnalysed
from otsec.detect.deviations import baseline_state
from otsec.detect.incidents import incidents
from otsec.detect.ruleset import RuleSet
from otsec.inventory.roles import flag_actors
from otsec.pipeline import Pipeline, Progress, gc_paused
from otsec.report.html import write_report
from otsec.sensor import LOCAL, Sensor
from otsec.sinks.documents import (
    alert_document,
    asset_document,
    edge_document,
    incident_document,
)
from otsec.sinks.ndjson import write_ndjson
from otsec.summary import AuditResult, build_summary, count_by_severity, operations

log = logging.getLogger(__name__)

#: every file an audit may write into --out
OUTPUTS = frozenset({"events.ndjson", "anomalies.ndjson", "alerts.ndjson",
                     "incidents.ndjson", "metrics.ndjson", "assets.json", "edges.json",
                     "summary.json", "report.html", "baseline.json"})

__all__ = ["AuditResult", "NothingAnalysed", "check_captures", "run_audit", "run_learn"]


def check_captures(paths: Sequence[str | Path]) -> None:
    """Open every input first, so a bad path fails before any work is done (streams are
    left alone: their first bytes belong to the run)."""
    for p in paths:
        if str(p) == "-" or Path(p).is_fifo():
            continue
        _core.check_capture(str(p))


def fail_if_nothing_analysed(unreadable: list[dict[str, str]],
                             paths: Sequence[str | Path]) -> None:
    if paths and len(unreadable) == len(paths):
        raise NothingAnalysed("nothing to analyse: " + "; ".join(
            f"{u['file']}: {u['reason']}" for u in unreadable))


def run_learn(paths: Sequence[str | Path], progress: Progress | None = None,
              max_flows: int = 200_000) -> Baseline:
    """Learn a baseline from captures known to be normal."""
    check_captures(paths)
    pipe = Pipeline(events=False, max_flows=max_flows)
    pipe.run(paths, progress)
    fail_if_nothing_analysed(pipe.unreadable, paths)
    pipe.finish()
    view = pipe.view()
    return learn(view.assets, list(view.ip_edges.values()), [str(p) for p in paths],
                 view.values.points)


def run_audit(
    paths: Sequence[str | Path],
    out_dir: Path,
    progress: Progress | None = None,
    max_flows: int = 200_000,
    write_events: bool = True,
    baseline: Baseline | None = None,
    learn_for: float | None = None,
    ruleset: RuleSet | None = None,
    sensor: Sensor = LOCAL,
) -> AuditResult:
    """Audit captures. With a baseline (or a learning window) deviations are reported once
    protecting starts; the baseline as it stands after learning goes to baseline.json."""
    check_captures(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".otsec-run-", dir=out_dir))
    try:
        pipe = Pipeline(stage, events=write_events, ruleset=ruleset, baseline=baseline,
                        learn_for=learn_for, sources=[str(p) for p in paths],
                        max_flows=max_flows, sensor=sensor)
        result = _audit(pipe, paths, stage, progress, learn_for)
        publish(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result.out_dir = out_dir
    return result


def give_back_memory() -> None:
    """Return the memory the core freed to the system (glibc keeps it otherwise, and
    Python's own allocator cannot reuse it): after a flood of flows, the peak of an
    audit is its largest phase, not the two added up."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(None).malloc_trim(0)


def publish(stage: Path, out_dir: Path) -> None:
    """Move a finished run's files into place, summary.json last: until it is there the set
    is not complete. Outputs of an earlier run that this one did not make go, so that a
    folder never mixes two runs."""
    made = {f.name for f in stage.iterdir()}
    (out_dir / "summary.json").unlink(missing_ok=True)
    for name in OUTPUTS - made:
        (out_dir / name).unlink(missing_ok=True)
    for name in sorted(made - {"summary.json"}):
        os.replace(stage / name, out_dir / name)
    os.replace(stage / "summary.json", out_dir / "summary.json")


def _audit(pipe: Pipeline, paths: Sequence[str | Path], out_dir: Path,
           progress: Progress | None, learn_for: float | None) -> AuditResult:
    """Run the captures through ``pipe`` and write every output into ``out_dir`` (the
    staging folder)."""
    sources = pipe.sources
    started = time.perf_counter()
    warnings = pipe.run(paths, progress)
    fail_if_nothing_analysed(pipe.unreadable, paths)
    pipe.finish()
    give_back_memory()  # the flows' memory, before the documents are built
    elapsed = time.perf_counter() - started
    metrics = pipe.core.take_metrics(str(out_dir / "metrics.ndjson"))  # the core writes
    stats = pipe.stats()
    with gc_paused(freeze=True):  # thousands of documents, no cycles among them
        view = pipe.view()
        deviations = pipe.deviations
        if deviations is not None:
            deviations.finish(stats["last_ts"] or 0.0, view.assets)
            deviations.baseline.save(out_dir / "baseline.json")
        asset_by_ip = {ip: a for a in view.assets for ip in a.ips}
        ip_of = {a.id: a.ips[0] for a in view.assets if a.ips}
        alerts = sorted(pipe.detector.alerts, key=lambda a: (a.start, a.rule.id))

        sensor = pipe.sensor
        alert_docs = [alert_document(a, asset_by_ip, baseline_state(deviations, a.start),
                                     sensor) for a in alerts]
        incident_docs = [incident_document(i, sensor) for i in incidents(alert_docs)]
        flag_actors(view.assets, incident_docs)
        write_ndjson(out_dir / "incidents.ndjson", incident_docs)
        write_ndjson(out_dir / "alerts.ndjson", alert_docs)
        asset_docs = [asset_document(a, view.values.documents_of(a.ips), sensor)
                      for a in view.assets]
        edge_docs = [edge_document(e, ip_of, sensor=sensor) for e in view.edges]
        write_json(out_dir / "assets.json", asset_docs)  # staged: published when complete
        write_json(out_dir / "edges.json", edge_docs)
        summary = build_summary(stats, sources, elapsed, [a.rule.severity for a in alerts],
                                view.assets, view.edges, warnings)
        summary["incidents"] = count_by_severity(incident_docs)
        summary["sensor"] = sensor.summary()
        summary["operations"] = operations(metrics, pipe.availability.outages, view.values)
        summary["suppressed"] = pipe.detector.suppressed
        summary["unreadable"] = pipe.unreadable
        summary["repaired"] = pipe.repaired
        summary["baseline"] = {
            "mode": "protecting" if deviations else "none",
            "learn_for": learn_for,
            "assets": len(deviations.baseline.assets) if deviations else 0,
            "edges": len(deviations.baseline.edges) if deviations else 0,
        }
        write_json(out_dir / "summary.json", summary)
        result = AuditResult(out_dir, summary, alert_docs, view.assets, view.edges, warnings,
                             asset_docs, edge_docs, incident_docs, view.values.points,
                             metrics, sensor, view.values.telling)
        write_report(out_dir / "report.html", result)
    return result
