"""Index templates for Elasticsearch and OpenSearch: every field otsec writes, mapped.

ECS fields are mapped ``strict`` (a field otsec forgot to map is rejected, so tests see
it); product detail under ``otsec.*`` maps its searchable keys and keeps the rest in
``_source`` only (``dynamic: false``).
"""

from __future__ import annotations

from typing import Any

from otsec.protocols import RECORDS

ECS_VERSION = "8.11.0"
POLICY = "otsec"
# logs-otsec.<stream>-<namespace>
STREAMS = ("alert", "incident", "metric", "event", "asset", "edge")
HEARTBEATS = "metrics-otsec.sensor"  # metrics-otsec.sensor-<namespace>: sensor health
LATEST_ALERTS, LATEST_INCIDENTS = "otsec-alerts-latest", "otsec-incidents-latest"
LATEST = ("otsec-assets-latest", "otsec-edges-latest", "otsec-sensors-latest",
          "otsec-baselines", LATEST_ALERTS, LATEST_INCIDENTS)

K, L, D, IP, F, T, N = "keyword", "long", "date", "ip", "float", "text", "double"
IGNORE_ABOVE = 1024

ECS_FIELDS: dict[str, str] = {
    "@timestamp": D, "message": T, "ecs.version": K, "tags": K,
    "event.kind": K, "event.category": K, "event.type": K, "event.action": K,
    "event.dataset": K, "event.module": K, "event.outcome": K, "event.id": K,
    "event.severity": L, "event.risk_score": F, "event.start": D, "event.end": D,
    "rule.id": K, "rule.name": K, "rule.description": T, "rule.category": K,
    "rule.ruleset": K, "rule.version": K, "rule.reference": K,
    "threat.framework": K, "threat.tactic.id": K, "threat.tactic.name": K,
    "threat.tactic.reference": K, "threat.technique.id": K, "threat.technique.name": K,
    "threat.technique.reference": K,
    "observer.type": K, "observer.vendor": K, "observer.product": K, "observer.version": K,
    "observer.hostname": K, "observer.name": K, "observer.ingress.interface.name": K,
    "labels.site": K,
    "source.ip": IP, "source.port": L, "source.mac": K,
    "destination.ip": IP, "destination.port": L, "destination.mac": K,
    "network.transport": K, "network.protocol": K, "network.community_id": K,
    "network.vlan.id": K, "related.ip": IP,
    "entity.id": K, "entity.type": K, "entity.sub_type": K, "entity.display_name": K,
    "entity.last_seen_timestamp": D,
    "host.ip": IP, "host.mac": K, "host.name": K,
    "device.manufacturer": K, "device.model.name": K, "device.model.identifier": K,
    "device.serial_number": K,
}  # fmt: skip

OTSEC_FIELDS: dict[str, str] = {
    "otsec.incident.id": K, "otsec.incident.cause": K, "otsec.incident.actor": K,
    "otsec.incident.target": K, "otsec.incident.alerts": L, "otsec.incident.worst": T,
    "otsec.incident.alert_ids": K, "otsec.incident.evidence": T, "otsec.incident.count": L,
    "otsec.incident.accepted": L, "otsec.incident.rejected": L,
    "otsec.metrics.requests": L, "otsec.metrics.responses": L, "otsec.metrics.exceptions": L,
    "otsec.metrics.unanswered": L, "otsec.metrics.response_time_ms.p50": F,
    "otsec.metrics.response_time_ms.p95": F, "otsec.metrics.response_time_ms.max": F,
    "otsec.metrics.cycle_ms.period": F, "otsec.metrics.cycle_ms.jitter": F,
    "otsec.metrics.tcp.connections": L, "otsec.metrics.tcp.retransmissions": L,
    "otsec.metrics.tcp.resets": L, "otsec.metrics.tcp.zero_windows": L,
    "otsec.direction": K, "otsec.alert.count": L, "otsec.alert.accepted": L,
    "otsec.alert.rejected": L, "otsec.baseline.state": K,
    "otsec.baseline.site": K, "otsec.baseline.version": L, "otsec.baseline.published_by": K,
    "otsec.baseline.assets": L, "otsec.baseline.edges": L, "otsec.baseline.values": L,
    "otsec.asset.source.id": K, "otsec.asset.source.name": K, "otsec.asset.source.role": K,
    "otsec.asset.destination.id": K, "otsec.asset.destination.name": K,
    "otsec.asset.destination.role": K,
    "otsec.asset.first_seen": D, "otsec.asset.last_seen": D, "otsec.asset.role": K,
    "otsec.asset.role_evidence": K, "otsec.asset.flags": K, "otsec.asset.firmware_version": K,
    "otsec.asset.protocols": K, "otsec.asset.services.transport": K,
    "otsec.asset.services.port": L, "otsec.asset.services.protocol": K,
    "otsec.asset.peers.count": L, "otsec.asset.identification_source": K,
    "otsec.asset.vlan_ids": L, "otsec.asset.mac_vendor": K, "otsec.asset.dnp3_addresses": L,
    "otsec.asset.packets": L, "otsec.asset.bytes": L,
    "otsec.asset.points.protocol": K, "otsec.asset.points.unit": L,
    "otsec.asset.points.table": K, "otsec.asset.points.address": L,
    "otsec.asset.points.reads": L, "otsec.asset.points.last": N, "otsec.asset.points.min": N,
    "otsec.asset.points.max": N, "otsec.asset.points.changes": L,
    "otsec.asset.points.writes": L, "otsec.asset.points.written": N,
    "otsec.asset.points.written_min": N, "otsec.asset.points.written_max": N,
    "otsec.asset.points.writers": IP,
    "otsec.edge.id": K, "otsec.edge.client": K, "otsec.edge.server": K,
    "otsec.edge.first_seen": D, "otsec.edge.last_seen": D, "otsec.edge.packets": L,
    "otsec.edge.bytes": L, "otsec.edge.pdus": L, "otsec.edge.writes": L, "otsec.edge.state": K,
    "otsec.edge.functions.code": L, "otsec.edge.functions.name": K,
    "otsec.edge.functions.direction": K, "otsec.edge.functions.count": L,
    "otsec.edge.unit_ids": L, "otsec.edge.object_groups": L,
    "otsec.edge.address_ranges.unit_id": L, "otsec.edge.address_ranges.table": K,
    "otsec.edge.address_ranges.start": L, "otsec.edge.address_ranges.end": L,
    **{path: kind for r in RECORDS.values() for path, kind in r.mappings.items()},
    "otsec.anomaly.protocol": K, "otsec.anomaly.kind": K, "otsec.anomaly.detail": T,
    "otsec.sensor.name": K, "otsec.sensor.site": K, "otsec.sensor.interface": K,
    "otsec.sensor.version": K, "otsec.sensor.mode": K, "otsec.sensor.state": K,
    "otsec.sensor.uptime_s": F, "otsec.sensor.packets": L, "otsec.sensor.kernel_drops": L,
    "otsec.sensor.flows": L, "otsec.sensor.pdus": L, "otsec.sensor.alerts": L,
    "otsec.sensor.spool.bytes": L, "otsec.sensor.spool.max_bytes": L,
    "otsec.sensor.spool.age_s": F, "otsec.sensor.spool.dropped": L,
    "otsec.sensor.since_last.seconds": F, "otsec.sensor.since_last.packets": L,
    "otsec.sensor.since_last.kernel_drops": L,
    "otsec.sensor.workers.deaths": L, "otsec.sensor.workers.down": L,
}  # fmt: skip


