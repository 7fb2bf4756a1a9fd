"""Evaluate compiled rules against events: conditions, thresholds, messages, findings."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from otsec.detect.alerts import Finding
from otsec.detect.fields import CONTEXT_FIELDS, resolve
from otsec.detect.ruleset import _TEMPLATE, CompiledRule, Condition, RuleSet
from otsec.events import Anomaly, Event

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


class Matcher:
    """Indexes rules by protocol, event kind and function code; keeps threshold windows."""

    def __init__(self, ruleset: RuleSet,
                 context: Callable[[str, Event], Any] | None = None) -> None:
        self.context = context
        self.by_code: dict[tuple[str, str], dict[Any, list[CompiledRule]]] = {}
        self.rest: dict[tuple[str, str], list[CompiledRule]] = {}
        for c in ruleset.rules.values():
            if c.kind != "signature":
                continue
            protocols = (["modbus", "s7comm", "s7comm_plus", "dnp3"] if c.rule.protocol == "any"
                         else [c.rule.protocol])
            codes = next((cond for cond in c.conditions if cond.field == "function_code"
                          and cond.op in ("eq", "in")), None)
            for proto in protocols:
                slot = (proto, c.event)
                if codes is None:
                    self.rest.setdefault(slot, []).append(c)
                    continue
                for code in ([codes.value] if codes.op == "eq" else codes.value):
                    self.by_code.setdefault(slot, {}).setdefault(code, []).append(c)
        self.windows: dict[tuple[str, str], deque[tuple[float, Any]]] = {}
        self.requests: dict[int, int] = {}

    def evaluate(self, event: Event) -> list[Finding]:
        if type(event) is Anomaly:
            slot = (event.protocol_name, "anomaly")
            candidates = self.rest.get(slot, ())
        else:
            slot = (event.protocol, "pdu")
            if event.direction == "request":
                self._count_request(event)
            by_code = self.by_code.get(slot)
            code = getattr(event, "function_code", None)
            hits = by_code.get(code, ()) if by_code else ()
            rest = self.rest.get(slot, ())
            candidates = [*hits, *rest] if hits and rest else (hits or rest)
        out = []
        for c in candidates:
            if all(self._holds(cond, event) for cond in c.conditions) and self._crossed(
                    c, event):
                out.append(self._finding(c, event))
        return out

    def _holds(self, cond: Condition, event: Event) -> bool:
        name = cond.field
        if name == "request_index":
            value: Any = self.requests.get(id(event.flow), 0)
        elif name in CONTEXT_FIELDS:
            value = self.context(name, event) if self.context else None
        else:
            value = resolve(event, name)
        return _test(cond.op, value, cond.value)

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
        q = self.windows.get(key)
        if q is None:
            if len(self.windows) > MAX_KEYS:
                self.windows.clear()
            q = self.windows[key] = deque()
        q.append((event.ts, resolve(event, t.distinct) if t.distinct else None))
        while q and event.ts - q[0][0] > t.window:
            q.popleft()
        seen = len({v for _, v in q}) if t.distinct else len(q)
        return seen >= t.count

    def _finding(self, c: CompiledRule, event: Event) -> Finding:
        swap = c.actor == "receiver" or (c.actor == "tcp_client" and not event.from_client)
        answerable = c.answerable
        if answerable is None:
            answerable = type(event) is not Anomaly and event.direction == "request" and not swap
        return Finding(c.rule, event, render(c.message, event),
                       key=tuple(_hashable(resolve(event, g)) for g in c.group_by),
                       answerable=answerable, target=render(c.target, event),
                       swap=swap, detail=render(c.detail, event))


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


def render(template: str, event: Event) -> str:
    if "{" not in template:
        return template

    def field(m: Any) -> str:
        name = m.group(1)
        if name == "details":
            return "{details}"  # filled in by the alert from every finding it folds
        value = resolve(event, name)
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return "?" if value is None else str(value)

    return _TEMPLATE.sub(field, template)
