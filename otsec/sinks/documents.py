"""ECS documents: PDU events, alerts, assets and edges as the outside world reads them.

Field names follow output-schema.md; ICS detail lives under ``otsec.<protocol>``.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from otsec.core import FlowView
from otsec.detect.alerts import Alert, Notice
from otsec.detect.attack import TACTICS, TECHNIQUES, tactic_url, technique_url
from otsec.detect.catalog import RISK, Rule
from otsec.detect.incidents import Incident
from otsec.events import Anomaly
from otsec.graph.edges import Edge, edge_id
from otsec.inventory.assets import Asset
from otsec.protocols import RECORDS
from otsec.sensor import LOCAL, Sensor
from otsec.timefmt import iso

ECS_VERSION = "8.11.0"


def _endpoint(flow: FlowView, side: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"ip": flow.ip_texts[side], "port": flow.ports[side]}
    mac = flow.mac_text(side)
    if mac:
        doc["mac"] = mac
    return doc


def flow_context(flow: FlowView) -> tuple[Any, ...]:
    """(network, side-0 endpoint, side-1 endpoint, line templates), built once per flow."""
    ctx = flow.context
    if ctx is None:
        network: dict[str, Any] = {
            "transport": flow.transport,
            "community_id": flow.community_id,
        }
        if flow.vlan >= 0:
            network["vlan"] = {"id": flow.vlan}
        ctx = flow.context = (network, _endpoint(flow, 0), _endpoint(flow, 1), {})
    return ctx


#: event type -> the ``otsec.<protocol>`` object of its documents
PROTOCOL_FIELDS: dict[type, Any] = {r.event: r.document for r in RECORDS.values()}


def alert_document(
    alert: Alert, asset_of: dict[str, Asset] | None = None, baseline_state: str = "none",
    sensor: Sensor = LOCAL,
) -> dict[str, Any]:
    """The ECS alert for one aggregated alert."""
    if alert.document is not None:
        return restored_document(alert)
    rule = alert.rule
    ev = alert.event
    flow = ev.flow
    if isinstance(ev, Notice):
        src = {"ip": ev.source_ip}
        dst: dict[str, Any] = {"ip": ev.destination_ip}
        if ev.destination_port is not None:
            dst["port"] = ev.destination_port
        network: dict[str, Any] = {"transport": ev.transport} if ev.transport else {}
    else:
        network, a, b, _ = flow_context(flow)
        sender = flow.sender(ev.from_client)
        if alert.swap:
            sender = 1 - sender
        src, dst = (a, b) if sender == 0 else (b, a)
    level = rule.severity_level
    otsec: dict[str, Any] = {
        "alert": {"count": alert.count, "accepted": alert.accepted, "rejected": alert.rejected},
        "baseline": {"state": baseline_state},
    }
    if alert.approve:
        otsec["baseline"]["approve"] = alert.approve
    if type(ev) in PROTOCOL_FIELDS:
        otsec[ev.protocol] = PROTOCOL_FIELDS[type(ev)](ev)
        otsec["direction"] = ev.direction
    elif isinstance(ev, Anomaly):
        otsec["anomaly"] = {"protocol": ev.protocol_name, "kind": str(ev.kind),
                            "detail": ev.detail}
    if asset_of is not None:
        otsec["asset"] = {
            role: asset_ref(asset_of.get(ep["ip"]))
            for role, ep in (("source", src), ("destination", dst))
        }
    doc: dict[str, Any] = {
        "@timestamp": iso(alert.start),
        "ecs": {"version": ECS_VERSION},
        "message": alert.message,
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "action": rule.id.removeprefix("otsec-"),
            "severity": level,
            "risk_score": RISK[level],
            "id": sensor.alert_id(alert.id),
            "start": iso(alert.start),
            "end": iso(alert.end),
            "dataset": "otsec.alert",
            "module": "otsec",
            "outcome": alert.outcome,
        },
        **rule_fields(rule),
        "observer": sensor.observer,
        "source": src,
        "destination": dst,
        "network": dict(network, protocol=getattr(ev, "protocol", "") or
                        getattr(ev, "protocol_name", "")),
        "related": {"ip": sorted({src["ip"], dst["ip"]})},
        "tags": ["otsec", rule.protocol, rule.category, rule.severity],
        "labels": sensor.labels,
        "otsec": otsec,
    }
    return doc


def restored_document(alert: Alert) -> dict[str, Any]:
    """The document of an alert a restarted sensor took over: the one it had, with what
    changed since (counts, end, outcome, message)."""
    doc = copy.deepcopy(alert.document)
    assert doc is not None
    doc["message"] = alert.message
    doc["event"].update(end=iso(alert.end), outcome=alert.outcome)
    doc["otsec"]["alert"] = {"count": alert.count, "accepted": alert.accepted,
                             "rejected": alert.rejected}
    if alert.approve:
        doc["otsec"]["baseline"]["approve"] = alert.approve
    doc["otsec"].pop("incident", None)
    return doc


@lru_cache(maxsize=1024)
def rule_fields(rule: Rule) -> dict[str, Any]:
    """An alert's ``rule`` and ``threat`` (its ATT&CK for ICS mapping), made once per rule:
    the alerts of a rule share them (no one changes a document's parts)."""
    tactics = rule.tactics
    return {
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "description": rule.description,
            "category": rule.category,
            "ruleset": "otsec-builtin",
            "version": str(rule.version),
            "reference": rule.reference,
        },
        "threat": {
            "framework": "MITRE ATT&CK",
            "tactic": {
                "id": list(tactics),
                "name": [TACTICS[t] for t in tactics],
                "reference": [tactic_url(t) for t in tactics],
            },
            "technique": {
                "id": list(rule.techniques),
                "name": [TECHNIQUES[t][0] for t in rule.techniques],
                "reference": [technique_url(t) for t in rule.techniques],
            },
        },
    }


