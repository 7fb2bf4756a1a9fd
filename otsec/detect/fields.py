"""The fields a rule can match and a message can show, read from typed events.

A field name is an event attribute (``function_code``, ``unit_id``, ``rosctr``...), a
dotted path through one (``request.function_code``, ``objects.group`` gives the list of
groups), or one of the computed names below (``direction``, ``table``, ``block``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from otsec.events import Anomaly, Event
from otsec.protocols import RECORDS, dnp3, modbus, s7comm
from otsec.text import hex_code

#: record type -> the texts its protocol computes from it
_TEXTS = {r.event: r.texts for r in RECORDS.values()}


def _protocol(e: Event) -> str:
    return e.protocol_name if isinstance(e, Anomaly) else e.protocol


def _text(name: str) -> Callable[[Event], str]:
    """A text the record's protocol computes ("" for records of other protocols)."""
    def compute(e: Event) -> str:
        texts = _TEXTS.get(type(e))
        f = None if texts is None else texts.get(name)
        return "" if f is None else f(e)
    return compute


COMPUTED: dict[str, Callable[[Event], Any]] = {
    "protocol": _protocol,
    "direction": lambda e: e.direction,
    "tcp_client": lambda e: e.from_client,
    "kind": lambda e: str(e.kind) if isinstance(e, Anomaly) else "",
    "detail_text": lambda e: e.detail if isinstance(e, Anomaly) else "",
    "function_name": _text("function_name"),
    "table": _text("table"),
    "value_text": _text("value_text"),
    "diag_name": lambda e: modbus.DIAG_NAMES.get(getattr(e, "subfunction", -1) or 0,
                                                 f"sub-function {getattr(e, 'subfunction', '?')}"),
    "umas_hex": lambda e: hex_code(getattr(e, "umas_function", None)),
    "block": _text("block"),
    "pi_name": lambda e: s7comm.PI_NAMES.get(getattr(e, "pi_service", "") or "",
                                             getattr(e, "pi_service", None) or "?"),
    "items_text": _text("items_text"),
    "item_count": lambda e: len(getattr(e, "items", ())),
    "szl_hex": lambda e: hex_code(getattr(e, "szl_id", None), 4),
    "userdata_name": _text("userdata_name"),
    "objects_text": _text("objects_text"),
    "reason": _text("reason"),
    "integrity_text": lambda e: " (integrity-protected V3 session)"
    if getattr(e, "integrity", False) else "",
}
KNOWN_ATTRIBUTES = frozenset(
    name
    for cls in (*(r.event for r in RECORDS.values()), Anomaly)
    for name in cls.__dataclass_fields__
) | {"objects.group", "objects.variation", "objects.qualifier", "request.function_code",
     "request.subfunction", "request.group", "items.area", "items.db"}


#: fields that need the detector's context: the flow's history, roles, the baseline
CONTEXT_FIELDS = frozenset({"request_index", "source_role", "destination_role",
                            "baseline_state", "function_learned"})


def known_field(name: str) -> bool:
    return name in COMPUTED or name in KNOWN_ATTRIBUTES or name in CONTEXT_FIELDS


_TEMPLATE = re.compile(r"\{([a-z_.]+)\}")


def template_fields(template: str) -> list[str]:
    return _TEMPLATE.findall(template)


def render(template: str, event: Event) -> str:
    """Fill ``{field}`` placeholders; ``{details}`` is left for the alert to fill."""
    if "{" not in template:
        return template

    def field(m: Any) -> str:
        name = m.group(1)
        if name == "details":
            return "{details}"
        value = resolve(event, name)
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return "?" if value is None else str(value)

    return _TEMPLATE.sub(field, template)


def resolve(event: Event, name: str) -> Any:
    """The value of a field for this event (None when the event has no such field)."""
    compute = COMPUTED.get(name)
    if compute is not None:
        return compute(event)
    if "." not in name:
        return getattr(event, name, None)
    head, rest = name.split(".", 1)
    value = getattr(event, head, None)
    if isinstance(value, tuple | list):
        return [getattr(v, rest, None) for v in value]
    return None if value is None else resolve(value, rest)


def reason_text(key: str) -> str:
    """Words for the core's short refusal keys ("modbus:2", "s7:129:4", "dnp3:1")."""
    kind, _, rest = key.partition(":")
    numbers = [int(x) for x in rest.split(":") if x.isdigit()]
    if kind == "modbus" and numbers:
        return modbus.refusal(numbers[0])
    if kind == "dnp3" and numbers:
        return dnp3.refusal(numbers[0])
    if kind == "s7" and len(numbers) == 2:
        return s7comm.refusal(numbers[0], numbers[1])
    if kind == "s7rc" and numbers:
        return s7comm.item_refusal(numbers[0])
    return key
