"""The live sensor: a mirror port through the same engine, outputs flushed as it goes.

Everything an audit writes is kept current in ``--out``: events.ndjson is appended as PDUs
arrive, the other files are rewritten atomically every few seconds and once more on the
way out. SIGTERM/SIGINT stop it within a second or two with everything flushed; SIGHUP
reloads the rules. A stats line goes to the log every minute.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otsec import privileges, state, workers
from otsec.atomic import write_json_atomic
from otsec.baseline.model import Baseline
from otsec.capture.live import DEFAULT_FILTER, LiveCapture
from otsec.detect.catalog import SEVERITY_NAMES
from otsec.detect.deviations import baseline_state
from otsec.detect.incidents import incidents
from otsec.detect.ruleset import RuleSet, load
from otsec.health import HEARTBEAT_EVERY, Health, Reading
from otsec.inventory.roles import flag_actors
from otsec.pipeline import Pipeline
from otsec.process import merged
from otsec.report.html import write_report
from otsec.sensor import LOCAL, Sensor
from otsec.sinks.documents import (
    alert_document,
    asset_document,
    edge_document,
    incident_document,
    local_id,
)
from otsec.sinks.ndjson import write_ndjson
from otsec.summary import (
    AuditResult,
    build_summary,
    count_by_severity,
    metric_row,
    operations,
)

REPORT_EVERY = 60.0  # seconds between report.html rewrites while running
INVENTORY_EVERY = 60.0  # seconds between shipments of the assets and edges that changed
DRAIN_EVERY = 0.2  # seconds between hand-overs from the core to the policy

log = logging.getLogger(__name__)


@dataclass
class MonitorOptions:
    iface: str
    out_dir: Path
    bpf: str | None = DEFAULT_FILTER
    baseline: Baseline | None = None
    baseline_file: Path | None = None
    learn_for: float | None = None
    rule_paths: tuple[Path, ...] = ()
    flush_every: float = 5.0
    stats_every: float = 60.0
    max_flows: int = 200_000
    es_url: str | None = None
    promiscuous: bool = True
    user: str | None = "nobody"  # drop root to this user once the socket is open; None: stay
    workers: int = 1
    sensor: Sensor = LOCAL
    heartbeat_every: float = HEARTBEAT_EVERY


def start_pipeline(opts: MonitorOptions, ruleset: RuleSet, append: bool = False) -> Pipeline:
    """The pipeline of one capture process (the sensor, or one of its workers)."""

    def save(base: Baseline) -> None:
        if opts.baseline_file is not None:
            base.save(opts.baseline_file)

    return Pipeline(opts.out_dir, events=True, ruleset=ruleset, baseline=opts.baseline,
                    learn_for=opts.learn_for, sources=[f"live:{opts.iface}"],
                    max_flows=opts.max_flows, append=append, on_learned=save,
                    sensor=opts.sensor, threads=two_cores_each(opts.workers))


def two_cores_each(processes: int) -> bool:
    """Whether each capture process can run the core's record side on a second thread:
    with two cores for each and one more for the kernel's receive path. With fewer the
    threads take turns (on a 2-core machine one process on one thread took 938k packets/s
    without drops, on two threads it dropped from 800k)."""
    return len(os.sched_getaffinity(0)) > 2 * processes


def save_baseline(pipe: Pipeline, opts: MonitorOptions) -> None:
    if pipe.deviations is not None and opts.baseline_file is not None and opts.learn_for:
        pipe.deviations.baseline.save(opts.baseline_file)


def open_metrics(out_dir: Path) -> int:
    """metrics.ndjson for appending, opened before root is given up (each capture process
    holds its own descriptor; the user it runs as may not create files there yet)."""
    return os.open(out_dir / "metrics.ndjson", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def snapshot(pipe: Pipeline, drops: int, metrics_fd: int) -> dict[str, Any]:
    """What a capture process knows, as plain data (a worker sends it to its parent); the
    minutes of the operations view it finished are appended to metrics.ndjson, in one
    write so that the lines of two processes never mix."""
    pipe.core.flush()  # the events written so far are in the file
    text, _rows = pipe.core.take_metrics_text()
    if text:
        os.write(metrics_fd, text)
    view = pipe.view()
    dev = pipe.deviations
    asset_by_ip = {ip: a for a in view.assets for ip in a.ips}
    alerts = sorted(pipe.detector.alerts, key=lambda a: (a.start, a.rule.id))
    docs = [alert_document(a, asset_by_ip, baseline_state(dev, a.start), pipe.sensor)
            for a in alerts]
    stats = pipe.stats()
    return {"hosts": pipe.inventory.hosts, "arp": pipe.inventory.arp, "edges": view.ip_edges,
            "alerts": docs, "stats": stats, "drops": drops, "values": view.values,
            "outages": pipe.availability.outages}


def open_captures(opts: MonitorOptions) -> list[LiveCapture]:
    """The capture sockets, opened while privileged: one, or one per worker in a fanout
    group named after this process (the workers, forked later, inherit them)."""
    if opts.workers <= 1:
        return [LiveCapture(opts.iface, bpf=opts.bpf, promiscuous=opts.promiscuous)]
    group = os.getpid() & 0xFFFF
    return [LiveCapture(opts.iface, bpf=opts.bpf, promiscuous=opts.promiscuous, fanout=group)
            for _ in range(opts.workers)]


class Monitor:
    def __init__(self, opts: MonitorOptions, ruleset: RuleSet | None = None) -> None:
        self.opts = opts
        run_as = privileges.prepare(opts.user, opts.out_dir,
                                    opts.baseline_file if opts.learn_for else None,
                                    spool=opts.es_url is not None)
        self.ruleset = ruleset if ruleset is not None else load(list(opts.rule_paths))
        self.captures = open_captures(opts)
        privileges.before_dropping(opts.es_url is not None, opts.workers > 1)
        privileges.drop_privileges(run_as)  # nothing in the folders was opened as root
        self.pipe = start_pipeline(opts, self.ruleset) if opts.workers <= 1 else None
        self.state_file = opts.out_dir / "state.json"
        self.restored = state.load(self.state_file)  # hosts, ARP and edges a past run saw
        self.capture: LiveCapture | None = None
        self.started = time.monotonic()
        self.reload = False
        self.stopping = False
        self.shipped: set[str] = set()
        self.spool_state: dict[str, int] = {}
        self.health = Health(opts.sensor)
        self.next_inventory = 0.0
        self.inventory_sent: dict[str, str] = {}  # asset or edge id: digest shipped last
        self.next_beat = 0.0  # the first flush says the sensor is there
        self.spool_dropped = 0
        self.next_report = 0.0
        self.metrics = MetricsFile(opts.out_dir / "metrics.ndjson")
        self.metrics_fd = open_metrics(opts.out_dir) if opts.workers <= 1 else -1

    # -- signals ----------------------------------------------------------------------

    def _stop(self, signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        self.stopping = True
        if self.capture is not None:
            self.capture.stop()

    def _hup(self, _signum: int, _frame: object) -> None:
        self.reload = True

    def _signals(self) -> dict[int, Any]:
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._hup)
        return previous

    # -- one process ------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        if self.opts.workers > 1:
            return self._run_workers()
        opts, pipe = self.opts, self.pipe
        assert pipe is not None
        self.capture = self.captures[0]
        previous = self._signals()
        log.info("monitoring %s (filter: %s)", opts.iface, opts.bpf or "none")
        next_flush = time.monotonic() + opts.flush_every
        next_stats = time.monotonic() + opts.stats_every
        next_drain = 0.0
        feed = pipe.core.feed_block
        try:
            for block in self.capture:
                if block is not None:
                    self.capture.packets += feed(block)
                now = time.monotonic()
                if block is None or now >= next_drain:
                    next_drain = now + DRAIN_EVERY
                    pipe.drain()
                if now >= next_flush:
                    next_flush = now + opts.flush_every
                    self.flush()
                if now >= next_stats:
                    next_stats = now + opts.stats_every
                    self._stats()
                if self.reload:
                    self._reload()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            pipe.finish()
            summary = self.flush(final=True)
            save_baseline(pipe, opts)
            self.capture.close()
        return summary

    def _reload(self) -> None:
        self.reload = False
        try:
            assert self.pipe is not None
            self.pipe.reload(load(list(self.opts.rule_paths)))
            log.info("rules reloaded")
        except Exception as exc:
            log.error("rules not reloaded, keeping the old ones: %s", exc)

    def _stats(self) -> None:
        assert self.pipe is not None
        received, dropped = self.capture.stats() if self.capture else (0, 0)
        st = self.pipe.stats()
        log.info("stats: packets %d (kernel %d, dropped %d), flows %d, pdus %s, alerts %d%s",
                 st["packets"], received, dropped, st["flows"]["live"], st["pdus"],
                 len(self.pipe.detector.alerts), self._spool_text())

    def _spool_text(self) -> str:
        sp = self.spool_state
        if not sp.get("bytes") and not sp.get("dead_lettered"):
            return ""
        return f", spool {sp['bytes']} bytes, dead letters {sp['dead_lettered']}"

    def flush(self, final: bool = False) -> dict[str, Any]:
        assert self.pipe is not None
        if self.capture is not None:
            self.capture.stats()
        self.pipe.drain()
        drops = self.capture.drops if self.capture else 0
        return self.write(self._merged({0: snapshot(self.pipe, drops, self.metrics_fd)}), final)

    # -- several processes ------------------------------------------------------------

    def _run_workers(self) -> dict[str, Any]:
        opts = self.opts
        if opts.learn_for is not None:
            raise ValueError("learning needs one process: drop --workers or --learn-for")
        for name in ("events.ndjson", "anomalies.ndjson"):
            (opts.out_dir / name).write_bytes(b"")
        procs, results, stop = workers.start(opts.workers, _worker,
                                             (opts, self.ruleset, self.captures))
        for capture in self.captures:  # each worker holds its own
            capture.close()
        latest: dict[int, dict[str, Any]] = {}
        ready = 0
        end = time.monotonic() + 60
        while ready < opts.workers and time.monotonic() < end:
            ready += workers.collect(results, latest, 0.5).count("ready")
            if any(not p.is_alive() for p in procs):
                raise RuntimeError("a capture worker failed to start")
        previous = self._signals()
        log.info("monitoring %s with %d workers", opts.iface, opts.workers)
        next_flush = time.monotonic() + opts.flush_every
        next_stats = time.monotonic() + opts.stats_every
        try:
            while not self.stopping:
                workers.collect(results, latest, 0.5)
                if self.reload:  # each worker reloads its own rules
                    self.reload = False
                    for p in procs:
                        os.kill(p.pid, signal.SIGHUP)
                if time.monotonic() >= next_flush and len(latest) == opts.workers:
                    next_flush = time.monotonic() + opts.flush_every
                    summary = self.write(self._merged(latest))
                    if time.monotonic() >= next_stats:
                        next_stats = time.monotonic() + opts.stats_every
                        log.info("stats: packets %d, kernel drops %d, flows %d, pdus %s, "
                                 "alerts %d (%d workers)%s", summary["packets"],
                                 summary["kernel_drops"], summary["flows"], summary["pdus"],
                                 summary["alerts"]["total"], opts.workers, self._spool_text())
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            stop.set()
            finals = 0
            end = time.monotonic() + 30
            while finals < opts.workers and time.monotonic() < end:
                finals += workers.collect(results, latest, 0.5).count("final")
            for p in procs:
                p.join(timeout=5)
        return self.write(self._merged(latest), final=True)

    def _merged(self, latest: dict[int, dict[str, Any]]) -> dict[str, Any]:
        """The workers' snapshots and what a previous run saw, merged and saved."""
        hosts, arp, edges = self.restored
        past = {"hosts": hosts, "arp": arp, "edges": edges, "alerts": [], "stats": None,
                "drops": 0}
        view, inventory, all_edges = workers.merge([past, *latest.values()], keep=True)
        state.save(self.state_file, inventory.hosts, inventory.arp, all_edges)
        # each worker's own flows: its outages and points
        view["outages"] = [o for snap in latest.values() for o in snap.get("outages", [])]
        view["values"] = merged([snap["values"] for snap in latest.values() if "values" in snap])
        return view

    # -- the files ----------------------------------------------------------------------

    def write(self, view: dict[str, Any], final: bool = False) -> dict[str, Any]:
        """Rewrite the state files (atomically) from a view of what was seen so far."""
        out = self.opts.out_dir
        assets, edges, alert_docs = view["assets"], view["edges"], view["alerts"]
        ip_of = {a.id: a.ips[0] for a in assets if a.ips}
        sensor = self.opts.sensor
        incident_docs = [incident_document(i, sensor) for i in incidents(alert_docs)]
        heartbeat = self._beat(view, len(alert_docs), final)
        alert_docs = alert_docs + self.health.alerts(self.ruleset)
        flag_actors(assets, incident_docs)
        values = view["values"]
        asset_docs = [asset_document(a, values.documents_of(a.ips), sensor) for a in assets]
        edge_docs = [edge_document(e, ip_of, sensor=sensor) for e in edges]
        for name, docs in (("incidents", incident_docs), ("alerts", alert_docs)):
            write_ndjson(out / f"{name}.ndjson.tmp", docs)
            (out / f"{name}.ndjson.tmp").replace(out / f"{name}.ndjson")
        write_json_atomic(out / "assets.json", asset_docs)
        write_json_atomic(out / "edges.json", edge_docs)
        severities = [SEVERITY_NAMES[a["event"]["severity"]] for a in alert_docs]
        summary = build_summary(view["stats"], [f"live:{self.opts.iface}"],
                                time.monotonic() - self.started, severities, assets, edges, [])
        summary["incidents"] = count_by_severity(incident_docs)
        summary["sensor"] = self._sensor_summary()
        summary["kernel_drops"] = view["drops"]
        metric_docs = self.metrics.new_documents()
        summary["operations"] = operations(self.metrics.rows, view["outages"], values)
        summary["workers"] = self.opts.workers
        write_json_atomic(out / "summary.json", summary)
        now = time.monotonic()
        if final or now >= self.next_report:  # the layout costs more than the rest: rarer
            self.next_report = now + REPORT_EVERY
            result = AuditResult(out, summary, alert_docs, assets, edges, [], asset_docs,
                                 edge_docs, incident_docs, values.points,
                                 list(self.metrics.rows), sensor)
            write_report(out / "report.html", result)
        if self.opts.es_url:
            if final or now >= self.next_inventory:  # alerts go at once, the inventory less
                self.next_inventory = now + INVENTORY_EVERY  # often: one merge per change
                asset_docs = changed_documents(asset_docs, self.inventory_sent)
                edge_docs = changed_documents(edge_docs, self.inventory_sent)
            else:
                asset_docs, edge_docs = [], []
            self._ship(alert_docs, asset_docs, edge_docs, incident_docs, metric_docs, heartbeat)
        return summary

    def _beat(self, view: dict[str, Any], alerts: int, final: bool) -> dict[str, Any] | None:
        """The heartbeat, when one is due (and on the way out)."""
        now = time.monotonic()
        if not final and now < self.next_beat:
            return None
        self.next_beat = now + self.opts.heartbeat_every
        stats = view["stats"] or {}
        spool = self._spool()
        reading = Reading(
            at=time.time(), packets=stats.get("packets", 0), kernel_drops=view["drops"],
            flows=stats.get("flows", {}).get("created", 0),
            pdus=sum(stats.get("pdus", {}).values()), alerts=alerts,
            spool_bytes=spool.size() if spool else 0,
            spool_max=spool.max_bytes if spool else 1,
            spool_oldest=spool.oldest() if spool else None, spool_dropped=self.spool_dropped)
        return self.health.beat(reading, stopping=final)

    def _spool(self) -> Any:
        if not self.opts.es_url:
            return None
        from otsec.sinks.search import Spool

        return Spool()

    def _sensor_summary(self) -> dict[str, Any]:
        last = self.health.last
        return {**self.opts.sensor.summary(),
                **({"state": last["otsec"]["sensor"]["state"],
                    "heartbeat": last["@timestamp"]} if last else {})}

    def _ship(self, alerts: list[dict[str, Any]], assets: list[dict[str, Any]],
              edges: list[dict[str, Any]], incidents: list[dict[str, Any]],
              metrics: list[dict[str, Any]], heartbeat: dict[str, Any] | None) -> None:
        from otsec.sinks.search import Spool, audit_actions, deliver, digest, heartbeat_actions

        new = [a for a in alerts if a["event"]["id"] not in self.shipped]
        changed = {digest(d): d for d in incidents}  # an incident that grew is a new version
        fresh = [d for key, d in changed.items() if key not in self.shipped]
        spool = Spool()
        actions = audit_actions(new, assets, edges, incidents=fresh, metrics=metrics)
        if heartbeat is not None:
            actions = itertools.chain(heartbeat_actions(heartbeat), actions)
        outcome = deliver(self.opts.es_url, actions, spool)
        self.spool_dropped += outcome.dropped
        self.shipped.update(a["event"]["id"] for a in new)
        self.shipped.update(changed)  # delivered, or spooled for later
        self.spool_state = {"bytes": spool.size(), "dead_lettered": spool.dead_count()}
        if outcome.spooled:
            log.warning("search cluster: %d documents spooled", outcome.spooled)
        if outcome.dead_lettered:
            log.warning("search cluster: %d documents rejected, set aside in %s",
                        outcome.dead_lettered, spool.dead_letter)


