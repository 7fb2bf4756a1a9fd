"""What one PDU does (the function, whether it writes or commands, what it touched), as
the compiled core decided when it parsed it, and the names of functions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from otsec.events import Event
from otsec.protocols import RECORDS


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
    record = RECORDS.get(protocol)
    return str(code) if record is None else record.function_name(code)
