"""The former Python writer of events.ndjson lines (the core writes them now)."""

from __future__ import annotations

from typing import Any

import orjson

from otsec.events import Anomaly, Event
from otsec.protocols.modbus import ModbusPdu
from otsec.protocols.modbus import document as modbus_fields
from otsec.sinks.documents import ECS_VERSION, PROTOCOL_FIELDS, flow_context
from otsec.timefmt import iso


def _base(event: Event, dataset: str) -> dict[str, Any]:
    flow = event.flow
    network, a, b, _ = flow_context(flow)
    sender = flow.sender(event.from_client)
    src, dst = (a, b) if sender == 0 else (b, a)
    return {
        "@timestamp": iso(event.ts),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "event", "category": ["network"], "type": ["protocol"],
                  "dataset": dataset, "module": "otsec"},
        "network": network,
        "source": src,
        "destination": dst,
    }


def pdu_document(event: Event) -> dict[str, Any]:
    """One line of events.ndjson."""
    proto = event.protocol
    doc = _base(event, f"otsec.{proto}")
    doc["network"] = dict(doc["network"], protocol=proto)
    doc["otsec"] = {"direction": event.direction, proto: PROTOCOL_FIELDS[type(event)](event)}
    return doc


_HEAD = '{"@timestamp":"'


def pdu_line(event: Event) -> bytes:
    """``orjson.dumps(pdu_document(event))``, fast: the parts that only depend on the
    flow and direction are serialised once per flow and reused for every PDU."""
    flow = event.flow
    ctx = flow.context or flow_context(flow)
    templates = ctx[3]
    idx = (event.protocol, event.from_client, event.direction)
    mid = templates.get(idx)
    if mid is None:
        doc = pdu_document(event)
        doc["otsec"][event.protocol] = None
        text = orjson.dumps(doc).decode()
        mid = templates[idx] = text[len(_HEAD) + len(doc["@timestamp"]) : -len("null}}")]
    if type(event) is ModbusPdu:
        fields = modbus_json(event)
    else:
        fields = orjson.dumps(PROTOCOL_FIELDS[type(event)](event)).decode()
    return f"{_HEAD}{iso(event.ts)}{mid}{fields}}}}}".encode()


def modbus_json(p: ModbusPdu) -> str:
    """``orjson.dumps(modbus_fields(p))`` for the common all-integer PDUs, by formatting."""
    if p.device_id or p.anomalies or p.server_id is not None:
        return orjson.dumps(modbus_fields(p)).decode()
    s = (f'{{"transaction_id":{p.transaction_id},"unit_id":{p.unit_id},'
         f'"function_code":{p.function_code}')
    if p.exception_code is not None:
        s += f',"exception_code":{p.exception_code}'
    if p.subfunction is not None:
        s += f',"subfunction":{p.subfunction}'
    if p.mei_type is not None:
        s += f',"mei_type":{p.mei_type}'
    if p.address is not None:
        s += f',"address":{p.address}'
    if p.quantity is not None:
        s += f',"quantity":{p.quantity}'
    if p.value is not None:
        s += f',"value":{p.value}'
    if p.write_address is not None:
        wq = "null" if p.write_quantity is None else p.write_quantity
        s += f',"write_address":{p.write_address},"write_quantity":{wq}'
    if p.umas_function is not None:
        s += f',"umas_function":{p.umas_function}'
    req = p.request
    if req is not None and req.address is not None:
        q = "null" if req.quantity is None else req.quantity
        s += f',"request":{{"address":{req.address},"quantity":{q}}}'
    return s + "}"


def anomaly_document(event: Anomaly) -> dict[str, Any]:
    """One line of anomalies.ndjson: a parse anomaly with where it happened."""
    proto = event.protocol_name
    doc = _base(event, f"otsec.{proto}")
    doc["event"] = dict(doc["event"], type=["protocol", "error"], action=f"{proto}-{event.kind}")
    doc["network"] = dict(doc["network"], protocol=proto)
    doc["otsec"] = {
        "direction": event.direction,
        "anomaly": {"protocol": proto, "kind": str(event.kind), "detail": event.detail},
    }
    return doc


