"""The learned baseline: who talks to whom, with which functions, how often.

Plain data with a version number, saved as sorted, indented JSON (diffable in review)
through write-temp-fsync-rename. Keys are IP addresses, so the same file works for an
offline audit and a live sensor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from otsec.atomic import write_json_atomic

VERSION = 1
MAX_RANGES = 64
STARTUP = 8  # the first requests of a connection (the core's aggregate.rs says the same)


class BaselineError(Exception):
    """The baseline file is missing, unreadable or not a baseline (a user error)."""


@dataclass(slots=True)
class AssetEntry:
    macs: list[str] = field(default_factory=list)
    role: str = "unknown"
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    first_seen: str | None = None
    last_seen: str | None = None


@dataclass(slots=True)
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
    startup_only: list[int] = field(default_factory=list)  # request codes only seen in the
    # start-up of connections (the first STARTUP requests): mid-session they deviate

    @property
    def key(self) -> str:
        return edge_key(self.client, self.server, self.transport, self.port, self.protocol)


@dataclass(slots=True)
class ValueEntry:
    """A point written while learning: the range of the values written, and by whom.
    Values are numbers as on the wire (registers unsigned, coils 0/1)."""

    device: str
    protocol: str
    unit: int
    table: str
    address: int
    min: float
    max: float
    writers: list[str] = field(default_factory=list)
    writes: int = 0

    @property
    def key(self) -> str:
        return value_key(self.device, self.protocol, self.unit, self.table, self.address)

    def take(self, other: ValueEntry) -> None:
        """Widen to what ``other`` learned too."""
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.writers = sorted(set(self.writers) | set(other.writers))
        self.writes += other.writes


def value_key(device: str, protocol: str, unit: int, table: str, address: int) -> str:
    return f"{device} {protocol} {unit}/{table}/{address}"


def mid_session(entry: EdgeEntry, direction: str, code: int, request_index: int | None) -> bool:
    """A function learned only in connections' start-up, used after it."""
    return (direction == "request" and request_index is not None
            and request_index > STARTUP and code in entry.startup_only)


def edge_key(client: str, server: str, transport: str, port: int, protocol: str) -> str:
    return f"{client} -> {server} {transport}/{port} {protocol}"


@dataclass
class Baseline:
    assets: dict[str, AssetEntry] = field(default_factory=dict)  # by IP
    edges: dict[str, EdgeEntry] = field(default_factory=dict)  # by edge_key
    values: dict[str, ValueEntry] = field(default_factory=dict)  # written points, by value_key
    sources: list[str] = field(default_factory=list)  # captures it was learned from
    version: int = VERSION

    # -- queries used while protecting ----------------------------------------------

    def edge(self, key: str) -> EdgeEntry | None:
        return self.edges.get(key)

    def knows_function(self, key: str, direction: str, code: int,
                       request_index: int | None = None) -> bool:
        """Learned on this path (a start-up function only while a connection starts)."""
        entry = self.edges.get(key)
        if entry is None or code not in entry.functions.get(direction, ()):
            return False
        return not mid_session(entry, direction, code, request_index)

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
            # start-up only: what neither side saw past a connection's start-up
            steady = ((set(mine_e.functions.get("request", [])) - set(mine_e.startup_only))
                      | (set(e.functions.get("request", [])) - set(e.startup_only)))
            mine_e.startup_only = sorted((set(mine_e.startup_only) | set(e.startup_only))
                                         - steady)
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
        for key, v in other.values.items():
            mine_v = self.values.get(key)
            if mine_v is None:
                self.values[key] = v
            else:
                mine_v.take(v)
        self.sources = sorted(set(self.sources) | set(other.sources))

    # -- files ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "sources": sorted(self.sources),
            "assets": {ip: asdict(a) for ip, a in sorted(self.assets.items())},
            "edges": {k: _edge_json(e) for k, e in sorted(self.edges.items())},
            "values": {k: asdict(v) for k, v in sorted(self.values.items())},
        }

    def save(self, path: Path) -> None:
        """The same file as ``to_json`` gives, without its deep copies (orjson sorts the
        keys)."""
        for e in self.edges.values():
            e.functions = {k: sorted(v) for k, v in e.functions.items()}
        write_json_atomic(path, {"version": self.version, "sources": sorted(self.sources),
                                 "assets": _plain(self.assets), "edges": _plain(self.edges),
                                 "values": _plain(self.values)})

    @classmethod
    def load(cls, path: Path, read: Callable[[Path], bytes] | None = None) -> Baseline:
        """``read``: how to get the bytes (a sensor started as root follows no one's link)."""
        try:
            data = _stream((read or Path.read_bytes)(Path(path)).decode("utf-8"), str(path))
        except FileNotFoundError:
            raise BaselineError(f"{path}: no such baseline file") from None
        except OSError as exc:
            raise BaselineError(f"{path}: not a readable baseline ({exc.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BaselineError(f"{path}: not a readable baseline ({exc})") from None
        except RecursionError:
            raise BaselineError(f"{path}: not a baseline (nested too deeply)") from None
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data: Any, where: str = "baseline") -> Baseline:
        """A baseline from its JSON, every field's type checked first (a wrong one is a
        user error naming the entry, never a failure half way through a run)."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise BaselineError(f"{where}: not an otsec baseline of version {VERSION}")
        for name, kind in (("assets", dict), ("edges", dict), ("values", dict),
                           ("sources", list)):
            if not isinstance(data.get(name, kind()), kind):
                raise BaselineError(f"{where}: '{name}' must be a {_NAMES[kind]}")
        if not all(isinstance(x, str) for x in data.get("sources", [])):
            raise BaselineError(f"{where}: 'sources' is a list of texts")
        return cls(assets=_entries(data.get("assets", {}), AssetEntry, where),
                   edges=_entries(data.get("edges", {}), EdgeEntry, where),
                   values=_entries(data.get("values", {}), ValueEntry, where),
                   sources=list(data.get("sources", [])))


_NAMES = {dict: "mapping", list: "list"}


def _plain(entries: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Entries as mappings of their fields (values shared, not copied)."""
    if not entries:
        return {}
    names = [f.name for f in fields(next(iter(entries.values())))]
    return {k: {n: getattr(e, n) for n in names} for k, e in entries.items()}


