"""The fields a rule can match and a message can show, read from typed events.

A field name is an event attribute (``function_code``, ``unit_id``, ``rosctr``...), a
dotted path through one (``request.function_code``, ``objects.group`` gives the list of
groups), or one of the computed names below (``direction``, ``table``, ``block``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from otsec.events import Anomaly, Dnp3Pdu, Event, ModbusPdu, S7Pdu, S7PlusPdu
from otsec.protocols import dnp3, modbus, s7comm

MODBUS_TABLES = {1: "coil", 5: "coil", 15: "coil", 2: "discrete input", 4: "input register",
                 3: "holding register", 6: "holding register", 16: "holding register",
                 22: "holding register", 23: "holding register", 24: "holding register",
                 21: "file record"}  # fmt: skip
MODBUS_EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                     4: "server device failure", 5: "acknowledge", 6: "server device busy",
                     8: "memory parity error", 10: "gateway path unavailable",
                     11: "gateway target failed to respond"}  # fmt: skip
DIAG_NAMES = {0: "return query data", 1: "restart communications",
              2: "return diagnostic register", 4: "force listen-only mode",
              10: "clear counters and diagnostic register"}  # fmt: skip
PI_NAMES = {"P_PROGRAM": "start (P_PROGRAM)", "_GARB": "compress memory (_GARB)",
            "_MODU": "copy RAM to ROM (_MODU)", "_DELE": "delete block (_DELE)",
            "_INSE": "insert block (_INSE)"}  # fmt: skip
USERDATA_NAMES = {(5, 1): "set password", (5, 2): "clear password", (1, 8): "modify variable",
                  (1, 9): "force", (1, 12): "memory reset", (7, 2): "set clock",
                  (7, 4): "set clock"}  # fmt: skip


def _protocol(e: Event) -> str:
    return e.protocol_name if isinstance(e, Anomaly) else e.protocol


def _function_name(e: Event) -> str:
    if isinstance(e, ModbusPdu):
        return modbus.FUNCTION_NAMES.get(e.code, f"function {e.code}")
    if isinstance(e, S7Pdu):
        return s7comm.FUNCTION_NAMES.get(e.function_code or -1, str(e.function_code))
    if isinstance(e, S7PlusPdu):
        return s7comm.PLUS_FUNCTIONS.get(e.function_code or -1, str(e.function_code))
    if isinstance(e, Dnp3Pdu):
        return dnp3.FUNCTION_NAMES.get(e.function_code, f"function {e.function_code}")
    return ""


def _table(e: Event) -> str:
    if not isinstance(e, ModbusPdu):
        return ""
    table = MODBUS_TABLES.get(e.code, "register")
    return table if (e.quantity or 1) == 1 else f"{e.quantity} {table}s"


def _value(e: Event) -> str:
    if not isinstance(e, ModbusPdu) or e.value is None:
        return ""
    if e.function_code == 5:
        return " = ON" if e.value == 0xFF00 else " = OFF" if e.value == 0 else ""
    return f" = {e.value}" if e.function_code == 6 else ""


def _block(e: Event) -> str:
    if not isinstance(e, S7Pdu) or e.block_type is None:
        return ""
    return f"{e.block_type}{'' if e.block_number is None else e.block_number}"


def _items(e: Event) -> str:
    if not isinstance(e, S7Pdu):
        return ""
    parts = []
    for i in e.items[:4]:
        area = s7comm.AREAS.get(i.area, f"area 0x{i.area:02x}")
        parts.append(f"DB{i.db}.DBX{i.byte}.{i.bit}" if i.area == 0x84
                     else f"{area}{i.byte}.{i.bit}")
    more = f" and {len(e.items) - 4} more" if len(e.items) > 4 else ""
    return ", ".join(parts) + more


def _objects(e: Event) -> str:
    if not isinstance(e, Dnp3Pdu) or not e.objects:
        return ""
    return " on " + ", ".join(f"g{o.group}v{o.variation}" for o in e.objects[:4])


def _userdata_name(e: Event) -> str:
    if not isinstance(e, S7Pdu):
        return ""
    return USERDATA_NAMES.get((e.group or -1, e.subfunction or -1), f"{e.group}/{e.subfunction}")


def _hex(value: int | None, width: int = 2) -> str:
    return "?" if value is None else f"0x{value:0{width}x}"


def _reason(e: Event) -> str:
    if isinstance(e, ModbusPdu) and e.exception_code is not None:
        return MODBUS_EXCEPTIONS.get(e.exception_code, f"exception {e.exception_code}")
    if isinstance(e, Dnp3Pdu):
        iin = e.iin or 0
        return ", ".join(n for b, n in ((1, "function not supported"), (2, "object unknown"),
                                        (4, "parameter error")) if iin & b)
    if isinstance(e, S7Pdu):
        if e.error_class or e.error_code:
            return f"error class {_hex(e.error_class)} code {_hex(e.error_code)}"
        bad = [rc for rc in e.return_codes if rc != 0xFF]
        return f"return code {_hex(bad[0])}" if bad else ""
    return ""


COMPUTED: dict[str, Callable[[Event], Any]] = {
    "protocol": _protocol,
    "direction": lambda e: e.direction,
    "tcp_client": lambda e: e.from_client,
    "kind": lambda e: str(e.kind) if isinstance(e, Anomaly) else "",
    "detail_text": lambda e: e.detail if isinstance(e, Anomaly) else "",
    "function_name": _function_name,
    "table": _table,
    "value_text": _value,
    "diag_name": lambda e: DIAG_NAMES.get(getattr(e, "subfunction", -1) or 0,
                                          f"sub-function {getattr(e, 'subfunction', '?')}"),
    "umas_hex": lambda e: _hex(getattr(e, "umas_function", None)),
    "block": _block,
    "pi_name": lambda e: PI_NAMES.get(getattr(e, "pi_service", "") or "",
                                      getattr(e, "pi_service", None) or "?"),
    "items_text": _items,
    "item_count": lambda e: len(getattr(e, "items", ())),
    "szl_hex": lambda e: _hex(getattr(e, "szl_id", None), 4),
    "userdata_name": _userdata_name,
    "objects_text": _objects,
    "reason": _reason,
    "integrity_text": lambda e: " (integrity-protected V3 session)"
    if getattr(e, "integrity", False) else "",
}
KNOWN_ATTRIBUTES = frozenset(
    name
    for cls in (ModbusPdu, S7Pdu, S7PlusPdu, Dnp3Pdu, Anomaly)
    for name in cls.__dataclass_fields__  # type: ignore[attr-defined]
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
        return MODBUS_EXCEPTIONS.get(numbers[0], f"exception {numbers[0]}")
    if kind == "dnp3" and numbers:
        return ", ".join(n for b, n in ((1, "function not supported"), (2, "object unknown"),
                                        (4, "parameter error")) if numbers[0] & b)
    if kind == "s7" and len(numbers) == 2:
        return f"error class {_hex(numbers[0])} code {_hex(numbers[1])}"
    if kind == "s7rc" and numbers:
        return f"return code {_hex(numbers[0])}"
    return key
