"""The live sensor: a mirror port through the same engine, outputs flushed as it goes.

Everything an audit writes is kept current in ``--out``: events.ndjson is appended as PDUs
arrive, the other files are rewritten atomically every few seconds (by the writer's thread,
see live_outputs.py: the capture thread never waits on files or the cluster) and once more
on the way out. SIGTERM/SIGINT stop it within a second or two with everything flushed; SIGHUP
reloads the rules. A stats line goes to the log every minute.
"""

from __future__ import annotations

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
from otsec.detect.ruleset import RuleSet, load
from otsec.health import HEARTBEAT_EVERY, Health
from otsec.live_outputs import AlertChanges, LiveOutputs, Snapshot, changed_documents
from otsec.pipeline import Pipeline
from otsec.process import merged
from otsec.sensor import LOCAL, Sensor
from otsec.shipper import Shipper
from otsec.summary import metric_row

__all__ = ["Monitor", "MonitorOptions", "changed_documents"]

DRAIN_EVERY = 0.2  # seconds between hand-overs from the core to the policy
STATE_EVERY = 60.0  # seconds between saves of state.json (and on the way out)
OPEN_ALERTS = "alerts-open.json"  # the alerts a stopped sensor left open

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
    return os.open(out_dir / "metrics.ndjson",
                   os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)


