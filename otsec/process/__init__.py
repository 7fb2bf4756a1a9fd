"""Process values: what each device's points hold and what was written into them.

The core counts them (see core/src/values.rs); this package holds them as typed records
for the baseline, the documents and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: a written value the baseline did not see, as the core reports it: (table, address,
#: value, learned (min, max) or None, written by a host that never wrote it)
ValueDeviation = tuple[str, int, float, tuple[float, float] | None, bool]


@dataclass(slots=True)
class Point:
    """One point of a device: a Modbus register or coil, a DNP3 point of a group, an
    element of an S7 area (at its byte address). Read figures come from the answers to
    reads, written ones from write and control requests; values are numbers as on the
    wire."""

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
    #: its last values, read or written (time, value), oldest first: a sparkline's worth
    history: list[tuple[float, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """How an engineer reads it: "unit 1 holding_registers 7"."""
        return f"unit {self.unit} {self.table} {self.address}"


def number(v: float | None) -> float | int | None:
    """Whole numbers stay whole in files and messages (registers, coils, codes)."""
    return int(v) if v is not None and v.is_integer() else v


#: points listed per asset document (written ones first, then those that changed)
MAX_POINTS_PER_ASSET = 200
#: points changed but never written that cross as records (by device, unit, table,
#: address): the report lists 200; the others are counted and in the asset documents
MAX_CHANGED_POINTS = 200


@dataclass(slots=True)
class ProcessValues:
    """What the core knows of the devices' points at one moment."""

    total: int = 0
    written: int = 0
    changing: int = 0
    #: the telling points: every point written, and of those only read with changing
    #: values the first ``MAX_CHANGED_POINTS`` (by device, unit, table, address)
    points: list[Point] = field(default_factory=list)
    #: device -> its points as the asset document lists them (built by the core)
    documents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: the points written or changed (``points`` may list fewer)
    telling: int = 0

    def counts(self) -> dict[str, int]:
        return {"total": self.total, "written": self.written, "changing": self.changing}

    def documents_of(self, ips: list[str], limit: int = MAX_POINTS_PER_ASSET) -> list[dict]:
        """The point documents of an asset (all its addresses)."""
        out = [d for ip in ips for d in self.documents.get(ip, ())]
        return out[:limit]


def merged(parts: list[ProcessValues]) -> ProcessValues:
    """The process values of several capture processes (each saw its own flows)."""
    out = ProcessValues()
    for p in parts:
        out.total, out.written = out.total + p.total, out.written + p.written
        out.changing += p.changing
        out.telling += p.telling
        out.points += p.points
        for device, docs in p.documents.items():
            out.documents.setdefault(device, []).extend(docs)
    return out


def process_values(core: Any, limit: int = MAX_POINTS_PER_ASSET, constant: bool = False,
                   changed: int | None = MAX_CHANGED_POINTS) -> ProcessValues:
    """The core's process values: counts, the telling points, the asset documents' lists
    (``constant``: with the points whose value never changed; ``changed``: how many of the
    points changed but never written become records, None for all)."""
    (total, written, changing, telling), rows, documents = core.process_values(
        limit, constant, changed)
    points = []
    for device, protocol, unit, table, address, read, wrote, history in rows:
        p = Point(device, protocol, unit, table, address, history=history)
        if read is not None:
            p.reads, p.last, p.min, p.max, p.changes, p.last_read = read
        if wrote is not None:
            (p.writes, p.written, p.written_min, p.written_max, p.last_write, writers,
             p.other_writes) = wrote
            p.writers = dict(writers)
        points.append(p)
    return ProcessValues(total, written, changing, points, documents, telling)
