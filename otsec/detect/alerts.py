"""Alerts: findings aggregated per rule and conversation, with the device's answer.

A flood must be one alert with a count, not a million: findings with the same rule,
source, destination and detail key fold into one ``Alert`` until it has been quiet
for ``window`` seconds. A request's later response says whether the device accepted
the command; that outcome is folded into the same alert.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from otsec import _core
from otsec.detect.catalog import Rule
from otsec.detect.fields import render
from otsec.events import Event
from otsec.timefmt import iso

MAX_DETAILS = 16
MAX_WATCHED = 50_000  # requests waiting for their response to settle an alert's outcome
#: alerts of one rule per cap window (the findings beyond fold into one more), of one rule
#: from one actor (likewise), and the window's seconds: the core folds its findings the same
MAX_PER_RULE, MAX_PER_ACTOR, CAP_WINDOW = _core.Engine.finding_caps()
MAX_ACTORS = 100  # actors an overflow alert names (it counts them all)
MAX_COUNTED = 65_536  # distinct actors an overflow alert counts


@dataclass(slots=True, kw_only=True)
class Notice(Event):
    """Carries a finding that no single packet carries (a silence, an end-of-run check)."""

    protocol_name: str
    source_ip: str
    destination_ip: str
    destination_port: int | None = None
    transport: str | None = None


@dataclass(slots=True)
class Finding:
    """What a detector says about one event."""

    rule: Rule
    event: Event
    action: str  # verb phrase: "wrote 3 holding registers at 100 (FC 16)"
    key: tuple[object, ...] = ()
    answerable: bool = True  # the PDU is a request whose response tells the outcome
    target: str = ""  # what on the destination: "unit 1"
    swap: bool = False  # the receiver of the event is the actor (a scanner drawing errors)
    detail: str = ""  # one value folded into the alert's list, e.g. a function code
    approve: dict[str, object] | None = None  # what `baseline approve` adds to the baseline
    templates: tuple[str, str] | None = None  # (action, target) still to render, if any
    fold: int = 0  # the core folded it: 1 the first beyond its actor's cap, 2 its rule's


@dataclass(slots=True)
class Alert:
    rule: Rule
    key: tuple[object, ...]
    event: Event  # the first event that raised it (addresses, protocol fields)
    action: str
    answerable: bool
    target: str
    swap: bool
    start: float
    end: float
    count: int = 1
    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # rejection reasons
    details: list[str] = field(default_factory=list)  # distinct finding details, capped
    approve: list[dict[str, object]] = field(default_factory=list)  # baseline additions
    overflow: bool = False  # holds the findings beyond its rule's (or actor's) cap
    actors: list[str] = field(default_factory=list)  # an overflow's actors, capped
    actor_count: int = 0  # an overflow's distinct actors (up to MAX_COUNTED)
    others: set[str] = field(default_factory=set, repr=False)
    _id: str = field(default="", repr=False, compare=False)
    #: a restored alert's last document (its event did not survive the restart)
    document: dict[str, object] | None = field(default=None, repr=False, compare=False)
    again_after: float | None = None  # the same finding alerted before, then was quiet this
    # long (the alert window) at least
    #: the compiled core's findings folded into it (it counts their repeats)
    core_keys: list[int] = field(default_factory=list, repr=False)

    @property
    def id(self) -> str:
        if not self._id:  # key and start never change: computed once
            text = "|".join(str(k) for k in (self.rule.id, *self.key, iso(self.start)))
            self._id = hashlib.sha256(text.encode()).hexdigest()[:32]
        return self._id

    def signature(self) -> tuple[object, ...]:
        """What a change of its document would change (cheap to compare every flush)."""
        return (self.count, self.end, self.accepted, self.rejected, len(self.details),
                len(self.approve), self.actor_count)

    @property
    def source_ip(self) -> str:
        return str(self.key[0])

    @property
    def destination_ip(self) -> str:
        return str(self.key[1])

    @property
    def message(self) -> str:
        """One sentence: who did what to whom, how often, and what the device answered."""
        target = f" ({self.target})" if self.target else ""
        action = self.action.replace("{details}", ", ".join(self.details))
        other = "" if self.destination_ip == self.source_ip else f" {self.destination_ip}"
        text = f"{self.source_ip} {action}{other}{target}"
        if self.overflow:
            return self._overflow_message(text)
        if self.count > 1:
            text += f", {self.count} times"
        if self.again_after is not None:  # not a duplicate: the same finding came back
            text += f" (again, after {_duration(self.again_after)} or more without it)"
        phrase = self.outcome_phrase()
        return f"{text}; {phrase}." if phrase else f"{text}."

    def add_actors(self, actors: Iterable[str]) -> None:
        """Actors an overflow folded (named up to MAX_ACTORS, counted up to MAX_COUNTED)."""
        for actor in actors:
            if actor not in self.others and len(self.others) < MAX_COUNTED:
                self.others.add(actor)
                self.actor_count = max(self.actor_count, len(self.others))
                if len(self.actors) < MAX_ACTORS:
                    self.actors.append(actor)

    def _overflow_message(self, first: str) -> str:
        named = ", ".join(self.actors)
        more = self.actor_count - len(self.actors)
        if more > 0:
            named += f" and {more:,} more"
        if self.key[3] == "*":  # the rule's cap: many actors at once
            many = f"{self.actor_count:,}{' or more' if self.actor_count >= MAX_COUNTED else ''}"
            return (f"{self.count:,} more findings of this rule beyond its first "
                    f"{MAX_PER_RULE:,} alerts within {_duration(CAP_WINDOW)}, from {many} "
                    f"source{'s' if self.actor_count > 1 else ''} ({named}); the first: "
                    f"{first}.")
        return (f"{self.count:,} more findings of this rule by {self.source_ip} beyond its "
                f"first {MAX_PER_ACTOR:,} alerts within {_duration(CAP_WINDOW)}; the first: "
                f"{first}.")

    @property
    def outcome(self) -> str:
        if not self.answerable or (self.accepted == 0 and self.rejected == 0):
            return "unknown"
        if self.rejected == 0:
            return "success"
        return "failure" if self.accepted == 0 else "unknown"

    def outcome_phrase(self) -> str:
        """What the device answered; requests and answers are counted apart, so that "157
        times" is never followed by an unexplained "all 155"."""
        if not self.answerable:
            return ""
        a, r = self.accepted, self.rejected
        reasons = ", ".join(sorted(self.reasons))
        if a == 0 and r == 0:
            return "no response was seen"
        unanswered = self.count - a - r if self.count > a + r else 0
        if r == 0:
            text = ("the device accepted it" if a == 1 else f"the device accepted all {a}") \
                if not unanswered else f"the device accepted {a}"
        elif a == 0:
            text = (f"the device rejected it ({reasons})" if r == 1 else
                    f"the device rejected all {r} ({reasons})") if not unanswered else (
                f"the device rejected {r} ({reasons})")
        else:
            text = f"the device accepted {a} and rejected {r} ({reasons})"
        return f"{text}; {unanswered} got no answer" if unanswered else text


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