_SPACE = re.compile(r"[ \t\n\r]*")
_SECTIONS = ("assets", "edges", "values")


class _Entries(dict):  # type: ignore[type-arg]
    """A section's entries, already built (``from_json`` takes them as they are)."""


def _stream(text: str, where: str) -> Any:
    """The baseline's top-level mapping, its sections parsed entry by entry: each entry is
    checked and built as it is read, so the file is never held as one parsed tree (a
    300 MB baseline would be several GB of it). Anything not laid out as otsec writes it
    is parsed whole, as before."""
    decode = json.JSONDecoder().raw_decode
    pos = _skip(text, 0)
    if not text.startswith("{", pos):
        return json.loads(text)
    top: dict[str, Any] = {}
    pos = _skip(text, pos + 1)
    while not text.startswith("}", pos):
        key, pos = _key(text, pos, decode)
        if key in _SECTIONS and text.startswith("{", pos):
            top[key], pos = _section(text, pos, decode, key, where)
        else:
            top[key], pos = decode(text, pos)
        pos = _next(text, pos)
    if _skip(text, pos + 1) != len(text):
        raise json.JSONDecodeError("extra data", text, pos + 1)
    return top


def _section(text: str, pos: int, decode: Any, name: str, where: str
             ) -> tuple[_Entries, int]:
    kind, fields_, required = _KINDS[name]
    out = _Entries()
    pos = _skip(text, pos + 1)
    while not text.startswith("}", pos):
        key, pos = _key(text, pos, decode)
        entry, pos = decode(text, pos)
        _check(entry, fields_, f"{where}: {name}[{key!r}]", required)
        out[key] = kind(**entry)
        pos = _next(text, pos)
    return out, pos + 1


