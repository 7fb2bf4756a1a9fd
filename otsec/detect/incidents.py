"""Incidents: the alerts of one actor against one target for one cause, close in time.

One attack step often raises several alerts (a write of a new register range is a write, a
new command and a new range; a slow sweep is a new unit per request and a scan). An analyst
wants the step: alerts raised by the same PDU (the same start, actor and target) belong
together whatever their rules, and alerts of the same actor, target and cause join while
they are less than ``WINDOW`` apart. Works on alert documents, so the live sensor (whose
workers send documents) and the audit group alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from otsec.timefmt import epoch

WINDOW = 300.0  # seconds between two alerts of one incident, at most

#: what a rule's category says the actor was after
CAUSES = {
    "write": "process change", "control": "process change",
    "programming": "program or mode change", "operating-mode": "program or mode change",
    "recon": "discovery", "scan": "discovery", "discovery": "discovery",
    "protocol": "malformed traffic", "availability": "loss of availability",
    "alarm": "loss of availability", "security": "access",
}  # fmt: skip
#: baseline deviations, by rule
BASELINE_CAUSES = {
    "otsec-baseline-new-asset": "new host", "otsec-baseline-new-mac": "new host",
    "otsec-baseline-new-edge": "new conversation",
    "otsec-baseline-rogue-master": "process change",
    "otsec-baseline-new-command": "process change",
    "otsec-baseline-value-out-of-range": "process change",
    "otsec-baseline-new-writer": "process change",
    "otsec-baseline-silent-edge": "loss of availability",
    "otsec-baseline-rate": "loss of availability",
    "otsec-baseline-identity-change": "device change",
}  # fmt: skip


def cause(doc: dict[str, Any]) -> str:
    rule = doc["rule"]
    if rule["category"] == "diagnostics":  # restart/listen-only inhibit; the rest reads
        return "loss of availability" if "TA0107" in doc["threat"]["tactic"]["id"] \
            else "discovery"
    return CAUSES.get(rule["category"]) or BASELINE_CAUSES.get(rule["id"], "discovery")


@dataclass
class Incident:
    actor: str
    target: str
    cause: str
    alerts: list[dict[str, Any]] = field(default_factory=list)  # their documents
    start: float = 0.0
    end: float = 0.0
    first: str = ""  # @timestamp of the first alert (part of the id)

    @property
    def id(self) -> str:
        text = "|".join((self.actor, self.target, self.cause, self.first))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def worst(self) -> dict[str, Any]:
        """The most severe alert (the earliest of them)."""
        return max(sorted(self.alerts, key=lambda d: d["@timestamp"]),
                   key=lambda d: d["event"]["severity"])

    @property
    def message(self) -> str:
        names = sorted({d["rule"]["name"] for d in self.alerts})
        other = "" if self.target == self.actor else f" against {self.target}"
        n = len(self.alerts)
        return (f"{self.actor}{other}: {self.cause} ({n} alert{'s' if n > 1 else ''}: "
                f"{', '.join(names)}). Worst: {self.worst['message']}")


def incidents(docs: list[dict[str, Any]], window: float = WINDOW) -> list[Incident]:
    """Group alert documents into incidents, in the order those start."""
    spans = [(epoch(d["event"]["start"]), epoch(d["event"]["end"])) for d in docs]
    order = sorted(range(len(docs)), key=lambda i: (spans[i][0], docs[i]["rule"]["id"]))
    steps: dict[tuple[str, str, float], list[int]] = {}  # the alerts one PDU raised
    for i in order:
        doc = docs[i]
        steps.setdefault((doc["source"]["ip"], doc["destination"]["ip"], spans[i][0]),
                         []).append(i)
    open_: dict[tuple[str, str, str], Incident] = {}
    out: list[Incident] = []
    for (actor, target, start), members in steps.items():
        # what the step was is what its signature says, before what the baseline adds
        lead = max(members, key=lambda i: (not docs[i]["rule"]["id"].startswith(
            "otsec-baseline-"), docs[i]["event"]["severity"]))
        key = (actor, target, cause(docs[lead]))
        inc = open_.get(key)
        if inc is None or start - inc.end > window:
            inc = open_[key] = Incident(actor, target, key[2], start=start, end=start,
                                        first=docs[members[0]]["event"]["start"])
            out.append(inc)
        for i in members:
            inc.alerts.append(docs[i])
            inc.end = max(inc.end, spans[i][1])
    return out


class IncidentBook:
    """Incidents kept up to date as alert documents arrive and change (the live sensor):
    an alert joins an incident once, when it first arrives, by the same rules as
    ``incidents`` (alerts of one PDU together; the same actor, target and cause while
    less than ``window`` apart), so the work per flush follows what changed."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.of: dict[str, Incident] = {}  # alert id -> its incident
        self._open: dict[tuple[str, str, str], Incident] = {}
        self._steps: dict[tuple[str, str, str], Incident] = {}  # (actor, target, start)

    def update(self, docs: list[dict[str, Any]]) -> set[str]:
        """Fold new and changed alert documents in; the ids of the incidents that changed."""
        touched: set[str] = set()
        fresh = []
        for doc in docs:
            inc = self.of.get(doc["event"]["id"])
            if inc is None:
                fresh.append(doc)
                continue
            inc.alerts = [doc if d["event"]["id"] == doc["event"]["id"] else d
                          for d in inc.alerts]
            inc.end = max(inc.end, epoch(doc["event"]["end"]))
            touched.add(inc.id)
        fresh.sort(key=lambda d: (d["event"]["start"], d["rule"]["id"]))
        for doc in fresh:
            actor, target = doc["source"]["ip"], doc["destination"]["ip"]
            start = doc["event"]["start"]
            inc = self._steps.get((actor, target, start))
            if inc is None:
                key = (actor, target, cause(doc))
                at = epoch(start)
                inc = self._open.get(key)
                if inc is None or at - inc.end > self.window:
                    inc = self._open[key] = Incident(actor, target, key[2], start=at, end=at,
                                                     first=start)
                self._steps[(actor, target, start)] = inc
            inc.alerts.append(doc)
            inc.end = max(inc.end, epoch(doc["event"]["end"]))
            self.of[doc["event"]["id"]] = inc
            touched.add(inc.id)
        return touched

    def incidents(self) -> list[Incident]:
        """The incidents held, in the order they start."""
        return sorted({id(i): i for i in self.of.values()}.values(),
                      key=lambda i: (i.start, i.first))

    def forget(self, inc: Incident) -> None:
        """An incident that ended (its alerts closed): out of memory."""
        key = (inc.actor, inc.target, inc.cause)
        if self._open.get(key) is inc:
            del self._open[key]
        for d in inc.alerts:
            self.of.pop(d["event"]["id"], None)
            step = (d["source"]["ip"], d["destination"]["ip"], d["event"]["start"])
            if self._steps.get(step) is inc:
                del self._steps[step]