def snapshot(pipe: Pipeline, drops: int, metrics_fd: int, changes: AlertChanges,
             final: bool = False) -> dict[str, Any]:
    """What a capture process knows, as plain data (a worker sends it to its parent): its
    counters as new objects and the documents of the alerts that changed. The minutes of
    the operations view it finished are appended to metrics.ndjson, in one write so that
    the lines of two processes never mix. Costs what changed, plus reading the core's
    counters: the documents, files and shipping are the writer's."""
    pipe.core.flush()  # the events written so far are in the file
    text, _rows = pipe.core.take_metrics_text()
    if text:
        os.write(metrics_fd, text)
    ip_edges, values = pipe.counters()
    now = pipe.core.now  # capture time: the alerts' own clock
    alerts, closed = changes.take(pipe, None if final or now is None else now)
    return {"hosts": pipe.inventory.hosts, "arp": pipe.inventory.arp, "edges": ip_edges,
            "alerts": alerts, "closed": closed, "stats": pipe.stats(), "drops": drops,
            "values": values, "outages": list(pipe.availability.outages)}


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
        self.changes = AlertChanges(opts.sensor)
        self.state_file = opts.out_dir / "state.json"
        self.open_file = opts.out_dir / OPEN_ALERTS
        self.reopened = self._reopen()
        self.restored = state.load(self.state_file)  # hosts, ARP and edges a past run saw
        self.capture: LiveCapture | None = None
        self.started = time.monotonic()
        self.reload = False
        self.stopping = False
        self.health = Health(opts.sensor)
        self.metrics_fd = open_metrics(opts.out_dir) if opts.workers <= 1 else -1
        self.outputs: LiveOutputs | None = None
        self.spool: Any = None
        self.next_state = 0.0
        self.summary: dict[str, Any] = {}

    def _start_outputs(self) -> LiveOutputs:
        """The writer (and shipper) threads, once the files they write are open."""
        spool, shipper = self.spool, None
        if self.opts.es_url and spool is not None:
            shipper = Shipper(self.opts.es_url, spool)
        self.outputs = LiveOutputs(
            self.opts.out_dir, self.opts.iface, self.opts.sensor, self.ruleset, self.health,
            MetricsFile(self.opts.out_dir / "metrics.ndjson"), self.opts.workers,
            shipper=shipper, spool=spool, heartbeat_every=self.opts.heartbeat_every,
            started=self.started, merge=self._merged, on_summary=self._keep,
            reopened=self.reopened)
        return self.outputs

    def _ready_spool(self) -> None:
        """The spool, in the folder made for it before root was given up."""
        if self.opts.es_url:
            from otsec.sinks.spool import sensor_spool

            self.spool = sensor_spool()

    def _keep(self, summary: dict[str, Any]) -> None:
        self.summary = summary

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
        self._ready_spool()
        outputs = self._start_outputs()
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
                    outputs.offer(self._snapshot())
                if now >= next_stats:
                    next_stats = now + opts.stats_every
                    self._stats()
                if self.reload:
                    self._reload()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            pipe.finish()
            summary = outputs.close(self._snapshot(final=True))
            self._save_open()
            save_baseline(pipe, opts)
            self.capture.close()
        return summary

    def _snapshot(self, final: bool = False) -> Snapshot:
        """On the capture thread: what changed, handed to the writer."""
        assert self.pipe is not None
        self.pipe.drain()
        drops = self._drops()
        snap = snapshot(self.pipe, drops, self.metrics_fd, self.changes, final)
        return Snapshot({0: snap}, snap["alerts"], set(snap["closed"]), final)

    def _reopen(self) -> list[dict[str, Any]]:
        """The alerts the last run left open, open again (one process only: with workers
        the flows a past alert belongs to could land on any of them); their documents."""
        if self.pipe is None or not self.open_file.exists():
            return []
        try:
            items = json.loads(self.open_file.read_text())
        except (OSError, ValueError) as exc:
            log.warning("%s: not read (%s); its alerts are raised anew", self.open_file, exc)
            return []
        book = self.pipe.detector.book
        n = book.restore(items.get("alerts", []) if isinstance(items, dict) else [],
                         self.ruleset.catalog)
        if n:
            log.info("%d alerts of the last run are open again", n)
        return [a.document for a in book.alerts if a.document is not None]

    def _save_open(self) -> None:
        """The open alerts, for the next run to take over (one process only)."""
        assert self.pipe is not None
        docs = self.changes.documents()
        items = self.pipe.detector.book.export(docs)
        write_json_atomic(self.open_file, {"version": 1, "alerts": items})

    def _drops(self) -> int:
        """The kernel's drops since the start (its counters reset on each read)."""
        if self.capture is None:
            return 0
        self.capture.stats()
        return self.capture.drops

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
        st = self.pipe.stats()
        drops = self._drops()
        log.info("stats: packets %d, kernel drops %d, flows %d, pdus %s, alerts %d, "
                 "queued for the writer %d%s", st["packets"], drops, st["flows"]["live"],
                 st["pdus"], len(self.pipe.detector.alerts) + self.pipe.detector.book.retired,
                 self.outputs.queued() if self.outputs else 0, self._spool_text())

    def _spool_text(self) -> str:
        return self.outputs.spool_text() if self.outputs is not None else ""

    # -- several processes ------------------------------------------------------------

    def _run_workers(self) -> dict[str, Any]:
        opts = self.opts
        if opts.learn_for is not None:
            raise ValueError("learning needs one process: drop --workers or --learn-for")
        for name in ("events.ndjson", "anomalies.ndjson"):
            (opts.out_dir / name).write_bytes(b"")
        group = os.getpid() & 0xFFFF  # the fanout group open_captures named
        # the rings are this process's: a worker that dies is replaced and reads on
        crew = Crew(opts, self.ruleset, self.captures, group)
        ready = 0
        end = time.monotonic() + 60
        while ready < opts.workers and time.monotonic() < end:
            ready += crew.collect(0.5).count("ready")
            if any(not p.is_alive() for p in crew.procs):
                raise RuntimeError("a capture worker failed to start")
        self._ready_spool()
        outputs = self._start_outputs()
        previous = self._signals()
        log.info("monitoring %s with %d workers", opts.iface, opts.workers)
        next_flush = time.monotonic() + opts.flush_every
        next_stats = time.monotonic() + opts.stats_every
        try:
            while not self.stopping:
                crew.collect(0.5)
                crew.replace_the_dead()
                outputs.worker_deaths, outputs.workers_down = crew.deaths, crew.down()
                if self.reload:  # each worker reloads its own rules
                    self.reload = False
                    crew.signal(signal.SIGHUP)
                if time.monotonic() >= next_flush and len(crew.latest) == opts.workers:
                    next_flush = time.monotonic() + opts.flush_every
                    outputs.offer(crew.take())
                    if time.monotonic() >= next_stats:
                        next_stats = time.monotonic() + opts.stats_every
                        summary = self.summary
                        if summary:
                            log.info("stats: packets %d, kernel drops %d, flows %d, pdus %s, "
                                     "alerts %d (%d workers, %d restarted)%s",
                                     summary["packets"], summary["kernel_drops"],
                                     summary["flows"], summary["pdus"],
                                     summary["alerts"]["total"], opts.workers, crew.deaths,
                                     self._spool_text())
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            crew.stop.set()
            finals = 0
            end = time.monotonic() + 30
            while finals < len(crew.procs) and time.monotonic() < end:
                finals += crew.collect(0.5).count("final")
            for p in crew.procs:
                p.join(timeout=5)
            for capture in self.captures:
                capture.close()
        return outputs.close(crew.take())

    def _merged(self, latest: dict[int, dict[str, Any]]) -> dict[str, Any]:
        """The workers' snapshots and what a previous run saw, merged and saved (on the
        writer's thread)."""
        hosts, arp, edges = self.restored
        past = {"hosts": hosts, "arp": arp, "edges": edges, "stats": None, "drops": 0}
        now = time.monotonic()
        owned = self.opts.workers <= 1
        if now >= self.next_state or self.stopping:  # the heaviest file: once a minute
            self.next_state = now + STATE_EVERY
            view, inventory, all_edges = workers.merge([past, *latest.values()], keep=True,
                                                       owned=owned)
            state.save(self.state_file, inventory.hosts, inventory.arp, all_edges)
        else:
            view = workers.merge([past, *latest.values()], owned=owned)
        # each worker's own flows: its outages and points
        view["outages"] = [o for snap in latest.values() for o in snap.get("outages", [])]
        view["values"] = merged([snap["values"] for snap in latest.values() if "values" in snap])
        return view


