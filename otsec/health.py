"""A live sensor's own health: one heartbeat a minute, and alerts when it goes blind or
mute.

The heartbeat says what the sensor counted (packets, kernel drops, flows, PDUs, alerts),
how full its spool is and how old its oldest spooled document, its version and uptime.
In the cluster, the newest heartbeat of each sensor also sits in ``otsec-sensors-latest``:
a sensor whose newest heartbeat is old, without having said it stopped, is silent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from otsec import __version__
from otsec.detect.ruleset import RuleSet
from otsec.sensor import Sensor
from otsec.sinks.documents import ECS_VERSION, sensor_alert_document
from otsec.timefmt import epoch, iso

HEARTBEAT_EVERY = 60.0  # seconds
SILENT_AFTER = 180.0  # three missed heartbeats
SPOOL_FULL = 0.9  # of the spool's room
PACKET_LOSS = "otsec-sensor-packet-loss"
SPOOL_FULL_RULE = "otsec-sensor-spool-full"
WORKER_DIED = "otsec-sensor-worker-died"
MAX_EPISODES = 100  # kept per rule (a sensor runs for months; older ones were shipped)


@dataclass(frozen=True)
class Reading:
    """What a sensor counted since it started (cumulative), at one moment."""

    at: float  # epoch seconds
    packets: int = 0
    kernel_drops: int = 0
    flows: int = 0
    pdus: int = 0
    alerts: int = 0
    spool_bytes: int = 0
    spool_max: int = 1
    spool_oldest: float | None = None  # when the oldest spooled document was written
    spool_dropped: int = 0  # documents turned away for lack of spool room
    worker_deaths: int = 0  # capture processes that ended unasked (each was restarted)
    workers_down: int = 0  # capture processes not running at this moment


@dataclass
class Episode:
    """One stretch of heartbeats with the same trouble: one alert, its count growing."""

    start: float
    end: float
    count: int
    message: str


@dataclass
class Health:
    sensor: Sensor
    mode: str = "monitor"  # or "audit": one heartbeat when the run ends
    started: float = field(default_factory=time.time)
    previous: Reading | None = None
    last: dict[str, Any] | None = None  # the newest heartbeat
    episodes: dict[str, list[Episode]] = field(default_factory=dict)
    _open: dict[str, Episode] = field(default_factory=dict)

    def state(self, r: Reading) -> list[str]:
        """What is wrong now (empty: healthy)."""
        before = self.previous
        wrong = []
        if before is not None and r.kernel_drops > before.kernel_drops:
            wrong.append("dropping")
        if (r.spool_bytes >= SPOOL_FULL * r.spool_max or
                (before is not None and r.spool_dropped > before.spool_dropped)):
            wrong.append("spool-full")
        if r.workers_down or (before is not None and r.worker_deaths > before.worker_deaths):
            wrong.append("degraded")
        return wrong

    def beat(self, r: Reading, stopping: bool = False) -> dict[str, Any]:
        """The heartbeat document for ``r``; opens or extends alert episodes."""
        wrong = self.state(r)
        before = self.previous or Reading(at=self.started)
        self._episode(PACKET_LOSS, "dropping" in wrong, r.at,
                      r.kernel_drops - before.kernel_drops,
                      lambda n: f"sensor {self.sensor.name} (site {self.sensor.site}): the kernel "
                                f"dropped {n:,} packets on its capture ring")
        self._episode(SPOOL_FULL_RULE, "spool-full" in wrong, r.at, 1,
                      lambda _n: f"sensor {self.sensor.name} (site {self.sensor.site}): its "
                                 f"spool holds {r.spool_bytes:,} of {r.spool_max:,} bytes "
                                 f"({r.spool_dropped:,} documents turned away) while the "
                                 "search cluster does not take them")
        self._episode(WORKER_DIED, r.worker_deaths > before.worker_deaths, r.at,
                      r.worker_deaths - before.worker_deaths,
                      lambda n: f"sensor {self.sensor.name} (site {self.sensor.site}): {n} "
                                f"capture worker{'s' if n > 1 else ''} died and "
                                f"{'were' if n > 1 else 'was'} restarted; "
                                "its flows went unwatched meanwhile")
        doc = {
            "@timestamp": iso(r.at),
            "ecs": {"version": ECS_VERSION},
            "event": {"kind": "metric", "dataset": "otsec.sensor", "module": "otsec",
                      "start": iso(before.at), "end": iso(r.at)},
            "otsec": {"sensor": {
                "name": self.sensor.name,
                "site": self.sensor.site,
                "interface": self.sensor.interface,
                "version": __version__,
                "mode": self.mode,
                "state": "stopped" if stopping else (wrong[0] if wrong else "ok"),
                "uptime_s": round(r.at - self.started, 3),
                "packets": r.packets,
                "kernel_drops": r.kernel_drops,
                "flows": r.flows,
                "pdus": r.pdus,
                "alerts": r.alerts,
                "workers": {"deaths": r.worker_deaths, "down": r.workers_down},
                "spool": {"bytes": r.spool_bytes, "max_bytes": r.spool_max,
                          "age_s": round(r.at - r.spool_oldest, 3) if r.spool_oldest else 0,
                          "dropped": r.spool_dropped},
                "since_last": {"seconds": round(r.at - before.at, 3),
                               "packets": r.packets - before.packets,
                               "kernel_drops": r.kernel_drops - before.kernel_drops},
            }},
        }
        self.previous = r
        self.last = self.sensor.stamp(doc)
        return self.last

    def _episode(self, rule_id: str, wrong: bool, at: float, n: int, say: Any) -> None:
        episode = self._open.get(rule_id)
        if not wrong:
            self._open.pop(rule_id, None)
            return
        if episode is None:
            episode = self._open[rule_id] = Episode(at, at, 0, "")
            kept = self.episodes.setdefault(rule_id, [])
            kept.append(episode)
            del kept[:-MAX_EPISODES]
        episode.end, episode.count = at, episode.count + n
        episode.message = say(episode.count) + "."

    def alerts(self, ruleset: RuleSet) -> list[dict[str, Any]]:
        """The sensor's own alerts so far (one per episode of trouble), but those the
        site's policy silences: a suppression of the rule without addresses, or a
        maintenance window without hosts (the whole site: a planned cluster outage)."""
        docs = []
        for rule_id, episodes in self.episodes.items():
            compiled = ruleset.rules.get(rule_id)
            if compiled is None:  # a site's rules replaced the catalogue without it
                continue
            if any(s.covers(rule_id, "", "") for s in ruleset.suppress):
                continue
            docs += [sensor_alert_document(compiled.rule, self.sensor, e.start, e.end,
                                           e.count, e.message) for e in episodes
                     if not any(m.start <= e.start <= m.end and not m.hosts
                                for m in ruleset.maintenance)]
        return docs


def audit_heartbeat(sensor: Sensor, summary: dict[str, Any]) -> dict[str, Any]:
    """The one heartbeat of an audit (from its summary.json): what it read, and that it
    ended."""
    health = Health(sensor, "audit", started=time.time() - summary["processing_seconds"])
    return health.beat(Reading(at=time.time(), packets=summary["packets"],
                               flows=summary["flows"], pdus=sum(summary["pdus"].values()),
                               alerts=summary["alerts"]["total"]), stopping=True)


def silent(latest: list[dict[str, Any]], now: float | None = None,
           after: float = SILENT_AFTER) -> list[dict[str, Any]]:
    """The sensors (newest heartbeats) that should have spoken by now and did not."""
    now = time.time() if now is None else now
    return [d for d in latest if d["otsec"]["sensor"]["state"] != "stopped"
            and now - epoch(d["@timestamp"]) > after]
