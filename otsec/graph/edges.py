"""The communication graph: one edge per (client, server, transport, server port, protocol).

Edges carry what a baseline needs: which functions flow in each direction, unit ids,
the register ranges touched and how many writes, plus traffic volume. The compiled core
counts them; this module holds them, merges them by asset and draws them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

MAX_RANGES = 64  # intervals kept per (unit, table); closest ones merge beyond this

EdgeKey = tuple[str, str, str, int, str]


@dataclass
class Edge:
    client: str  # IP; mapped to asset ids when written
    server: str
    transport: str
    port: int
    protocol: str
    first_seen: float
    last_seen: float
    packets: int = 0
    bytes: int = 0
    pdus: int = 0
    writes: int = 0
    functions: Counter[tuple[int, str]] = field(default_factory=Counter)
    unit_ids: set[int] = field(default_factory=set)
    ranges: dict[tuple[int, str], list[list[int]]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # function code -> name
    requests: int = 0
    objects: set[int] = field(default_factory=set)  # DNP3 object groups requested
    cadence: dict[int, list[float]] = field(default_factory=dict)  # code -> [first, last, n]
    steady: set[int] = field(default_factory=set)  # requested after a connection's start-up
    _last: tuple[int, str, int, int] | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> EdgeKey:
        return (self.client, self.server, self.transport, self.port, self.protocol)

    def rekeyed(self, client: str, server: str) -> Edge:
        """The edge under other ends, sharing its counters (``dataclasses.replace`` runs
        ``__init__`` again: a view re-keys thousands of edges)."""
        edge = Edge.__new__(Edge)
        edge.__dict__.update(self.__dict__)
        edge.client, edge.server = client, server
        return edge

    def touch(self, unit: int, table: str, start: int, count: int) -> None:
        """Record a register range, merging overlapping and adjacent intervals."""
        last = (unit, table, start, count)
        if last == self._last:  # cyclic polling repeats the same request
            return
        self._last = last
        end = start + max(count, 1) - 1
        spans = self.ranges.setdefault((unit, table), [])
        for span in spans:
            if start <= span[1] + 1 and end >= span[0] - 1:
                span[0] = min(span[0], start)
                span[1] = max(span[1], end)
                break
        else:
            spans.append([start, end])
            spans.sort()
            if len(spans) > MAX_RANGES:
                gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
                i = gaps.index(min(gaps))
                spans[i : i + 2] = [[spans[i][0], max(spans[i][1], spans[i + 1][1])]]
            return
        spans.sort()
        merged: list[list[int]] = []
        for s in spans:
            if merged and s[0] <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], s[1])
            else:
                merged.append(s)
        spans[:] = merged


def edge_id(client: str, server: str, transport: str, port: int, protocol: str) -> str:
    text = f"{client}|{server}|{transport}|{port}|{protocol}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def merged_edges(edges: dict[EdgeKey, Edge], id_of: dict[str, str]) -> list[Edge]:
    """Edges re-keyed by asset id (IPs of one asset fold into one edge). The given edges are
    never changed: an edge alone on its asset pair is passed on as it is (re-keyed), and a
    copy is made only when a second one folds into it."""
    out: dict[EdgeKey, Edge] = {}
    copied: set[EdgeKey] = set()
    for e in edges.values():
        key = (id_of.get(e.client, e.client), id_of.get(e.server, e.server), e.transport,
               e.port, e.protocol)
        m = out.get(key)
        if m is None:
            out[key] = e if key == e.key else e.rekeyed(key[0], key[1])
            continue
        if key not in copied:
            copied.add(key)
            m = out[key] = _copy(m)
        m.first_seen = min(m.first_seen, e.first_seen)
        m.last_seen = max(m.last_seen, e.last_seen)
        m.packets += e.packets
        m.bytes += e.bytes
        m.pdus += e.pdus
        m.writes += e.writes
        m.functions.update(e.functions)
        m.names.update(e.names)
        m.requests += e.requests
        m.objects |= e.objects
        for code, (first, last, n) in e.cadence.items():
            c = m.cadence.setdefault(code, [first, last, 0])
            c[0], c[1], c[2] = min(c[0], first), max(c[1], last), c[2] + n
        m.unit_ids |= e.unit_ids
        m.steady |= e.steady
        for (unit, table), spans in e.ranges.items():
            for start, end in spans:
                m.touch(unit, table, start, end - start + 1)
    return sorted(out.values(), key=lambda x: x.key)


def _copy(e: Edge) -> Edge:
    return replace(e, functions=Counter(e.functions), unit_ids=set(e.unit_ids),
                   ranges={k: [list(s) for s in v] for k, v in e.ranges.items()},
                   names=dict(e.names), objects=set(e.objects),
                   cadence={c: list(v) for c, v in e.cadence.items()}, steady=set(e.steady))


def to_networkx(edges: list[Edge]) -> Any:
    """The graph as a networkx MultiDiGraph: nodes are asset ids, one arc per edge."""
    import networkx as nx  # only for those who analyse the graph further

    g = nx.MultiDiGraph()
    for e in edges:
        g.add_edge(e.client, e.server, key=edge_id(*e.key), protocol=e.protocol, port=e.port,
                   transport=e.transport, packets=e.packets, pdus=e.pdus, writes=e.writes)
    return g
