"""Detection: decides which events are notable and builds alerts from them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from otsec.baseline.model import Baseline
from otsec.detect.alerts import Alert, AlertBook, Finding, endpoints
from otsec.detect.deviations import Deviations, baseline_state, event_edge
from otsec.detect.fields import reason_text, resolve
from otsec.detect.matcher import Matcher
from otsec.detect.ruleset import CompiledRule, RuleSet, load
from otsec.events import Event
from otsec.graph.functions import describe
from otsec.inventory.assets import HostRecord
from otsec.inventory.roles import role_for_rules

#: the core's counts of one finding: key, repeats, last time, accepted, rejected, reasons,
#: and for an overflow the actors it folded (the first of them, and how many)
HitCount = tuple[int, int, float, int, int, dict[str, int], list[str], int]
#: core findings remembered per alert (to bring its end up to date before folding into it)
MAX_CORE_KEYS = 256
#: core findings remembered in all before those that policy dropped are forgotten
MAX_DROPPED_KEYS = 200_000

#: rule categories a learned function silences (scans and malformed traffic always alert)
CONTEXTUAL = frozenset({"write", "diagnostics", "recon", "programming", "operating-mode",
                        "control", "security", "alarm"})


class Detector:
    """Matches the ruleset, applies site policy, keeps the alert book.

    With ``core_rules`` (the rules the compiled core applies, in its order) the core hands
    over findings as hits and counts their repeats; the Python matcher then only runs the
    passthrough rules on the records that cross.
    """

    def __init__(self, ruleset: RuleSet | None = None, window: float = 3600.0,
                 core_rules: list[CompiledRule] | None = None,
                 passthrough: set[str] | None = None) -> None:
        self.ruleset = ruleset if ruleset is not None else load()
        self.catalog = self.ruleset.catalog
        self.core_rules = core_rules or []
        self.passthrough = passthrough
        self.matcher = Matcher(self.ruleset, self._context, only=passthrough)
        self.hit_alerts: dict[int, Alert | str] = {}  # core key -> alert, or why it was dropped
        self._applied: dict[int, tuple[int, int, int, dict[str, int]]] = {}
        self.hosts: Callable[[str], HostRecord | None] | None = None  # live, by IP
        #: the core's counts of some of its findings (as ``sync`` takes them)
        self.counts_of: Callable[[list[int]], Iterable[HitCount]] | None = None
        self.book = AlertBook(window=window)
        self.baseline: Baseline | None = None
        self.deviations: Deviations | None = None
        self.suppressed = {"baseline": 0, "suppress": 0, "maintenance": 0}

    def use_core(self, core_rules: list[CompiledRule], passthrough: set[str]) -> None:
        """The core applies ``core_rules`` (in this order) from now on, with fresh counters."""
        self.core_rules = core_rules
        self.passthrough = passthrough
        self.hit_alerts.clear()
        self._applied.clear()

    def reload(self, ruleset: RuleSet) -> None:
        """New rules from now on; the alerts raised so far stay."""
        self.ruleset = ruleset
        self.catalog = ruleset.catalog
        self.matcher = Matcher(ruleset, self._context, only=self.passthrough)

    @property
    def alerts(self) -> list[Alert]:
        return self.book.alerts

    def protect_with(self, baseline: Baseline, deviations: Deviations) -> None:
        """Findings about functions the baseline learned on that path stop alerting."""
        self.baseline = baseline
        self.deviations = deviations

    def _context(self, name: str, event: Event) -> object:
        """Values rules can match that no single PDU holds."""
        if name == "baseline_state":
            return baseline_state(self.deviations, event.ts)
        if name == "function_learned":
            use = describe(event)
            return bool(use and self.baseline and self.baseline.knows_function(
                event_edge(event)[0], event.direction, use.code))
        flow = event.flow
        if flow is None:
            return None
        sender = flow.sender(event.from_client)
        ip = flow.ip_texts[sender if name == "source_role" else 1 - sender]
        host = self.hosts(ip) if self.hosts is not None else None
        return self.role(ip, host, event.ts)[0]

    def role(self, ip: str, host: HostRecord | None, now: float) -> tuple[str | None, float]:
        """A host's role for rules (the baseline's, else what its evidence so far
        suggests) and until when it stands unless the host changes (the compiled core asks
        this when a rule needs a role it does not hold)."""
        if self.baseline is not None and ip in self.baseline.assets:
            return self.baseline.assets[ip].role, math.inf
        return role_for_rules(host, now)

    def on_event(self, event: Event, hits: Sequence[tuple[int, int, int]] = (),
                 request_index: int | None = None) -> None:
        """One record that crossed; ``hits`` are the core rules' first findings on it."""
        req = getattr(event, "request", None)
        if req is not None and req.accepted is not None:
            self.book.settle(req, req.accepted, resolve(event, "reason"))
        findings = self.matcher.evaluate(event, request_index)
        keys: list[int | None] = [None] * len(findings)
        for rule, key, fold in hits:
            finding = self.matcher.finding(self.core_rules[rule], event)
            finding.fold = fold  # beyond the core's caps: the first of an overflow
            findings.append(finding)
            keys.append(key)
        if not findings:
            return
        kept = self._in_context(event, findings, request_index)
        for finding, key in zip(findings, keys, strict=True):
            outcome = self.add(finding) if finding in kept else "baseline"
            if key is not None:
                self.hit_alerts[key] = outcome
                if isinstance(outcome, Alert) and len(outcome.core_keys) < MAX_CORE_KEYS:
                    outcome.core_keys.append(key)

    def add(self, finding: Finding) -> Alert | str:
        """Every finding (rules and baseline deviations) passes site policy here; returns
        its alert, or why policy dropped it."""
        dropped = self._policy_drops(finding)
        if dropped:
            self.suppressed[dropped] += 1
            return dropped
        open_alert = self.book.open_alert(finding)
        if open_alert is not None and open_alert.core_keys and self.counts_of is not None:
            # the repeats the core counted decide whether this finding is within its window
            self.sync(self.counts_of(open_alert.core_keys))
        return self.book.add(finding)

    def retire(self, now: float) -> list[Alert]:
        """The alerts quiet for longer than the window, taken out (their documents are
        final; the core counts their findings anew). The caller has synced the core's
        counts (``Pipeline.counters`` does)."""
        gone = self.book.retire(now)
        for alert in gone:
            for key in alert.core_keys:
                self.hit_alerts.pop(key, None)
                self._applied.pop(key, None)
        if len(self.hit_alerts) > MAX_DROPPED_KEYS:  # findings policy dropped: forget
            self.hit_alerts = {k: v for k, v in self.hit_alerts.items() if not isinstance(v, str)}
            self._applied = {k: v for k, v in self._applied.items() if k in self.hit_alerts}
        return gone

    def sync(self, counts: Iterable[HitCount]) -> None:
        """Fold the repeats the core counted into the alerts (again and again: only what is
        new since the last call is added)."""
        for key, repeats, last, accepted, rejected, reasons, actors, folded in counts:
            target = self.hit_alerts.get(key)
            if target is None:
                continue
            before = self._applied.get(key, (0, 0, 0, {}))
            self._applied[key] = (repeats, accepted, rejected, dict(reasons))
            if isinstance(target, str):
                self.suppressed[target] += repeats - before[0]
                continue
            target.count += repeats - before[0]
            target.end = max(target.end, last)
            if target.overflow:
                target.add_actors(actors)
                target.actor_count = max(target.actor_count, folded)
            target.accepted += accepted - before[1]
            target.rejected += rejected - before[2]
            for reason, n in reasons.items():
                text = reason_text(reason)
                target.reasons[text] = target.reasons.get(text, 0) + n - before[3].get(reason, 0)

    def _policy_drops(self, finding: Finding) -> str | None:
        rs = self.ruleset
        if not rs.suppress and not rs.maintenance:
            return None
        ts = finding.event.ts
        src, dst = endpoints(finding)
        if any(s.covers(finding.rule.id, src, dst) for s in rs.suppress):
            return "suppress"
        for m in rs.maintenance:
            if m.start <= ts <= m.end and (not m.hosts or m.hosts & {src, dst}):
                return "maintenance"
        return None

    def _in_context(self, event: Event, findings: list[Finding],
                    request_index: int | None = None) -> list[Finding]:
        """Attach what approving would learn; drop what the baseline already learned."""
        use = describe(event)
        if use is None:
            return findings
        key = event_edge(event)[0]
        payload = {"kind": "function", "edge": key, "direction": event.direction,
                   "code": use.code}
        learned = (self.baseline is not None and self.deviations is not None
                   and self.deviations.protecting(event.ts)
                   and self.baseline.knows_function(key, event.direction, use.code,
                                                    request_index))
        kept = []
        for f in findings:
            if f.rule.category in CONTEXTUAL and not f.swap:
                if learned:
                    self.suppressed["baseline"] += 1
                    continue
                if f.approve is None:
                    f.approve = payload
            kept.append(f)
        return kept


__all__ = ["Alert", "Detector", "Finding"]