def sensor_alert_document(rule: Rule, sensor: Sensor, start: float, end: float, count: int,
                          message: str) -> dict[str, Any]:
    """An alert a sensor raises about itself (no network endpoints: the sensor is the
    subject, named in ``observer``)."""
    level = rule.severity_level
    key = f"{rule.id}|{sensor.site}|{sensor.name}|{iso(start)}"
    return {
        "@timestamp": iso(start),
        "ecs": {"version": ECS_VERSION},
        "message": message,
        "event": {
            "kind": "alert", "category": ["host"], "type": ["info"],
            "action": rule.id.removeprefix("otsec-"), "severity": level,
            "risk_score": RISK[level], "id": hashlib.sha256(key.encode()).hexdigest()[:32],
            "start": iso(start), "end": iso(end), "dataset": "otsec.alert", "module": "otsec",
        },
        **rule_fields(rule),
        "observer": sensor.observer,
        "tags": ["otsec", rule.category, rule.severity],
        "labels": sensor.labels,
        "otsec": {"alert": {"count": count, "accepted": 0, "rejected": 0}},
    }


def incident_document(incident: Incident, sensor: Sensor = LOCAL) -> dict[str, Any]:
    """One incident: its alerts' documents folded (the worst one gives the addresses), with
    the evidence an analyst reads first. Each alert document gets the incident's id (told
    apart per site and sensor, like an alert's: it is the incident's id in the cluster)."""
    docs = incident.alerts
    worst = incident.worst
    stable = sensor.alert_id(incident.id)
    for d in docs:
        d["otsec"]["incident"] = {"id": stable}
    level = worst["event"]["severity"]

    def union(path: tuple[str, ...]) -> list[Any]:
        """The values at ``path`` in the alerts' documents, each once, in order."""
        seen: dict[Any, None] = {}
        for d in docs:
            value: Any = d
            for k in path:
                value = value.get(k) if type(value) is dict else None
                if value is None:
                    break
            else:
                for v in value if type(value) is list else (value,):
                    if v is not None and v != {}:
                        seen[v] = None  # the first place stays
        return list(seen)

    tactics, techniques = union(("threat", "tactic", "id")), union(("threat", "technique", "id"))
    counts = [d["otsec"]["alert"] for d in docs]
    return {
        "@timestamp": iso(incident.start),
        "ecs": {"version": ECS_VERSION},
        "message": incident.message,
        "event": {
            "kind": "alert", "category": ["network", "intrusion_detection"], "type": ["info"],
            "action": "incident", "severity": level, "risk_score": RISK[level],
            "id": stable, "start": iso(incident.start), "end": iso(incident.end),
            "dataset": "otsec.incident", "module": "otsec",
        },
        "rule": {"id": union(("rule", "id")), "name": union(("rule", "name")),
                 "category": union(("rule", "category")), "ruleset": "otsec-builtin"},
        "threat": {
            "framework": "MITRE ATT&CK",
            "tactic": {"id": tactics, "name": [TACTICS[t] for t in tactics],
                       "reference": [tactic_url(t) for t in tactics]},
            "technique": {"id": techniques, "name": [TECHNIQUES[t][0] for t in techniques],
                          "reference": [technique_url(t) for t in techniques]},
        },
        "observer": sensor.observer,
        "source": worst["source"],
        "destination": worst["destination"],
        "network": worst["network"],
        "related": {"ip": sorted(set(union(("related", "ip"))))},
        "tags": ["otsec", "incident", *sorted(set(union(("tags",))) - {"otsec"})],
        "labels": sensor.labels,
        "otsec": {
            "incident": {
                "id": stable,
                "cause": incident.cause,
                "actor": incident.actor,
                "target": incident.target,
                "alerts": len(docs),
                "worst": worst["message"],
                "alert_ids": [d["event"]["id"] for d in docs][:100],
                "evidence": [d["message"] for d in sorted(docs, key=lambda d: d["@timestamp"])
                             ][:MAX_EVIDENCE],
                "count": sum(c["count"] for c in counts),
                "accepted": sum(c["accepted"] for c in counts),
                "rejected": sum(c["rejected"] for c in counts),
            },
            "baseline": {"state": worst["otsec"]["baseline"]["state"]},
        },
    }


