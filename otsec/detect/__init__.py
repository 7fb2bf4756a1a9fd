"""Detection: decides which events are notable and builds alerts from them."""

from __future__ import annotations

from collections.abc import Callable

from otsec.baseline.model import Baseline
from otsec.detect.alerts import Alert, AlertBook, Finding, endpoints
from otsec.detect.deviations import Deviations, event_edge
from otsec.detect.fields import resolve
from otsec.detect.matcher import Matcher
from otsec.detect.ruleset import RuleSet, load
from otsec.events import Event
from otsec.graph.functions import describe

#: rule categories a learned function silences (scans and malformed traffic always alert)
CONTEXTUAL = frozenset({"write", "diagnostics", "recon", "programming", "operating-mode",
                        "control", "security", "alarm"})


class Detector:
    """Engine consumer: matches the ruleset, applies site policy, keeps the alert book."""

    def __init__(self, ruleset: RuleSet | None = None, window: float = 3600.0) -> None:
        self.ruleset = ruleset if ruleset is not None else load()
        self.catalog = self.ruleset.catalog
        self.matcher = Matcher(self.ruleset, self._context)
        self.roles: Callable[[str], str | None] | None = None  # live role guesses by IP
        self.book = AlertBook(window=window)
        self.baseline: Baseline | None = None
        self.deviations: Deviations | None = None
        self.suppressed = {"baseline": 0, "suppress": 0, "maintenance": 0}

    def reload(self, ruleset: RuleSet) -> None:
        """New rules from now on; the alerts raised so far stay."""
        self.ruleset = ruleset
        self.catalog = ruleset.catalog
        self.matcher = Matcher(ruleset, self._context)

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
            protecting = self.deviations is not None and self.deviations.protecting(event.ts)
            return "protecting" if protecting else "learning"
        if name == "function_learned":
            use = describe(event)
            return bool(use and self.baseline and self.baseline.knows_function(
                event_edge(event)[0], event.direction, use.code))
        flow = event.flow
        if flow is None:
            return None
        sender = flow.sender(event.from_client)
        ip = flow.ip_texts[sender if name == "source_role" else 1 - sender]
        if self.baseline is not None and ip in self.baseline.assets:
            return self.baseline.assets[ip].role
        return self.roles(ip) if self.roles else None

    def on_event(self, event: Event) -> None:
        req = getattr(event, "request", None)
        if req is not None and req.accepted is not None:
            self.book.settle(req, req.accepted, resolve(event, "reason"))
        findings = self.matcher.evaluate(event)
        if findings:
            for finding in self._in_context(event, findings):
                self.add(finding)

    def add(self, finding: Finding) -> None:
        """Every finding (rules and baseline deviations) passes site policy here."""
        if self._policy_drops(finding):
            return
        self.book.add(finding)

    def _policy_drops(self, finding: Finding) -> bool:
        rs = self.ruleset
        if not rs.suppress and not rs.maintenance:
            return False
        ts = finding.event.ts
        src, dst = endpoints(finding)
        for s in rs.suppress:
            if ((s.rule is None or s.rule == finding.rule.id)
                    and (s.source_ip is None or s.source_ip == src)
                    and (s.destination_ip is None or s.destination_ip == dst)):
                self.suppressed["suppress"] += 1
                return True
        for m in rs.maintenance:
            if m.start <= ts <= m.end and (not m.hosts or m.hosts & {src, dst}):
                self.suppressed["maintenance"] += 1
                return True
        return False

    def _in_context(self, event: Event, findings: list[Finding]) -> list[Finding]:
        """Attach what approving would learn; drop what the baseline already learned."""
        use = describe(event)
        if use is None:
            return findings
        key = event_edge(event)[0]
        payload = {"kind": "function", "edge": key, "direction": event.direction,
                   "code": use.code}
        learned = (self.baseline is not None and self.deviations is not None
                   and self.deviations.protecting(event.ts)
                   and self.baseline.knows_function(key, event.direction, use.code))
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
