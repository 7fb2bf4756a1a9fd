"""The live sensor's outputs, kept off the capture thread.

The capture thread takes a snapshot every flush (the view, and the documents of the
alerts that changed since the last one) and hands it over without waiting: a snapshot
the writer has not taken yet is replaced by the newer one, their alert changes merged.
The writer's thread rewrites the files, groups incidents, draws the report and hands the
cluster's share to the shipper. Its cost follows what changed: an alert's document is
built when the alert changes, an incident's when its alerts do, and alerts and incidents
that closed move to the files' final head and out of memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from otsec.atomic import write_json_atomic
from otsec.detect.catalog import SEVERITY_NAMES
from otsec.detect.deviations import baseline_state
from otsec.detect.incidents import Incident, IncidentBook
from otsec.detect.ruleset import RuleSet
from otsec.health import Health, Reading
from otsec.inventory.roles import flag_actors
from otsec.kept_ndjson import KeptNdjson
from otsec.report.html import write_report
from otsec.sensor import Sensor
from otsec.sinks.documents import (
    alert_document,
    asset_document,
    asset_ref,
    edge_document,
    incident_document,
    local_id,
)
from otsec.summary import AuditResult, build_summary, count_by_severity, operations

log = logging.getLogger(__name__)
REPORT_EVERY = 60.0  # seconds between report.html rewrites while running
INVENTORY_EVERY = 60.0  # seconds between shipments of the assets and edges that changed


class AlertChanges:
    """One capture process's alerts as documents: built only for alerts that are new or
    changed since the last call, and the ids of alerts that closed (their last document
    is final)."""

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor
        self._seen: dict[str, tuple[tuple[object, ...], dict[str, Any]]] = {}  # id -> built

    def take(self, pipe: Any, now: float | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """(documents by id of the alerts that changed, ids of the alerts that closed);
        ``now`` (capture time) retires the alerts quiet for longer than the window. The
        documents name their assets when the writer takes them (it holds the inventory)."""
        dev = pipe.deviations
        retired = pipe.detector.retire(now) if now is not None else []
        changed: dict[str, dict[str, Any]] = {}
        for alert in [*pipe.detector.alerts, *retired]:
            sig = alert.signature()
            seen = self._seen.get(alert.id)
            if seen is None or seen[0] != sig:
                doc = alert_document(alert, None, baseline_state(dev, alert.start), self.sensor)
                self._seen[alert.id] = (sig, doc)
                changed[self.sensor.alert_id(alert.id)] = doc
        for alert in retired:
            self._seen.pop(alert.id, None)
        return changed, [self.sensor.alert_id(a.id) for a in retired]

    def documents(self) -> dict[str, dict[str, Any]]:
        """The newest document of each open alert, by the alert's own id."""
        return {aid: doc for aid, (_sig, doc) in self._seen.items()}


@dataclass
class Snapshot:
    """What the capture side hands over at a flush."""

    latest: dict[int, dict[str, Any]]  # each capture process's newest counters
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # changed, by id
    closed: set[str] = field(default_factory=set)  # alert ids whose document is final
    final: bool = False

    def merge(self, newer: Snapshot) -> Snapshot:
        """``newer`` with the alert changes of both (a snapshot the writer skipped)."""
        self.alerts.update(newer.alerts)
        self.closed |= newer.closed
        return Snapshot(newer.latest, self.alerts, self.closed, newer.final or self.final)