def changed_documents(docs: list[dict[str, Any]], sent: dict[str, str]) -> list[dict[str, Any]]:
    """The asset or edge documents that differ from what was shipped last (``sent``: their
    ids and digests, updated)."""
    from otsec.sinks.search import digest

    out = []
    for doc in docs:
        key = local_id(doc)
        value = digest(doc)
        if sent.get(key) != value:
            sent[key] = value
            out.append(doc)
    return out


class MetricsFile:
    """The minutes the capture processes append to metrics.ndjson: the new ones since the
    last look (to ship), and the recent ones (for the summary's operations numbers)."""

    KEEP = 100_000  # minutes of edges kept for the summary

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0  # a past run's: shipped
        self.rows: deque[tuple] = deque(maxlen=self.KEEP)

    def new_documents(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line being appended waits
        self.offset += len(complete)
        docs = [json.loads(line) for line in complete.splitlines() if line.strip()]
        self.rows.extend(metric_row(d) for d in docs)
        return docs


def _worker(index: int, _group: int, results: Any, stop: Any, opts: MonitorOptions,
            ruleset: RuleSet, captures: list[LiveCapture]) -> None:
    """One capture process of a fanout group: its share of the flows, its own engine (it
    runs as its parent does after dropping root)."""
    capture = captures[index]
    for other in captures:
        if other is not capture:
            other.close()
    pipe = start_pipeline(opts, ruleset, append=True)
    metrics_fd = open_metrics(opts.out_dir)
    results.put(("ready", index, None))
    next_snap = time.monotonic() + opts.flush_every / 2
    next_drain = 0.0
    feed = pipe.core.feed_block
    for block in capture:
        if block is not None:
            capture.packets += feed(block)
        if stop.is_set():
            capture.stop()
        now = time.monotonic()
        if block is None or now >= next_drain:
            next_drain = now + DRAIN_EVERY
            pipe.drain()
        if now >= next_snap:
            next_snap = time.monotonic() + opts.flush_every / 2
            capture.stats()
            results.put(("snap", index, snapshot(pipe, capture.drops, metrics_fd)))
        if workers.Reload.wanted:
            workers.Reload.wanted = False
            try:
                pipe.reload(load(list(opts.rule_paths)))
            except Exception as exc:
                log.error("worker %d: rules not reloaded: %s", index, exc)
    pipe.finish()
    capture.stats()
    results.put(("final", index, snapshot(pipe, capture.drops, metrics_fd)))
    capture.close()
