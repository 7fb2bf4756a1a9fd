"""Process values: what each device's points hold and what was written into them.

The core counts them (see core/src/values.rs); this package holds them as typed records
for the baseline, the documents and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Point:
    """One point of a device (a Modbus register or coil, a DNP3 output point). Read
    figures come from the answers to reads, written ones from write and control requests;
    values are numbers as on the wire."""

    device: str
    protocol: str
    unit: int
    table: str
    address: int
    reads: int = 0
    last: float | None = None
    min: float | None = None
    max: float | None = None
    changes: int = 0
    last_read: float | None = None
    writes: int = 0
    written: float | None = None  # the last value written
    written_min: float | None = None
    written_max: float | None = None
    last_write: float | None = None
    writers: dict[str, int] = field(default_factory=dict)
    other_writes: int = 0  # by writers beyond those listed

    @property
    def name(self) -> str:
        """How an engineer reads it: "unit 1 holding_registers 7"."""
        return f"unit {self.unit} {self.table} {self.address}"


def number(v: float | None) -> float | int | None:
    """Whole numbers stay whole in files and messages (registers, coils, codes)."""
    return int(v) if v is not None and v.is_integer() else v


#: points listed per asset document (written ones first, then those that changed)
MAX_POINTS_PER_ASSET = 200


def point_document(p: Point) -> dict[str, Any]:
    """A point as the asset document lists it (fields without a value left out)."""
    doc: dict[str, Any] = {"protocol": p.protocol, "unit": p.unit, "table": p.table,
                           "address": p.address}
    if p.reads:
        doc.update(reads=p.reads, last=number(p.last), min=number(p.min), max=number(p.max),
                   changes=p.changes)
    if p.writes:
        doc.update(writes=p.writes, written=number(p.written),
                   written_min=number(p.written_min), written_max=number(p.written_max),
                   writers=sorted(p.writers))
    return doc


def by_device(points: list[Point], limit: int = MAX_POINTS_PER_ASSET) -> dict[str, list[Point]]:
    """Each device's points, the telling ones first: written, then changing, then the rest
    (in address order within each), at most ``limit``."""
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(p.device, []).append(p)
    for ps in out.values():
        ps.sort(key=lambda p: (not p.writes, not p.changes))
        del ps[limit:]
    return out


def points(core: Any) -> list[Point]:
    """The core's points, in (device, protocol, unit, table, address) order."""
    out = []
    for device, protocol, unit, table, address, read, written in core.values():
        p = Point(device, protocol, unit, table, address)
        if read is not None:
            p.reads, p.last, p.min, p.max, p.changes, p.last_read = read
        if written is not None:
            (p.writes, p.written, p.written_min, p.written_max, p.last_write, writers,
             p.other_writes) = written
            p.writers = dict(writers)
        out.append(p)
    return out