class AlertBook:
    """Aggregates findings into alerts and settles outcomes from responses.

    Memory follows what is active: ``retire`` takes out the alerts that have been quiet
    for the window (their documents are final), and the caps that keep a flood of
    spoofed sources from raising an alert each count per rule and per actor within
    ``CAP_WINDOW``, so a new actor after a quiet hour gets an alert of its own and an
    overflow names the actors it folds."""

    def __init__(self, window: float = 3600.0) -> None:
        self.window = window
        self.alerts: list[Alert] = []
        self._open: dict[tuple[object, ...], Alert] = {}
        self._watch: OrderedDict[int, tuple[Event, list[Alert]]] = OrderedDict()
        self._caps: dict[object, tuple[float, int]] = {}  # rule or (rule, actor): since, n
        self.retired = 0

    def open_alert(self, finding: Finding) -> Alert | None:
        """The alert a finding would fold into if it came within the window of its end."""
        src, dst = endpoints(finding)
        return self._open.get((finding.rule.id, src, dst, *finding.key))

    def _capped(self, key: object, ts: float, cap: int) -> bool:
        """Whether ``key`` (a rule, or a rule and actor) used up its cap in this window."""
        since, n = self._caps.get(key, (ts, 0))
        if ts - since >= CAP_WINDOW:
            since, n = ts, 0
        self._caps[key] = (since, n)
        return n >= cap

    def _count(self, key: object) -> None:
        since, n = self._caps[key]
        self._caps[key] = (since, n + 1)

    def add(self, finding: Finding) -> Alert:
        ev = finding.event
        src, dst = endpoints(finding)
        rule_id = finding.rule.id
        key: tuple[object, ...] = (rule_id, src, dst, *finding.key)
        alert = self._open.get(key)
        overflow = False
        if alert is None or ev.ts - alert.end > self.window:
            if finding.fold == 1:
                key, overflow = (rule_id, src, "*"), True
            elif finding.fold == 2:
                key, overflow = (rule_id, "*", "*"), True
            elif self._capped((rule_id, src), ev.ts, MAX_PER_ACTOR):
                key, overflow = (rule_id, src, "*"), True  # one actor, many targets/keys
            elif self._capped(rule_id, ev.ts, MAX_PER_RULE):
                key, overflow = (rule_id, "*", "*"), True  # many actors at once
            if overflow:
                alert = self._open.get(key)
        if alert is None or ev.ts - alert.end > self.window:
            again = None if alert is None or overflow else self.window
            if not overflow:
                self._count(rule_id)
                self._count((rule_id, src))
            if finding.templates is not None:  # rendered once per alert, not per repeat
                finding.action = render(finding.templates[0], ev)
                finding.target = render(finding.templates[1], ev)
            alert = Alert(
                rule=finding.rule,
                key=(src, dst, "beyond", key[1]) if overflow else key[1:],
                event=ev,
                action=finding.action,
                answerable=finding.answerable,
                target=finding.target,
                swap=finding.swap,
                start=ev.ts,
                end=ev.ts,
                overflow=overflow,
                again_after=again,
            )
            self._open[key] = alert
            self.alerts.append(alert)
        else:
            alert.count += 1
            alert.end = max(alert.end, ev.ts)
        if alert.overflow:
            alert.add_actors((src,))
        approve = finding.approve
        if approve is not None and approve not in alert.approve and len(
                alert.approve) < MAX_DETAILS:
            alert.approve.append(approve)
        if finding.detail and finding.detail not in alert.details:
            if len(alert.details) < MAX_DETAILS:
                alert.details.append(finding.detail)
            elif alert.details[-1] != "...":
                alert.details.append("...")
        if finding.answerable:
            watched = self._watch.get(id(ev))
            if watched is None:
                self._watch[id(ev)] = (ev, [alert])
                if len(self._watch) > MAX_WATCHED:
                    self._watch.popitem(last=False)
            elif alert not in watched[1]:
                watched[1].append(alert)
        return alert

    def export(self, documents: dict[str, dict[str, object]]) -> list[dict[str, object]]:
        """The open alerts as plain data (with their newest ``documents``, by alert id), for
        a restarted sensor to go on with them."""
        out = []
        for key, a in self._open.items():
            doc = documents.get(a.id)
            if doc is None:
                continue
            out.append({"key": list(key), "alert_key": list(a.key), "start": a.start,
                        "end": a.end, "count": a.count, "accepted": a.accepted,
                        "rejected": a.rejected, "reasons": a.reasons, "details": a.details,
                        "approve": a.approve, "action": a.action, "target": a.target,
                        "answerable": a.answerable, "swap": a.swap, "overflow": a.overflow,
                        "actors": a.actors, "again_after": a.again_after, "document": doc})
        return out

    def restore(self, items: list[dict[str, Any]], rules: dict[str, Rule]) -> int:
        """Open again the alerts a past run exported (those of rules still loaded): the
        same findings fold into them instead of raising new alerts."""
        restored = 0
        for item in items:
            try:
                doc = item["document"]
                if not (isinstance(doc, dict) and isinstance(doc.get("event"), dict)
                        and isinstance(doc["event"].get("id"), str)
                        and isinstance(doc.get("otsec"), dict)
                        and isinstance(doc["otsec"].get("baseline", {}), dict)):
                    continue
                key = _tuple(item["key"])
                rule = rules.get(str(key[0]))
                if rule is None or key in self._open:
                    continue
                alert = Alert(rule=rule, key=_tuple(item["alert_key"]), event=None,  # type: ignore[arg-type]
                              action=str(item["action"]), answerable=bool(item["answerable"]),
                              target=str(item["target"]), swap=bool(item["swap"]),
                              start=float(item["start"]), end=float(item["end"]),
                              count=int(item["count"]), accepted=int(item["accepted"]),
                              rejected=int(item["rejected"]),
                              reasons=dict(item["reasons"]),
                              details=list(item["details"]),
                              approve=list(item["approve"]),
                              overflow=bool(item["overflow"]),
                              actors=list(item["actors"]),
                              again_after=item["again_after"],
                              document=dict(item["document"]))
            except (KeyError, TypeError, ValueError, IndexError):
                continue  # a file from another version: those alerts start anew
            alert.others = set(alert.actors)
            alert.actor_count = len(alert.actors)
            self._open[key] = alert
            self.alerts.append(alert)
            restored += 1
        return restored

    def retire(self, now: float) -> list[Alert]:
        """Take out the alerts quiet for longer than the window (a later finding opens a
        new one, "again"): what a long-running sensor holds is what is active."""
        quiet = [a for a in self.alerts if now - a.end > self.window]
        if not quiet:
            return []
        gone = {id(a) for a in quiet}
        self.alerts = [a for a in self.alerts if id(a) not in gone]
        self._open = {k: a for k, a in self._open.items() if id(a) not in gone}
        self._caps = {k: v for k, v in self._caps.items() if now - v[0] < CAP_WINDOW}
        self.retired += len(quiet)
        return quiet

    def settle(self, request: Event, accepted: bool, reason: str = "") -> None:
        """A response arrived for ``request``: count it on the alerts it raised."""
        watched = self._watch.pop(id(request), None)
        if watched is None or watched[0] is not request:
            return
        for alert in watched[1]:
            if accepted:
                alert.accepted += 1
            else:
                alert.rejected += 1
                if reason:
                    alert.reasons[reason] = alert.reasons.get(reason, 0) + 1


def _tuple(value: object) -> tuple[object, ...]:
    """A key read back from JSON: its lists are tuples again."""
    if not isinstance(value, list):
        raise TypeError("a key is a list")
    return tuple(_tuple(v) if isinstance(v, list) else v for v in value)


def endpoints(finding: Finding) -> tuple[str, str]:
    """(source, destination) of a finding: the actor first."""
    src, dst = _endpoints(finding.event)
    return (dst, src) if finding.swap else (src, dst)


def _endpoints(ev: Event) -> tuple[str, str]:
    if isinstance(ev, Notice):
        return ev.source_ip, ev.destination_ip
    flow = ev.flow
    if flow is None:
        return "", ""
    sender = flow.sender(ev.from_client)
    ips = flow.ip_texts
    return ips[sender], ips[1 - sender]