def _properties(fields: dict[str, str]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, kind in fields.items():
        node = root
        *parents, leaf = path.split(".") if path != "@timestamp" else ["@timestamp"]
        for p in parents:
            node = node.setdefault(p, {"properties": {}})["properties"]
        # a keyword longer than this is kept in _source but not indexed: one device name of
        # 40 kB must not get its whole document refused ("immense term")
        node[leaf] = {"type": kind, "ignore_above": IGNORE_ABOVE} if kind == K else {"type": kind}
    return root


def component_templates() -> dict[str, dict[str, Any]]:
    ecs = _properties(ECS_FIELDS)
    ecs["labels"].update(type="object", dynamic=True)  # a site's own labels too
    otsec = _properties(OTSEC_FIELDS)["otsec"]
    otsec["dynamic"] = False
    return {
        "otsec-ecs": {"template": {"mappings": {"dynamic": "strict", "properties": ecs}},
                      "_meta": {"ecs_version": ECS_VERSION}},
        "otsec-fields": {"template": {"mappings": {"properties": {"otsec": otsec}}}},
    }


def index_templates(flavor: str) -> dict[str, dict[str, Any]]:
    """Composable templates: one per data stream kind, one for the -latest indices."""
    settings: dict[str, Any] = {"number_of_shards": 1}
    if flavor == "elasticsearch":
        settings["index.lifecycle.name"] = POLICY
    out = {}
    for name in [*(f"logs-otsec.{stream}" for stream in STREAMS), HEARTBEATS]:
        out[name] = {
            "index_patterns": [f"{name}-*"],
            "data_stream": {},
            "priority": 200,
            "composed_of": ["otsec-ecs", "otsec-fields"],
            "template": {"settings": settings},
            "_meta": {"managed_by": "otsec"},
        }
    out["otsec-latest"] = {
        "index_patterns": list(LATEST),
        "priority": 200,
        "composed_of": ["otsec-ecs", "otsec-fields"],
        "template": {"settings": {"number_of_shards": 1}},
        "_meta": {"managed_by": "otsec"},
    }
    return out


def lifecycle_policy(flavor: str, delete_after: str = "90d") -> dict[str, Any]:
    """Roll over daily or at 10 GB, delete after ``delete_after`` (ILM or ISM)."""
    if flavor == "elasticsearch":
        return {"policy": {"phases": {
            "hot": {"actions": {"rollover": {"max_age": "1d", "max_primary_shard_size": "10gb"}}},
            "delete": {"min_age": delete_after, "actions": {"delete": {}}},
        }}}  # fmt: skip
    return {"policy": {
        "description": "otsec: roll over daily, delete after " + delete_after,
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [{"rollover": {"min_index_age": "1d"}}],
             "transitions": [{"state_name": "delete",
                              "conditions": {"min_index_age": delete_after}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [".ds-logs-otsec.*", f".ds-{HEARTBEATS}-*"],
                          "priority": 200}],
    }}  # fmt: skip
