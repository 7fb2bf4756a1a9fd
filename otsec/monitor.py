"""The live sensor: a mirror port through the same engine, outputs flushed as it goes.

Everything an audit writes is kept current in ``--out``: events.ndjson is appended as PDUs
arrive, the other files are rewritten atomically every few seconds and once more on the
way out. SIGTERM/SIGINT stop it within a second or two with everything flushed; SIGHUP
reloads the rules. A stats line goes to the log every minute.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otsec.atomic import write_json_atomic
from otsec.audit import build_summary
from otsec.baseline.learn import learn
from otsec.baseline.model import Baseline
from otsec.capture.live import DEFAULT_FILTER, LiveCapture
from otsec.detect import Detector
from otsec.detect.deviations import Deviations
from otsec.detect.ruleset import RuleSet, load
from otsec.engine import Engine
from otsec.graph.edges import Graph, merged_edges
from otsec.inventory.assets import Inventory
from otsec.inventory.oui import mac_vendor
from otsec.sinks.documents import alert_document, asset_document, edge_document
from otsec.sinks.files import EventFiles, write_ndjson

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


class Monitor:
    def __init__(self, opts: MonitorOptions, ruleset: RuleSet | None = None) -> None:
        self.opts = opts
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        self.files = EventFiles(opts.out_dir)
        self.inventory = Inventory()
        self.graph = Graph()
        self.detector = Detector(ruleset if ruleset is not None else load(list(opts.rule_paths)))
        self.detector.roles = self.inventory.role_of
        consumers: list[Any] = [self.files, self.inventory, self.graph, self.detector]
        self.deviations: Deviations | None = None
        if opts.baseline is not None or opts.learn_for is not None:
            base = opts.baseline if opts.baseline is not None else Baseline()

            def learned_so_far() -> None:
                assets, _ = self.inventory.assets()
                base.merge(learn(assets, list(self.graph.edges.values()), [f"live:{opts.iface}"]))
                self._save_baseline()

            self.deviations = Deviations(base, self.detector.add, self.detector.catalog,
                                         learn_for=opts.learn_for or 0.0,
                                         on_protect=learned_so_far if opts.learn_for else None)
            self.detector.protect_with(base, self.deviations)
            consumers.append(self.deviations)
        self.engine = Engine(consumers, max_flows=opts.max_flows)
        self.capture: LiveCapture | None = None
        self.started = time.monotonic()
        self.reload = False
        self.shipped: set[str] = set()

    # -- signals ----------------------------------------------------------------------

    def _stop(self, signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        if self.capture is not None:
            self.capture.stop()

    def _hup(self, _signum: int, _frame: object) -> None:
        self.reload = True

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        opts = self.opts
        self.capture = LiveCapture(opts.iface, bpf=opts.bpf, promiscuous=opts.promiscuous)
        if opts.es_url:
            import otsec.sinks.search  # noqa: F401 - load before privileges go
        mac_vendor("00-1B-1B-00-00-00")  # the vendor registry's index, likewise
        if os.geteuid() == 0 and opts.user:
            drop_privileges(opts.user, [opts.out_dir, *( [opts.baseline_file.parent]
                                                         if opts.baseline_file else [])])
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._hup)
        log.info("monitoring %s (filter: %s)", opts.iface, opts.bpf or "none")
        next_flush = time.monotonic() + opts.flush_every
        next_stats = time.monotonic() + opts.stats_every
        packet = self.engine.packet
        try:
            for pkt in self.capture:
                if pkt is not None:
                    packet(*pkt)
                now = time.monotonic()
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
            self.engine.finish()
            summary = self.flush(final=True)
            self.files.close()
            self.capture.close()
        return summary

    def _reload(self) -> None:
        self.reload = False
        try:
            self.detector.reload(load(list(self.opts.rule_paths)))
            log.info("rules reloaded")
        except Exception as exc:
            log.error("rules not reloaded, keeping the old ones: %s", exc)

    def _stats(self) -> None:
        received, dropped = self.capture.stats() if self.capture else (0, 0)
        st = self.engine.stats
        log.info("stats: packets %d (kernel %d, dropped %d), flows %d, pdus %s, alerts %d",
                 st.packets, received, dropped, len(self.engine.flows), dict(st.pdus),
                 len(self.detector.alerts))

    def _save_baseline(self) -> None:
        if self.deviations is not None and self.opts.baseline_file is not None:
            self.deviations.baseline.save(self.opts.baseline_file)

    def flush(self, final: bool = False) -> dict[str, Any]:
        """Rewrite the state files (atomically) from what was seen so far."""
        out = self.opts.out_dir
        self.files.events.flush()
        self.files.anomalies.flush()
        assets, id_of = self.inventory.assets()
        edges = merged_edges(self.graph.edges, id_of)
        asset_by_ip = {ip: a for a in assets for ip in a.ips}
        ip_of = {a.id: a.ips[0] for a in assets if a.ips}
        alerts = sorted(self.detector.alerts, key=lambda a: (a.start, a.rule.id))
        dev = self.deviations

        def state(alert: Any) -> str:
            return "protecting" if dev and dev.protecting(alert.start) else "learning"

        alert_docs = [alert_document(a, asset_by_ip, state(a)) for a in alerts]
        asset_docs = [asset_document(a) for a in assets]
        edge_docs = [edge_document(e, ip_of) for e in edges]
        write_ndjson(out / "alerts.ndjson.tmp", alert_docs)
        (out / "alerts.ndjson.tmp").replace(out / "alerts.ndjson")
        write_json_atomic(out / "assets.json", asset_docs)
        write_json_atomic(out / "edges.json", edge_docs)
        summary = build_summary(self.engine, [f"live:{self.opts.iface}"],
                                time.monotonic() - self.started, alerts, assets, edges, [],
                                self.files.events.count)
        summary["kernel_drops"] = self.capture.drops if self.capture else 0
        write_json_atomic(out / "summary.json", summary)
        if self.opts.es_url:
            self._ship(alert_docs, asset_docs, edge_docs)
        if final:
            self._save_baseline()
        return summary

    def _ship(self, alerts: list[dict[str, Any]], assets: list[dict[str, Any]],
              edges: list[dict[str, Any]]) -> None:
        from otsec.sinks.search import Spool, audit_actions, deliver

        new = [a for a in alerts if a["event"]["id"] not in self.shipped]
        outcome = deliver(self.opts.es_url, list(audit_actions(new, assets, edges)), Spool())
        self.shipped.update(a["event"]["id"] for a in new)
        if outcome.spooled:
            log.warning("search cluster: %d documents spooled", outcome.spooled)


def drop_privileges(user: str, writable: list[Path]) -> None:
    """Give up root for good once the capture socket is open (it stays usable)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PermissionError(f"no such user {user!r} to run as (see --user)") from None
    for directory in writable:
        directory.mkdir(parents=True, exist_ok=True)
        for path in [directory, *directory.iterdir()]:
            os.chown(path, pw.pw_uid, pw.pw_gid)
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    log.info("dropped root: running as %s (uid %d)", user, pw.pw_uid)
