"""The learned baseline: who talks to whom, with which functions, how often.

Plain data with a version number, saved as sorted, indented JSON (diffable in review)
through write-temp-fsync-rename. Keys are IP addresses, so the same file works for an
offline audit and a live sensor.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from otsec.atomic import write_json_atomic

VERSION = 1
MAX_RANGES = 64


class BaselineError(Exception):
    """The baseline file is missing, unreadable or not a baseline (a user error)."""


@dataclass
class AssetEntry:
    macs: list[str] = field(default_factory=list)
    role: str = "unknown"
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    first_seen: str | None = None
    last_seen: str | None = None


@dataclass
class EdgeEntry:
    """One learned edge: ``functions`` maps direction -> sorted function codes."""

    client: str
    server: str
    transport: str
    port: int
    protocol: str
    functions: dict[str, list[int]] = field(default_factory=dict)
    units: list[int] = field(default_factory=list)  # Modbus unit ids / DNP3 outstations
    objects: list[int] = field(default_factory=list)  # DNP3 object groups requested
    ranges: dict[str, list[list[int]]] = field(default_factory=dict)  # "unit/table" -> spans
    writes: bool = False
    rate: float = 0.0  # requests per second while active
    period: float | None = None  # cycle of the most regular polled function, seconds
    requests: int = 0

    @property
    def key(self) -> str:
        return edge_key(self.client, self.server, self.transport, self.port, self.protocol)


def edge_key(client: str, server: str, transport: str, port: int, protocol: str) -> str:
    return f"{client} -> {server} {transport}/{port} {protocol}"


@dataclass
class Baseline:
    assets: dict[str, AssetEntry] = field(default_factory=dict)  # by IP
    edges: dict[str, EdgeEntry] = field(default_factory=dict)  # by edge_key
    sources: list[str] = field(default_factory=list)  # captures it was learned from
    version: int = VERSION

    # -- queries used while protecting ----------------------------------------------

    def edge(self, key: str) -> EdgeEntry | None:
        return self.edges.get(key)

    def knows_function(self, key: str, direction: str, code: int) -> bool:
        entry = self.edges.get(key)
        return entry is not None and code in entry.functions.get(direction, ())

    def covers(self, key: str, unit: int, table: str, start: int, count: int) -> bool:
        entry = self.edges.get(key)
        if entry is None:
            return False
        end = start + max(count, 1) - 1
        return any(a <= start and end <= b for a, b in entry.ranges.get(f"{unit}/{table}", ()))

    # -- merging --------------------------------------------------------------------

    def merge(self, other: Baseline) -> None:
        """Fold another baseline in: a union of what either has seen."""
        for ip, a in other.assets.items():
            mine = self.assets.get(ip)
            if mine is None:
                self.assets[ip] = a
                continue
            mine.macs = sorted(set(mine.macs) | set(a.macs))
            for name in ("manufacturer", "model", "firmware"):
                if getattr(a, name):
                    setattr(mine, name, getattr(a, name))
            if a.role != "unknown":
                mine.role = a.role
            mine.first_seen = min(filter(None, (mine.first_seen, a.first_seen)), default=None)
            mine.last_seen = max(filter(None, (mine.last_seen, a.last_seen)), default=None)
        for key, e in other.edges.items():
            mine_e = self.edges.get(key)
            if mine_e is None:
                self.edges[key] = e
                continue
            for direction, codes in e.functions.items():
                mine_e.functions[direction] = sorted(set(mine_e.functions.get(direction, []))
                                                     | set(codes))
            mine_e.units = sorted(set(mine_e.units) | set(e.units))
            mine_e.objects = sorted(set(mine_e.objects) | set(e.objects))
            for table, spans in e.ranges.items():
                mine_e.ranges[table] = merge_spans(mine_e.ranges.get(table, []) + spans)
            mine_e.writes = mine_e.writes or e.writes
            mine_e.rate = max(mine_e.rate, e.rate)
            periods = [p for p in (mine_e.period, e.period) if p]
            mine_e.period = min(periods) if periods else None
            mine_e.requests += e.requests
        self.sources = sorted(set(self.sources) | set(other.sources))

    # -- files ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "sources": sorted(self.sources),
            "assets": {ip: asdict(a) for ip, a in sorted(self.assets.items())},
            "edges": {k: _edge_json(e) for k, e in sorted(self.edges.items())},
        }

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Baseline:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BaselineError(f"{path}: no such baseline file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BaselineError(f"{path}: not a readable baseline ({exc})") from None
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data: Any, where: str = "baseline") -> Baseline:
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise BaselineError(f"{where}: not an otsec baseline of version {VERSION}")
        try:
            assets = {ip: AssetEntry(**a) for ip, a in data.get("assets", {}).items()}
            edges = {k: EdgeEntry(**e) for k, e in data.get("edges", {}).items()}
        except TypeError as exc:
            raise BaselineError(f"{where}: malformed entry ({exc})") from None
        return cls(assets=assets, edges=edges, sources=list(data.get("sources", [])))


def _edge_json(e: EdgeEntry) -> dict[str, Any]:
    d = asdict(e)
    d["functions"] = {k: sorted(v) for k, v in sorted(e.functions.items())}
    d["ranges"] = {k: v for k, v in sorted(e.ranges.items())}
    return d


def merge_spans(spans: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    while len(out) > MAX_RANGES:
        gaps = [out[i + 1][0] - out[i][1] for i in range(len(out) - 1)]
        i = gaps.index(min(gaps))
        out[i : i + 2] = [[out[i][0], max(out[i][1], out[i + 1][1])]]
    return out