MAX_EVIDENCE = 20


def asset_ref(asset: Asset | None) -> dict[str, Any]:
    if asset is None:
        return {}
    return {"id": asset.id, "name": display_name(asset), "role": asset.role}


def display_name(asset: Asset) -> str:
    ident = asset.identity
    model = ident.model_name or ident.model_identifier
    label = ident.name or (" ".join(x for x in (ident.manufacturer, model) if x) if model else "")
    return f"{label} ({asset.ips[0]})" if label and asset.ips else (asset.ips[0] if asset.ips
                                                                   else asset.id)


def asset_document(asset: Asset, points: Sequence[dict[str, Any]] = (),
                   sensor: Sensor = LOCAL) -> dict[str, Any]:
    """An asset; ``points``: its process values (see ProcessValues.documents_of)."""
    ident = asset.identity
    device: dict[str, Any] = {}
    if ident.manufacturer:
        device["manufacturer"] = ident.manufacturer
    model = {k: v for k, v in (("name", ident.model_name),
                               ("identifier", ident.model_identifier)) if v}
    if model:
        device["model"] = model
    if ident.serial_number:
        device["serial_number"] = ident.serial_number
    doc: dict[str, Any] = {
        "@timestamp": iso(asset.last_seen),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "asset", "dataset": "otsec.asset", "module": "otsec"},
        "entity": {
            "id": asset.id,
            "type": "host",
            "sub_type": asset.role,
            "display_name": display_name(asset),
            "last_seen_timestamp": iso(asset.last_seen),
        },
        "host": {"ip": asset.ips, "mac": asset.macs, "name": ident.name or display_name(asset)},
        "observer": sensor.observer,
        "labels": sensor.labels,
        "otsec": {
            "asset": {
                "first_seen": iso(asset.first_seen),
                "last_seen": iso(asset.last_seen),
                "role": asset.role,
                "role_evidence": asset.role_evidence,
                "flags": asset.flags,
                "firmware_version": ident.firmware_version,
                "protocols": asset.protocols,
                "services": [{"transport": t, "port": p, "protocol": n}
                             for t, p, n in asset.services],
                "peers": {"count": len(asset.peers)},
                "identification_source": ident.source,
                "vlan_ids": asset.vlans,
                "mac_vendor": asset.mac_vendor,
                "dnp3_addresses": asset.dnp3_addresses,
                "packets": asset.packets,
                "bytes": asset.bytes,
            }
        },
    }
    if device:
        doc["device"] = device
    if points:
        doc["otsec"]["asset"]["points"] = list(points)
    return doc


def local_id(doc: dict[str, Any]) -> str:
    """The id of an asset or edge document (in its site: see Sensor and merge.py)."""
    return doc["entity"]["id"] if "entity" in doc else doc["otsec"]["edge"]["id"]


def edge_document(
    edge: Edge, ip_of: dict[str, str] | None = None, state: str = "learned",
    sensor: Sensor = LOCAL,
) -> dict[str, Any]:
    """An edge between assets; ``ip_of`` maps asset ids (MACs) to their address."""
    ip_of = ip_of or {}
    functions = [
        {"code": code, "name": edge.names.get(code, ""), "direction": direction, "count": count}
        for (code, direction), count in sorted(edge.functions.items())
    ]
    ranges = [
        {"unit_id": unit, "table": table, "start": s, "end": e}
        for (unit, table), spans in sorted(edge.ranges.items())
        for s, e in spans
    ]
    last = iso(edge.last_seen)
    return {
        "@timestamp": last,
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "state", "dataset": "otsec.edge", "module": "otsec"},
        "source": {"ip": ip_of.get(edge.client, edge.client)},
        "destination": {"ip": ip_of.get(edge.server, edge.server), "port": edge.port},
        "network": {"transport": edge.transport, "protocol": edge.protocol},
        "otsec": {
            "edge": {
                "id": edge_id(*edge.key),
                "client": edge.client,
                "server": edge.server,
                "first_seen": iso(edge.first_seen),
                "last_seen": last,
                "packets": edge.packets,
                "bytes": edge.bytes,
                "pdus": edge.pdus,
                "state": state,
                "functions": functions,
                "unit_ids": sorted(edge.unit_ids),
                "object_groups": sorted(edge.objects),
                "address_ranges": ranges,
                "writes": edge.writes,
            }
        },
        "observer": sensor.observer,
        "labels": sensor.labels,
    }
