"""The bridge to the compiled core (``otsec._core``): what crosses into Python, typed.

The core reads, decodes, reassembles, dissects, writes the PDU lines and counts hosts and
edges. What it hands over are *facts*: records the policy must read (typed events below,
each with a ``FlowView`` of its connection), ARP claims, and snapshots of its aggregates
turned into the inventory's ``HostRecord`` and the graph's ``Edge``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from otsec import _core
from otsec.events import Anomaly, Event
from otsec.graph.edges import Edge
from otsec.graph.functions import Use, function_name
from otsec.inventory.assets import HostRecord
from otsec.process import ValueDeviation
from otsec.protocols import RECORDS
from otsec.protocols.dnp3 import Dnp3Pdu
from otsec.protocols.modbus import ModbusPdu
from otsec.protocols.s7comm import S7Pdu

CaptureError = _core.CaptureError
TRANSPORT_NAMES = {6: "tcp", 17: "udp"}


class FlowView:
    """The fields of a connection that documents and policy read (the core owns the flow)."""

    __slots__ = ("client", "community_id", "context", "id", "ip_texts", "mac_texts", "ports",
                 "proto", "protocol", "vlan")

    def __init__(self, flow_id: int) -> None:
        self.id = flow_id
        self.context: Any = None  # document fields, built by sinks on demand

    def update(self, view: tuple[Any, ...]) -> None:
        (self.ip_texts, self.ports, self.proto, self.mac_texts, self.vlan, self.client,
         self.protocol, self.community_id) = view
        self.context = None

    @property
    def transport(self) -> str:
        return TRANSPORT_NAMES.get(self.proto, str(self.proto))

    @property
    def client_side(self) -> int:
        """The client side, guessing the lower-port side is the server when unknown."""
        if self.client is not None:
            return self.client
        return 0 if self.ports[0] >= self.ports[1] else 1

    def sender(self, from_client: bool) -> int:
        client = self.client_side
        return client if from_client else 1 - client

    def mac_text(self, side: int) -> str | None:
        return self.mac_texts[side]


#: record protocol -> (event type, its anomaly names, what else its fields need)
TYPES: dict[str, tuple[type, type, Any]] = {
    name: (r.event, r.anomalies, r.fix) for name, r in RECORDS.items()
}


class Facts:
    """Turns the core's fact tuples into typed events; keeps flows and open requests."""

    def __init__(self, max_requests: int = 50_000) -> None:
        self.flows: dict[int, FlowView] = {}
        self.requests: dict[tuple[int, int], Event] = {}  # (flow, txn) -> crossed request
        self.max_requests = max_requests
        self.hits: list[tuple[int, int, int]] = []
        self.request_index = 0
        self.rate: int | None = None
        self.values: list[ValueDeviation] = []  # written values the baseline did not see

    def event(self, fact: tuple[Any, ...]) -> Event:
        """The typed record of a fact; its hits, request index, rate (requests in the
        window when over the learned rate) and unlearned written values are left in
        ``hits``, ``request_index``, ``rate``, ``values``."""
        kind, flow_id, view, ts, frame, from_client, fields, txn, req, hits, extra = fact
        self.hits, (self.request_index, self.rate, meaning, self.values) = hits, extra
        flow = self.flows.get(flow_id)
        if flow is None:
            flow = self.flows[flow_id] = FlowView(flow_id)
        if view is not None:
            flow.update(view)
        if kind == "anomaly":
            fields["kind"] = TYPES[fields["protocol_name"]][1](fields["kind"])
            ev: Event = Anomaly(from_client=from_client, **fields)
        else:
            cls, anomalies, fix = TYPES[kind]
            if "anomalies" in fields:
                fields["anomalies"] = tuple(anomalies(a) for a in fields["anomalies"])
            if fix is not None:
                fix(fields)
            ev = cls(from_client=from_client, **fields)
            if txn:
                if len(self.requests) >= self.max_requests:
                    self.requests.pop(next(iter(self.requests)))
                self.requests[(flow_id, txn)] = ev
            if req is not None:
                ev.request = self._request(cls, flow_id, from_client, req)  # type: ignore[attr-defined]
        ev.ts, ev.frame, ev.flow = ts, frame, flow
        if meaning is not None:
            code, writes, command, unit, ranges, groups = meaning
            ev.meaning = Use(code, function_name(kind, code), writes, command, unit,
                             tuple(ranges), tuple(groups))
        return ev

    def _request(self, cls: type, flow_id: int, from_client: bool,
                 req: dict[str, Any]) -> Event:
        """The request a response answers: the one that crossed, or what the core kept."""
        accepted = req.pop("accepted")
        crossed = self.requests.pop((flow_id, req.pop("txn")), None)
        if crossed is None:
            crossed = _stub(cls, not from_client, req)
        crossed.accepted = accepted  # type: ignore[attr-defined]
        return crossed

    def view(self, fact: tuple[Any, ...]) -> None:
        """A flow's MACs changed after its last record: its documents show the new ones."""
        flow = self.flows.get(fact[1])
        if flow is not None:
            flow.update(fact[2])


