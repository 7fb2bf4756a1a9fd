"""Evaluate compiled rules against events: conditions, thresholds, messages, findings."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from otsec.detect.alerts import Finding
from otsec.detect.fields import COMPUTED, CONTEXT_FIELDS, render, resolve
from otsec.detect.ruleset import CompiledRule, Condition, RuleSet
from otsec.events import Anomaly, Event
from otsec.protocols import RECORD_PROTOCOLS

MAX_KEYS = 20_000  # threshold and flow states kept before the oldest are forgotten


def _test(op: str, value: Any, want: Any) -> bool:
    if op == "eq":
        return value == want
    if op == "in":
        return value in want
    if op == "ne":
        return value != want
    if op == "not_in":
        return value not in want
    if op == "exists":
        return (value is not None and value != [] and value != "") == bool(want)
    if op == "any_in":
        return any(v in want for v in value or ())
    if op == "any_not_in":
        return any(v not in want for v in value or ())
    if value is None:
        return False
    if op == "gt":
        return value > want
    if op == "gte":
        return value >= want
    if op == "lt":
        return value < want
    if op == "lte":
        return value <= want
    if op == "between":
        return want[0] <= value <= want[1]
    if op == "mask_any":
        return bool(value & want)
    raise ValueError(op)


class _Plan:
    """One rule ready to test: plain attributes first (cheap, usually decisive)."""

    __slots__ = ("compiled", "tests")

    def __init__(self, compiled: CompiledRule, conditions: list[Condition]) -> None:
        self.compiled = compiled
        plain = [c for c in conditions if "." not in c.field and c.field not in COMPUTED
                 and c.field not in CONTEXT_FIELDS]
        other = [c for c in conditions if c not in plain]
        self.tests: list[tuple[Any, str, str, Any]] = [
            (attrgetter(c.field), c.field, c.op, c.value) for c in plain] + [
            (None, c.field, c.op, c.value) for c in other]


class Matcher:
    """Indexes rules by protocol, event kind and function code; keeps threshold windows."""

    def __init__(self, ruleset: RuleSet, context: Callable[[str, Event], Any] | None = None,
                 only: set[str] | None = None) -> None:
        """``only``: the ids of the rules to match here (default: every signature rule)."""
        self.context = context
        # slot = (protocol, "pdu"|"anomaly", direction or None); within it rules are
        # indexed by function code where they name one, the rest are tried in turn
        self.by_code: dict[tuple[str, str, str | None], dict[Any, list[_Plan]]] = {}
        self.rest: dict[tuple[str, str, str | None], list[_Plan]] = {}
        for c in ruleset.rules.values():
            if c.kind != "signature" or (only is not None and c.rule.id not in only):
                continue
            protocols = (list(RECORD_PROTOCOLS) if c.rule.protocol == "any"
                         else [c.rule.protocol])
            codes = next((cond for cond in c.conditions if cond.field == "function_code"
                          and cond.op in ("eq", "in")), None)
            direction = next((cond.value for cond in c.conditions if cond.field == "direction"
                              and cond.op == "eq"), None)
            plan = _Plan(c, [cond for cond in c.conditions if cond is not codes
                             and not (cond.field == "direction" and direction is not None)])
            directions: list[str | None] = [direction] if direction else ["request", "response"]
            if c.event == "anomaly":
                directions = [None]
            for proto in protocols:
                for d in directions:
                    slot = (proto, c.event, d)
                    if codes is None:
                        self.rest.setdefault(slot, []).append(plan)
                        continue
                    for code in ([codes.value] if codes.op == "eq" else codes.value):
                        self.by_code.setdefault(slot, {}).setdefault(code, []).append(plan)
        self.windows: dict[tuple[str, str], Any] = {}
        self.requests: dict[int, int] = {}
        self._index: int | None = None

    def evaluate(self, event: Event, request_index: int | None = None) -> list[Finding]:
        """Findings of the rules on this record (``request_index``: its index in the
        connection, when the core counted the requests that did not cross)."""
        self._index = request_index
        if type(event) is Anomaly:
            candidates: Any = self.rest.get((event.protocol_name, "anomaly", None), ())
        else:
            direction = event.direction
            slot = (event.protocol, "pdu", direction)
            if direction == "request":
                self._count_request(event)
            by_code = self.by_code.get(slot)
            hits = by_code.get(getattr(event, "function_code", None), ()) if by_code else ()
            rest = self.rest.get(slot, ())
            candidates = [*hits, *rest] if hits and rest else (hits or rest)
        out = []
        for plan in candidates:
            for getter, name, op, want in plan.tests:
                value = getter(event) if getter is not None else self._value(name, event)
                if not _test(op, value, want):
                    break
            else:
                if self._crossed(plan.compiled, event):
                    out.append(self.finding(plan.compiled, event))
        return out

    def _value(self, name: str, event: Event) -> Any:
        if name == "request_index":
            if self._index is not None:
                return self._index
            return self.requests.get(id(event.flow), 0)
        if name in CONTEXT_FIELDS:
            return self.context(name, event) if self.context else None
        return resolve(event, name)

    def _count_request(self, event: Event) -> None:
        key = id(event.flow)
        if len(self.requests) > MAX_KEYS:
            self.requests.clear()
        self.requests[key] = self.requests.get(key, 0) + 1

    def _crossed(self, c: CompiledRule, event: Event) -> bool:
        t = c.threshold
        if t is None:
            return True
        key = (c.rule.id, _party(event, t.by))
        state = self.windows.get(key)
        if state is None:
            if len(self.windows) > MAX_KEYS:
                self.windows.clear()
            # counts need only the last `count` times; distinct values their last time each
            state = self.windows[key] = OrderedDict() if t.distinct else deque(maxlen=t.count)
        ts = event.ts
        if t.distinct:
            value = _hashable(resolve(event, t.distinct))
            state[value] = ts
            state.move_to_end(value)
            if len(state) < t.count:
                return False
            while state and ts - next(iter(state.values())) > t.window:
                state.popitem(last=False)
            return len(state) >= t.count
        state.append(ts)
        return len(state) == t.count and ts - state[0] <= t.window

    def finding(self, c: CompiledRule, event: Event) -> Finding:
        swap = c.actor == "receiver" or (c.actor == "tcp_client" and not event.from_client)
        answerable = c.answerable
        if answerable is None:
            answerable = type(event) is not Anomaly and event.direction == "request" and not swap
        return Finding(c.rule, event, "",
                       key=tuple(_hashable(resolve(event, g)) for g in c.group_by),
                       answerable=answerable, swap=swap,
                       detail=render(c.detail, event) if c.detail else "",
                       templates=(c.message, c.target))


def _party(event: Event, by: str) -> str:
    flow = event.flow
    if flow is None:
        return ""
    ips = flow.ip_texts
    if by in ("client", "server"):
        side = flow.client_side if by == "client" else 1 - flow.client_side
        return ips[side]
    sender = flow.sender(event.from_client)
    return ips[sender] if by == "source" else ips[1 - sender]


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