class Crew:
    """The capture workers of a sensor: their newest snapshots, the alert changes they
    sent since the writer last took them, and their replacements when one dies (its
    alerts close, its counters are kept: nothing it saw is forgotten)."""

    def __init__(self, opts: MonitorOptions, ruleset: RuleSet, captures: list[LiveCapture],
                 group: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.opts, self.ruleset, self.captures, self.group = opts, ruleset, captures, group
        self.results = ctx.Queue()
        self.stop = ctx.Event()
        self.procs = [self._spawn(i) for i in range(len(captures))]
        self.latest: dict[int, dict[str, Any]] = {}
        self.departed: list[dict[str, Any]] = []  # the last snapshots of workers that died
        self.changes = Snapshot({})
        self.owner: dict[str, int] = {}  # alert id -> the worker that holds it
        self.deaths = 0
        self.backoff = [1.0] * len(captures)
        self.due: dict[int, float] = {}  # worker -> when to start it again

    def _spawn(self, index: int) -> Any:
        return workers.spawn(index, self.group, self.results, self.stop, _worker,
                             (self.opts, self.ruleset, self.captures))

    def collect(self, timeout: float) -> list[str]:
        kinds = []
        for kind, index, payload in workers.receive(self.results, timeout):
            kinds.append(kind)
            if payload is None:
                continue
            alerts = payload.pop("alerts", {})
            self.changes.alerts.update(alerts)
            self.owner.update(dict.fromkeys(alerts, index))
            closed = payload.pop("closed", ())
            self.changes.closed.update(closed)
            for aid in closed:
                self.owner.pop(aid, None)
            self.latest[index] = payload
        return kinds

    def replace_the_dead(self) -> None:
        now = time.monotonic()
        for i, p in enumerate(self.procs):
            if i in self.due:
                if now >= self.due[i]:
                    del self.due[i]
                    self.procs[i] = self._spawn(i)
                    log.info("capture worker %d started again (pid %d)", i, self.procs[i].pid)
                continue
            if p.is_alive() or self.stop.is_set():
                continue
            self.deaths += 1
            log.error("capture worker %d (pid %d) died (exit status %s); its flows are "
                      "unwatched until it starts again in %.0f s", i, p.pid, p.exitcode,
                      self.backoff[i])
            self.due[i] = now + self.backoff[i]
            self.backoff[i] = min(self.backoff[i] * 2, 60.0)
            gone = self.latest.pop(i, None)
            if gone is not None:
                self.departed.append(gone)
                del self.departed[:-MAX_DEPARTED]
            mine = {aid for aid, w in self.owner.items() if w == i}
            self.changes.closed |= mine  # its alerts end with it
            for aid in mine:
                del self.owner[aid]

    def down(self) -> int:
        return len(self.due) + sum(1 for p in self.procs if not p.is_alive())

    def signal(self, signum: int) -> None:
        for p in self.procs:
            if p.is_alive():
                os.kill(p.pid, signum)

    def take(self) -> Snapshot:
        """What the writer needs: every worker's newest counters (and those of workers
        that died), and the alert changes since the last call."""
        latest = dict(self.latest)
        for n, snap in enumerate(self.departed):
            latest[-1 - n] = snap
        snap = Snapshot(latest, self.changes.alerts, self.changes.closed)
        self.changes = Snapshot({})
        return snap


MAX_DEPARTED = 16  # last snapshots of dead workers kept (their counters stay in the totals)


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
    runs as its parent does after dropping root; its ring is its parent's, so that one
    started in its place reads on)."""
    capture = captures[index]
    for other in captures:
        if other is not capture:
            other.close()
    pipe = start_pipeline(opts, ruleset, append=True)
    metrics_fd = open_metrics(opts.out_dir)
    results.put(("ready", index, None))
    changes = AlertChanges(opts.sensor)
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
            results.put(("snap", index, snapshot(pipe, capture.drops, metrics_fd, changes)))
        if workers.Reload.wanted:
            workers.Reload.wanted = False
            try:
                pipe.reload(load(list(opts.rule_paths)))
            except Exception as exc:
                log.error("worker %d: rules not reloaded: %s", index, exc)
    pipe.finish()
    capture.stats()
    results.put(("final", index, snapshot(pipe, capture.drops, metrics_fd, changes, True)))
    capture.close()