class LiveOutputs:
    """The writer: owns ``--out``'s files (but events.ndjson and metrics.ndjson, which
    the capture processes append) and what goes to the cluster."""

    def __init__(self, out: Path, iface: str, sensor: Sensor, ruleset: RuleSet,
                 health: Health, metrics: Any, workers: int,
                 shipper: Any = None, spool: Any = None,
                 heartbeat_every: float = 60.0, started: float | None = None,
                 merge: Callable[[dict[int, dict[str, Any]]], dict[str, Any]] | None = None,
                 reopened: Sequence[dict[str, Any]] = (),
                 on_summary: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.out = out
        self.iface = iface
        self.sensor = sensor
        self.ruleset = ruleset
        self.health = health
        self.metrics = metrics
        self.workers = workers
        self.shipper = shipper
        self.spool = spool
        self.heartbeat_every = heartbeat_every
        self.started = started if started is not None else time.monotonic()
        self.on_summary = on_summary
        self.merge = merge  # the snapshots of the capture processes -> one view
        self.alert_file = KeptNdjson(out / "alerts.ndjson")
        self.incident_file = KeptNdjson(out / "incidents.ndjson")
        if reopened:  # alerts a past run left open come back open: not twice in the files
            self.alert_file.drop({d["event"]["id"] for d in reopened})
            self.incident_file.drop({str(d["otsec"]["incident"].get("id")) for d in reopened
                                     if isinstance(d["otsec"].get("incident"), dict)})
        self.docs: dict[str, dict[str, Any]] = {}  # open alerts' documents, by id
        self.closed: set[str] = set()  # of those, the alerts that closed
        self.closed_severities: Counter[str] = Counter()  # alerts moved to the head
        self.closed_incidents: Counter[str] = Counter()
        self._lines: dict[str, tuple[int, str, bytes]] = {}  # id -> (doc id(), incident, line)
        self.book = IncidentBook()
        self._incidents: dict[str, dict[str, Any]] = {}  # incident id -> its document
        self.health_sent: dict[str, str] = {}  # the sensor's own alerts: id -> digest
        self.inventory_sent: dict[str, str] = {}
        self.next_inventory = 0.0
        self.next_report = 0.0
        self.next_beat = 0.0
        self.summary: dict[str, Any] = {}
        self._pending: Snapshot | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._stop = False
        self.writes = 0
        self.flush_seconds = self.flush_max = 0.0  # the writer's last and longest write
        self.worker_deaths = 0  # set by the parent of capture workers
        self.workers_down = 0
        self.error: BaseException | None = None
        self._failing = ""  # the error the writes fail with, while they do
        self._thread = threading.Thread(target=self._run, name="otsec-writer", daemon=True)
        self._thread.start()

    # -- the capture side's calls -------------------------------------------------------

    def offer(self, snap: Snapshot) -> None:
        """Hand over a snapshot; never waits for the writer."""
        with self._cond:
            self._pending = snap if self._pending is None else self._pending.merge(snap)
            self._cond.notify()

    def queued(self) -> int:
        """Alert documents handed over and not written yet (for the minute line)."""
        with self._cond:
            return len(self._pending.alerts) if self._pending is not None else 0

    def close(self, final: Snapshot, wait: float = 60.0) -> dict[str, Any]:
        """The last snapshot, written; the summary."""
        self.offer(Snapshot(final.latest, final.alerts, final.closed, final=True))
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(wait)
        if self.shipper is not None:
            self.shipper.close()
        if self.error is not None:
            raise self.error
        return self.summary

    # -- the writer's thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                snap, self._pending = self._pending, None
                stop = self._stop and snap is None
            if stop:
                return
            assert snap is not None
            try:
                began = time.monotonic()
                self.summary = self.write(snap)
                self.flush_seconds = time.monotonic() - began
                self.flush_max = max(self.flush_max, self.flush_seconds)
            except Exception as exc:  # said (once while it lasts); the next flush tries again
                if str(exc) != self._failing:
                    log.exception("writing the outputs failed: %s", exc)
                    self._failing = str(exc)
                if snap.final:
                    self.error = exc
            else:
                if self._failing:
                    log.info("writing the outputs works again")
                self._failing = ""
            if snap.final:
                return

    def write(self, snap: Snapshot) -> dict[str, Any]:
        """Rewrite the state files (atomically) from a snapshot."""
        self.writes += 1
        assert self.merge is not None
        out, sensor, view, final = self.out, self.sensor, self.merge(snap.latest), snap.final
        assets, edges = view["assets"], view["edges"]
        by_ip = {ip: a for a in assets for ip in a.ips}
        for doc in snap.alerts.values():
            doc["otsec"]["asset"] = {role: asset_ref(by_ip.get(doc[role].get("ip", "")))
                                     for role in ("source", "destination")}
        self.docs.update(snap.alerts)
        self.closed |= snap.closed & self.docs.keys()
        incident_docs, finished, touched = self._incidents_of(snap.alerts)
        finished_docs = [self._incidents[i.id] for i in finished if i.id in touched]
        ip_of = {a.id: a.ips[0] for a in assets if a.ips}
        health_docs = self.health.alerts(self.ruleset)
        heartbeat = self._beat(view, len(self.docs) + sum(self.closed_severities.values()),
                               final)
        alert_docs = list(self.docs.values())
        flag_actors(assets, incident_docs)
        values = view["values"]
        asset_docs = [asset_document(a, values.documents_of(a.ips), sensor) for a in assets]
        edge_docs = [edge_document(e, ip_of, sensor=sensor) for e in edges]
        self._finish(finished)
        self.alert_file.write([*(self._line(d) for d in self.docs.values()),
                               *(orjson.dumps(d) + b"\n" for d in health_docs)])
        self.incident_file.write(orjson.dumps(d) + b"\n" for d in incident_docs
                                 if d["event"]["id"] in self._incidents)
        write_json_atomic(out / "assets.json", asset_docs)
        write_json_atomic(out / "edges.json", edge_docs)
        severities = [SEVERITY_NAMES[a["event"]["severity"]] for a in
                      [*alert_docs, *health_docs]]
        severities += list(self.closed_severities.elements())
        summary = build_summary(view["stats"], [f"live:{self.iface}"],
                                time.monotonic() - self.started, severities, assets, edges, [])
        by_sev = count_by_severity(incident_docs)
        for name, n in self.closed_incidents.items():
            by_sev[name] = by_sev.get(name, 0) + n
        by_sev["total"] = sum(n for k, n in by_sev.items() if k != "total")
        summary["incidents"] = by_sev
        summary["sensor"] = {**self._sensor_summary(),
                             "flush_seconds": {"last": round(self.flush_seconds, 3),
                                               "max": round(self.flush_max, 3)},
                             "alerts_open": len(self.docs)}
        summary["kernel_drops"] = view["drops"]
        metric_docs = self.metrics.new_documents()
        summary["operations"] = operations(self.metrics.rows, view["outages"], values)
        summary["workers"] = self.workers
        write_json_atomic(out / "summary.json", summary)
        now = time.monotonic()
        if final or now >= self.next_report:  # the layout costs more than the rest: rarer
            self.next_report = now + REPORT_EVERY
            result = AuditResult(out, summary, [*alert_docs, *health_docs], assets, edges, [],
                                 asset_docs, edge_docs, incident_docs, values.points,
                                 list(self.metrics.rows), sensor, values.telling)
            write_report(out / "report.html", result)
        if self.shipper is not None:
            if final or now >= self.next_inventory:  # alerts go at once, the inventory less
                self.next_inventory = now + INVENTORY_EVERY  # often: one merge per change
                asset_docs = changed_documents(asset_docs, self.inventory_sent)
                edge_docs = changed_documents(edge_docs, self.inventory_sent)
            else:
                asset_docs, edge_docs = [], []
            changed_health = changed_documents(health_docs, self.health_sent)
            self._ship([*snap.alerts.values(), *changed_health], asset_docs, edge_docs,
                       [self._incidents[i] for i in touched if i in self._incidents] +
                       finished_docs, metric_docs, heartbeat)
        if self.on_summary is not None:
            self.on_summary(summary)
        return summary

    def _incidents_of(self, changed: dict[str, dict[str, Any]]
                      ) -> tuple[list[dict[str, Any]], list[Incident], set[str]]:
        """The incidents of the open alerts (documents rebuilt only where an alert changed),
        and the incidents whose alerts all closed."""
        touched = self.book.update(list(changed.values()))
        docs, finished = [], []
        for inc in self.book.incidents():
            doc = self._incidents.get(inc.id)
            if doc is None or inc.id in touched:
                doc = self._incidents[inc.id] = incident_document(inc, self.sensor)
            docs.append(doc)
            if all(d["event"]["id"] in self.closed for d in inc.alerts):
                finished.append(inc)
        return docs, finished, touched

    def _finish(self, finished: list[Incident]) -> None:
        """Closed incidents and their alerts: to the files' final head, out of memory."""
        for inc in finished:
            doc = self._incidents.pop(inc.id)
            self.incident_file.close([orjson.dumps(doc) + b"\n"])
            self.closed_incidents[SEVERITY_NAMES[doc["event"]["severity"]]] += 1
            self.book.forget(inc)
            lines = []
            for d in inc.alerts:
                aid = d["event"]["id"]
                lines.append(self._line(d))
                self.closed_severities[SEVERITY_NAMES[d["event"]["severity"]]] += 1
                del self.docs[aid]
                self.closed.discard(aid)
                self._lines.pop(aid, None)
            self.alert_file.close(lines)

    def _line(self, doc: dict[str, Any]) -> bytes:
        aid = doc["event"]["id"]
        incident = doc["otsec"].get("incident", {}).get("id", "")
        cached = self._lines.get(aid)
        if cached is not None and cached[0] == id(doc) and cached[1] == incident:
            return cached[2]
        line = orjson.dumps(doc) + b"\n"
        self._lines[aid] = (id(doc), incident, line)
        return line

    def _beat(self, view: dict[str, Any], alerts: int, final: bool) -> dict[str, Any] | None:
        """The heartbeat, when one is due (and on the way out)."""
        now = time.monotonic()
        if not final and now < self.next_beat:
            return None
        self.next_beat = now + self.heartbeat_every
        stats = view["stats"] or {}
        spool = self.spool
        dropped = self.shipper.totals.dropped if self.shipper is not None else 0
        reading = Reading(
            at=time.time(), packets=stats.get("packets", 0), kernel_drops=view["drops"],
            flows=stats.get("flows", {}).get("created", 0),
            pdus=sum(stats.get("pdus", {}).values()), alerts=alerts,
            spool_bytes=spool.size() if spool else 0,
            spool_max=spool.max_bytes if spool else 1,
            spool_oldest=spool.oldest() if spool else None, spool_dropped=dropped,
            worker_deaths=self.worker_deaths, workers_down=self.workers_down)
        return self.health.beat(reading, stopping=final)

    def _sensor_summary(self) -> dict[str, Any]:
        last = self.health.last
        return {**self.sensor.summary(),
                **({"state": last["otsec"]["sensor"]["state"],
                    "heartbeat": last["@timestamp"]} if last else {})}

    def _ship(self, alerts: list[dict[str, Any]], assets: list[dict[str, Any]],
              edges: list[dict[str, Any]], incidents: list[dict[str, Any]],
              metrics: list[dict[str, Any]], heartbeat: dict[str, Any] | None) -> None:
        """What changed since the last flush: alerts and incidents (created once, kept
        current by id), the inventory that changed, the minutes, the heartbeat."""
        from otsec.sinks.search import audit_actions, finding_actions, heartbeat_actions

        actions = [*(heartbeat_actions(heartbeat) if heartbeat is not None else []),
                   *finding_actions(alerts, incidents),
                   *audit_actions([], assets, edges, metrics=metrics)]
        self.shipper.submit(actions)

    def spool_text(self) -> str:
        if self.spool is None:
            return ""
        t = self.shipper.totals if self.shipper is not None else None
        size = self.spool.size()
        dead = self.spool.dead_count()
        if not size and not dead and not (t and t.dropped):
            return ""
        text = f", spool {size} bytes, dead letters {dead}"
        return text + (f", not spooled {t.dropped}" if t and t.dropped else "")


def changed_documents(docs: list[dict[str, Any]], sent: dict[str, str]) -> list[dict[str, Any]]:
    """The asset or edge documents that differ from what was shipped last (``sent``: their
    ids and digests, updated)."""
    from otsec.sinks.search import changed_findings

    return changed_findings(docs, sent, local_id)