def _stub(cls: type, from_client: bool, req: dict[str, Any]) -> Event:
    """A request that did not cross, rebuilt from what its response carries."""
    fc = req.get("function_code")
    if cls is ModbusPdu:
        return ModbusPdu(from_client=from_client, transaction_id=0, unit_id=0,
                         function_code=fc or 0, subfunction=req.get("subfunction"),
                         address=req.get("address"), quantity=req.get("quantity"))
    if cls is S7Pdu:
        return S7Pdu(from_client=from_client, rosctr=req.get("rosctr", 1), pdu_reference=0,
                     function_code=fc, group=req.get("group"))
    return Dnp3Pdu(from_client=from_client, source_address=0, destination_address=0,
                   function_code=fc or 0, app_control=0)


def counter(pairs: Iterable[tuple[Any, int]]) -> Counter[Any]:
    """A Counter of (key, count) pairs. ``Counter(dict(pairs))`` checks its argument's type
    on every call, and a view makes thousands."""
    c: Counter[Any] = Counter()
    dict.update(c, pairs)
    return c


def host_record(row: tuple[Any, ...]) -> HostRecord:
    """One of the core's hosts as the inventory's record (the inventory adds identity)."""
    (ip, (first, last, packets, nbytes), macs, services, uses, peers, protocols, vlans,
     evidence, dnp3) = row
    return HostRecord(ip=ip, first_seen=first, last_seen=last, packets=packets, bytes=nbytes,
                      macs=counter(macs), services=set(services), uses=set(uses),
                      peers=set(peers), protocols=set(protocols), vlans=set(vlans),
                      evidence=counter(evidence), dnp3_addresses=set(dnp3))


def role_record(ip: str, row: tuple[Any, ...]) -> HostRecord:
    """What the core hands over to have a host's role decided, as the inventory's record
    (see ``Engine.set_role_source``)."""
    (first, last), services, uses, evidence = row
    return HostRecord(ip=ip, first_seen=first, last_seen=last, services=set(services),
                      uses=set(uses), evidence=counter(evidence))


def host_records(core: Any) -> dict[str, HostRecord]:
    return {row[0]: host_record(row) for row in core.hosts()}


def edges(core: Any) -> dict[tuple[str, str, str, int, str], Edge]:
    """The core's edges (keyed by IP addresses) as the graph's records."""
    out = {}
    for (key, (first, last, packets, nbytes, pdus, writes, requests), functions, units, ranges,
         objects, cadence, steady) in core.edges():
        protocol = key[4]
        e = Edge(*key, first_seen=first, last_seen=last, packets=packets, bytes=nbytes,
                 pdus=pdus, writes=writes, requests=requests,
                 functions=counter([((code, d), n) for code, d, n in functions]),
                 names={code: function_name(protocol, code) for code, _d, _n in functions},
                 unit_ids=set(units),
                 ranges={(unit, table): spans for unit, table, spans in ranges},
                 objects=set(objects),
                 cadence={code: [f, last_, n] for code, f, last_, n in cadence},
                 steady=set(steady))
        out[e.key] = e
    return out
