"""What one PDU does (the function, whether it writes or commands, what it touched), as
the compiled core decided when it parsed it, and the names of functions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from otsec.events import Event
from otsec.protocols import dnp3, modbus, s7comm

S7_AREAS = {0x81: "I", 0x82: "Q", 0x83: "M", 0x84: "DB", 0x85: "DI", 0x1C: "C", 0x1D: "T",
            0x80: "P"}  # fmt: skip
USERDATA_BASE = 0x1000  # S7 userdata functions are 0x1000 + group * 0x100 + sub-function


@dataclass(slots=True)
class Use:
    code: int
    name: str
    writes: bool = False
    command: bool = False  # changes the device or process: writes, controls, programming
    unit: int | None = None  # Modbus unit id, DNP3 outstation address
    ranges: tuple[tuple[str, int, int], ...] = ()  # (table, start, count)
    groups: tuple[int, ...] = ()  # DNP3 object groups a request names


def describe(event: Event) -> Use | None:
    """What the PDU does, as the core decided when it parsed it (None: an anomaly, or a
    PDU that uses no function)."""
    return event.meaning


@lru_cache(maxsize=4096)
def function_name(protocol: str, code: int) -> str:
    """The name of a function code as the graph shows it (see ``Use.code``)."""
    if protocol == "modbus":
        return modbus.FUNCTION_NAMES.get(code & 0x7F, f"function {code & 0x7F}")
    if protocol == "s7comm":
        if code >= USERDATA_BASE:
            group, sub = (code - USERDATA_BASE) >> 8, code & 0xFF
            return f"{s7comm.GROUP_NAMES.get(group, 'group ' + str(group))}/{sub}"
        return s7comm.FUNCTION_NAMES.get(code, f"0x{code:02x}")
    if protocol == "s7comm_plus":
        return s7comm.PLUS_FUNCTIONS.get(code, f"0x{code:04x}")
    if protocol == "dnp3":
        return dnp3.FUNCTION_NAMES.get(code, f"function {code}")
    return str(code)