def _skip(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()  # type: ignore[union-attr]


def _key(text: str, pos: int, decode: Any) -> tuple[str, int]:
    """A member's key, and where its value starts."""
    key, pos = decode(text, pos)
    pos = _skip(text, pos)
    if not text.startswith(":", pos):
        raise json.JSONDecodeError("expected ':'", text, pos)
    return key, _skip(text, pos + 1)


def _next(text: str, pos: int) -> int:
    """After a member's value: where the next key starts, or the closing brace."""
    pos = _skip(text, pos)
    if text.startswith(",", pos):
        return _skip(text, pos + 1)
    if not text.startswith("}", pos):
        raise json.JSONDecodeError("expected ',' or '}'", text, pos)
    return pos


def _entries(raw: dict[str, Any], kind: type, where: str) -> dict[str, Any]:
    """Checked entries of one section (built already when streamed); each parsed mapping
    is let go as its entry is built, so a baseline is not held twice."""
    if isinstance(raw, _Entries):
        return dict(raw)
    name = {AssetEntry: "assets", EdgeEntry: "edges", ValueEntry: "values"}[kind]
    _kind, fields_, required = _KINDS[name]
    for key, entry in raw.items():
        _check(entry, fields_, f"{where}: {name}[{key!r}]", required)
    out = {}
    while raw:
        key, entry = raw.popitem()
        out[key] = kind(**entry)
    return dict(reversed(out.items()))


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return _int(v) or isinstance(v, float)


def _ints(v: Any) -> bool:
    return isinstance(v, list) and all(map(_int, v))


def _optional(check: Any) -> Any:
    return lambda v: v is None or check(v)


def _spans(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(spans, list) and all(_ints(s) and len(s) == 2 for s in spans)
        for spans in v.values())


ASSET_FIELDS = {
    "macs": (lambda v: isinstance(v, list) and all(map(_text, v)), "a list of texts"),
    "role": (_text, "a text"),
    **{name: (_optional(_text), "a text or null")
       for name in ("manufacturer", "model", "firmware", "first_seen", "last_seen")},
}
EDGE_FIELDS = {
    **{name: (_text, "a text") for name in ("client", "server", "transport", "protocol")},
    "port": (_int, "a whole number"),
    "functions": (lambda v: isinstance(v, dict) and all(map(_ints, v.values())),
                  "a mapping of direction to function codes"),
    "units": (_ints, "a list of whole numbers"),
    "objects": (_ints, "a list of whole numbers"),
    "ranges": (_spans, "a mapping of 'unit/table' to [start, end] spans"),
    "writes": (lambda v: isinstance(v, bool), "true or false"),
    "rate": (_number, "a number"),
    "period": (_optional(_number), "a number or null"),
    "requests": (_int, "a whole number"),
    "startup_only": (_ints, "a list of whole numbers"),
}
REQUIRED_EDGE = ("client", "server", "transport", "port", "protocol")
VALUE_FIELDS = {
    **{name: (_text, "a text") for name in ("device", "protocol", "table")},
    "unit": (_int, "a whole number"),
    "address": (_int, "a whole number"),
    "min": (_number, "a number"),
    "max": (_number, "a number"),
    "writers": (lambda v: isinstance(v, list) and all(map(_text, v)), "a list of texts"),
    "writes": (_int, "a whole number"),
}
REQUIRED_VALUE = ("device", "protocol", "unit", "table", "address", "min", "max")
_KINDS: dict[str, tuple[type, dict[str, tuple[Any, str]], tuple[str, ...]]] = {
    "assets": (AssetEntry, ASSET_FIELDS, ()),
    "edges": (EdgeEntry, EDGE_FIELDS, REQUIRED_EDGE),
    "values": (ValueEntry, VALUE_FIELDS, REQUIRED_VALUE),
}


def _check(entry: Any, fields: dict[str, tuple[Any, str]], where: str,
           required: tuple[str, ...] = ()) -> None:
    if not isinstance(entry, dict):
        raise BaselineError(f"{where}: must be a mapping")
    for name, value in entry.items():
        if name not in fields:
            raise BaselineError(f"{where}: unknown field {name!r}")
        check, expected = fields[name]
        if not check(value):
            raise BaselineError(f"{where}.{name}: must be {expected}")
    missing = [n for n in required if n not in entry]
    if missing:
        raise BaselineError(f"{where}: missing {', '.join(missing)}")


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
    if len(out) <= MAX_RANGES:
        return out
    # close the smallest gaps (the leftmost first on ties) in one sweep: closing one never
    # changes the others, so this equals closing them one at a time, in n log n
    gaps = sorted(range(len(out) - 1), key=lambda i: (out[i + 1][0] - out[i][1], i))
    closed = set(gaps[: len(out) - MAX_RANGES])
    merged = [out[0]]
    for i in range(1, len(out)):
        if i - 1 in closed:
            merged[-1] = [merged[-1][0], max(merged[-1][1], out[i][1])]
        else:
            merged.append(out[i])
    return merged
