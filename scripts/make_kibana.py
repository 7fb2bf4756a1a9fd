#!/usr/bin/env python3
"""Write kibana/otsec.ndjson: data views, searches, visualisations, the overview dashboard
(security), the operations dashboard (response times, timeouts, polling, availability,
process values) and the fleet dashboard (sensors per site, silence, drops, spools); each
starts with a site and sensor filter.

Kept as code so the saved objects stay consistent with the index mappings; the tests
check every field they name exists in otsec's templates. Import with
`otsec setup --es URL --kibana URL` or Kibana's Saved Objects page.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "otsec" / "kibana" / "otsec.ndjson"
VERSION = {"coreMigrationVersion": "8.8.0"}

VIEWS = {
    # the current state of each incident (its data stream keeps the first one)
    "otsec-incidents": ("otsec-incidents-latest", "@timestamp", "otsec incidents (current)"),
    "otsec-alerts": ("logs-otsec.alert-*", "@timestamp", "otsec alerts"),
    "otsec-events": ("logs-otsec.event-*", "@timestamp", "otsec PDU events"),
    "otsec-metrics": ("logs-otsec.metric-*", "@timestamp", "otsec operations (per edge and "
                      "minute)"),
    "otsec-assets": ("otsec-assets-latest", "otsec.asset.last_seen", "otsec assets (current)"),
    "otsec-edges": ("otsec-edges-latest", "otsec.edge.last_seen", "otsec edges (current)"),
    # no time field: a sensor silent for longer than the dashboard's time range must show
    "otsec-sensors": ("otsec-sensors-latest", None, "otsec sensors (newest heartbeat)"),
    "otsec-heartbeats": ("metrics-otsec.sensor-*", "@timestamp", "otsec sensor heartbeats"),
}


def view(vid: str) -> dict:
    title, time_field, name = VIEWS[vid]
    attributes = {"title": title, "name": name}
    if time_field:
        attributes["timeFieldName"] = time_field
    return {"type": "index-pattern", "id": vid, **VERSION, "references": [],
            "attributes": attributes}


def source(vid: str, query: str = "") -> dict:
    search = {"query": {"query": query, "language": "kuery"}, "filter": [],
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return {"searchSourceJSON": json.dumps(search)}


def ref(vid: str) -> list[dict]:
    return [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
             "id": vid}]


def vis(vid: str, title: str, view_id: str, vis_type: str, aggs: list[dict],
        params: dict | None = None) -> dict:
    state = {"title": title, "type": vis_type, "aggs": aggs, "params": params or {}}
    return {"type": "visualization", "id": vid, **VERSION, "references": ref(view_id),
            "attributes": {"title": title, "visState": json.dumps(state), "uiStateJSON": "{}",
                           "description": "", "kibanaSavedObjectMeta": source(view_id)}}


def terms(field: str, size: int = 10, schema: str = "segment", aid: str = "2") -> dict:
    return {"id": aid, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "size": size, "order": "desc", "orderBy": "1"}}


COUNT = {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}}
OVER_TIME = {"id": "2", "enabled": True, "type": "date_histogram", "schema": "segment",
             "params": {"field": "@timestamp", "interval": "auto"}}


def metric(kind: str, field: str, aid: str = "1") -> dict:
    return {"id": aid, "enabled": True, "type": kind, "schema": "metric",
            "params": {"field": field}}


def search(sid: str, title: str, view_id: str, columns: list[str], sort: str,
           query: str = "", order: str = "desc") -> dict:
    return {"type": "search", "id": sid, **VERSION, "references": ref(view_id),
            "attributes": {"title": title, "columns": columns, "sort": [[sort, order]],
                           "kibanaSavedObjectMeta": source(view_id, query)}}


FILTER = "otsec-site-sensor-filter"
FILTER_ROWS = 5


def site_and_sensor_filter() -> dict:
    """Options lists on labels.site and observer.name: every document has both, so the
    filter they set narrows every panel of a dashboard."""
    controls = [{"id": str(i), "fieldName": field, "label": label, "type": "list",
                 "indexPatternRefName": f"control_{i}_index_pattern", "parent": "",
                 "options": {"type": "terms", "multiselect": True, "dynamicOptions": True,
                             "size": 50, "order": "desc"}}
                for i, (field, label) in enumerate((("labels.site", "site"),
                                                    ("observer.name", "sensor")))]
    state = {"title": "otsec: site and sensor", "type": "input_control_vis", "aggs": [],
             "params": {"controls": controls, "updateFiltersOnChange": True,
                        "useTimeFilter": False, "pinFilters": False}}
    return {"type": "visualization", "id": FILTER, **VERSION,
            "references": [{"name": f"control_{i}_index_pattern", "type": "index-pattern",
                            "id": "otsec-sensors"} for i in range(len(controls))],
            "attributes": {"title": state["title"], "visState": json.dumps(state),
                           "uiStateJSON": "{}", "description": "",
                           "kibanaSavedObjectMeta": {"searchSourceJSON": "{}"}}}


Placed = tuple[dict, int, int, int, int]  # a saved object, and its x, y, w, h on the grid


def board(did: str, title: str, description: str, placed: list[Placed]) -> list[dict]:
    """The objects ``placed`` and a dashboard showing them, under the site and sensor
    filter."""
    panels, refs = [], []
    grid = [(FILTER, "visualization", 0, 0, 48, FILTER_ROWS),
            *((o["id"], o["type"], x, y + FILTER_ROWS, w, h) for o, x, y, w, h in placed)]
    for i, (oid, otype, x, y, w, h) in enumerate(grid):
        panels.append({"panelIndex": str(i), "gridData": {"x": x, "y": y, "w": w, "h": h,
                                                          "i": str(i)},
                       "panelRefName": f"panel_{i}", "embeddableConfig": {}, "version": "8.8.0"})
        refs.append({"name": f"panel_{i}", "type": otype, "id": oid})
    return [o for o, *_ in placed] + [{
        "type": "dashboard", "id": did, **VERSION, "references": refs,
        "attributes": {"title": title, "description": description,
                       "panelsJSON": json.dumps(panels), "timeRestore": False,
                       "optionsJSON": json.dumps({"useMargins": True}),
                       "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                           {"query": {"query": "", "language": "kuery"}, "filter": []})}}}]


def operations() -> list[dict]:
    """The plant engineer's view: which device answers slowly, times out or stopped
    answering, how steady the polling is, how healthy the connections are, and what was
    written into which point."""
    by_server = terms("destination.ip", 10, "group", "3")
    return board("otsec-operations", "otsec: operations", (
        "Response times, unanswered requests and exceptions, polling cycles, devices that "
        "stopped answering, and the process values written"), [
        (vis("otsec-ops-response-time", "otsec: response time p95 over time (ms)",
             "otsec-metrics", "line",
             [metric("max", "otsec.metrics.response_time_ms.p95"), OVER_TIME, by_server]),
              0, 0, 32, 14),
        (vis("otsec-ops-slowest", "otsec: slowest devices (worst minute's p95, ms)",
             "otsec-metrics", "table",
             [metric("max", "otsec.metrics.response_time_ms.p95"),
              terms("destination.ip", 20, "bucket")]), 32, 0, 16, 14),
        (vis("otsec-ops-timeouts", "otsec: unanswered requests and exceptions over time",
             "otsec-metrics", "histogram",
             [metric("sum", "otsec.metrics.unanswered"), OVER_TIME,
              metric("sum", "otsec.metrics.exceptions", "3")]), 0, 14, 24, 13),
        (vis("otsec-ops-polling", "otsec: polling period and jitter (ms) per edge",
             "otsec-metrics", "table",
             [metric("avg", "otsec.metrics.cycle_ms.period"),
              metric("max", "otsec.metrics.cycle_ms.jitter", "4"),
              terms("source.ip", 20, "bucket", "2"), terms("destination.ip", 20, "bucket", "3")]),
               24, 14, 24, 13),
        (vis("otsec-ops-tcp", "otsec: TCP health over time (resets, segments sent again, zero "
             "windows, new connections)", "otsec-metrics", "histogram",
             [metric("sum", "otsec.metrics.tcp.resets"), OVER_TIME,
              metric("sum", "otsec.metrics.tcp.retransmissions", "3"),
              metric("sum", "otsec.metrics.tcp.zero_windows", "4"),
              metric("sum", "otsec.metrics.tcp.connections", "5")]), 0, 27, 48, 12),
        (search("otsec-ops-availability", "otsec: devices that stopped answering",
                "otsec-alerts", ["source.ip", "network.protocol", "event.start", "event.end",
                                 "message"], "@timestamp",
                'rule.id : "otsec-net-device-unresponsive"'), 0, 39, 48, 10),
        (search("otsec-ops-value-alerts", "otsec: writes outside the learned values",
                "otsec-alerts", ["source.ip", "destination.ip", "message"], "@timestamp",
                'rule.id : ("otsec-baseline-value-out-of-range" or "otsec-baseline-new-writer")'),
                 0, 49, 48, 10),
        (search("otsec-ops-process-values", "otsec: process values (points written)",
                "otsec-assets", ["host.ip", "otsec.asset.points.table",
                                 "otsec.asset.points.address", "otsec.asset.points.written",
                                 "otsec.asset.points.written_min",
                                 "otsec.asset.points.written_max",
                                 "otsec.asset.points.writers"], "otsec.asset.last_seen",
                "otsec.asset.points.writes > 0"), 0, 59, 48, 15),
    ])


def fleet() -> list[dict]:
    """The SOC's view of its sensors: which are there per site, which went silent (the
    oldest newest-heartbeat first), which drop packets or hold a full spool, and the
    alerts per site."""
    by_sensor = terms("observer.name", 20, "group", "3")
    return board("otsec-fleet", "otsec: fleet", (
        "Sensors per site, the ones gone silent, packet drops, spools, and alerts per site"), [
        (search("otsec-fleet-sensors", "otsec: sensors, the longest silent first",
                "otsec-sensors", ["labels.site", "observer.name", "otsec.sensor.mode",
                                  "otsec.sensor.state", "otsec.sensor.uptime_s",
                                  "otsec.sensor.packets", "otsec.sensor.kernel_drops",
                                  "otsec.sensor.spool.bytes", "otsec.sensor.spool.age_s",
                                  "otsec.sensor.version"], "@timestamp", order="asc"),
                                   0, 0, 48, 12),
        (vis("otsec-fleet-per-site", "otsec: sensors per site", "otsec-sensors", "table",
             [metric("cardinality", "observer.name"), terms("labels.site", 50, "bucket")]),
              0, 12, 16, 12),
        (vis("otsec-fleet-alerts-per-site", "otsec: alerts per site and severity",
             "otsec-alerts", "table",
             [COUNT, terms("labels.site", 50, "bucket", "2"),
              terms("event.severity", 4, "bucket", "3")]), 16, 12, 32, 12),
        (vis("otsec-fleet-heartbeats", "otsec: heartbeats per sensor over time (a gap is "
             "silence)", "otsec-heartbeats", "histogram", [COUNT, OVER_TIME, by_sensor]),
              0, 24, 24, 12),
        (vis("otsec-fleet-drops", "otsec: kernel drops per sensor over time",
             "otsec-heartbeats", "histogram",
             [metric("sum", "otsec.sensor.since_last.kernel_drops"), OVER_TIME, by_sensor]),
              24, 24, 24, 12),
        (vis("otsec-fleet-packets", "otsec: packets per sensor over time", "otsec-heartbeats",
             "line", [metric("sum", "otsec.sensor.since_last.packets"), OVER_TIME, by_sensor]),
              0, 36, 24, 12),
        (vis("otsec-fleet-spool", "otsec: spool bytes per sensor over time",
             "otsec-heartbeats", "line",
             [metric("max", "otsec.sensor.spool.bytes"), OVER_TIME, by_sensor]), 24, 36, 24, 12),
        (search("otsec-fleet-health-alerts", "otsec: sensor health alerts", "otsec-alerts",
                ["labels.site", "observer.name", "rule.name", "message"], "@timestamp",
                'rule.category : "sensor-health"'), 0, 48, 48, 10),
    ])


VEGA = {
    "$schema": "https://vega.github.io/schema/vega/v5.json",
    "description": "otsec communication graph: assets as nodes, edges as links",
    "autosize": "none",
    "data": [
        {"name": "edges",
         "url": {"index": "otsec-edges-latest",
                 "body": {"size": 1000, "_source": ["otsec.edge.client", "otsec.edge.server",
                                                     "network.protocol", "otsec.edge.writes"]}},
         "format": {"property": "hits.hits"},
         "transform": [
             {"type": "formula", "as": "source", "expr": "datum._source.otsec.edge.client"},
             {"type": "formula", "as": "target", "expr": "datum._source.otsec.edge.server"},
             {"type": "formula", "as": "protocol", "expr": "datum._source.network.protocol"},
             {"type": "formula", "as": "writes", "expr": "datum._source.otsec.edge.writes"}]},
        {"name": "node-data", "source": "edges",
         "transform": [{"type": "fold", "fields": ["source", "target"]},
                       {"type": "aggregate", "groupby": ["value"]}]},
    ],
    "scales": [{"name": "color", "type": "ordinal", "domain": {"data": "edges",
                                                              "field": "protocol"},
                "range": {"scheme": "category10"}}],
    "marks": [
        {"name": "nodes", "type": "symbol", "from": {"data": "node-data"}, "zindex": 1,
         "encode": {"enter": {"fill": {"value": "#4c78a8"}, "size": {"value": 300},
                              "tooltip": {"field": "value"}}},
         "transform": [{"type": "force", "iterations": 300, "static": True,
                        "forces": [{"force": "center", "x": {"signal": "width / 2"},
                                    "y": {"signal": "height / 2"}},
                                   {"force": "collide", "radius": 20},
                                   {"force": "nbody", "strength": -60},
                                   {"force": "link", "links": "links", "id": "datum.value",
                                    "distance": 90}]}]},
        {"type": "text", "from": {"data": "nodes"},
         "encode": {"update": {"x": {"field": "x"}, "y": {"field": "y"},
                               "text": {"field": "datum.value"}, "dx": {"value": 10}}}},
        {"type": "path", "from": {"data": "links"},
         "encode": {"update": {"stroke": {"scale": "color", "field": "datum.protocol"},
                               "strokeWidth": {"signal": "datum.datum.writes > 0 ? 3 : 1"}}},
         "transform": [{"type": "linkpath", "shape": "line",
                        "sourceX": "datum.source.x", "sourceY": "datum.source.y",
                        "targetX": "datum.target.x", "targetY": "datum.target.y"}]},
    ],
}
VEGA["data"].append({"name": "links", "source": "edges",
                     "transform": [{"type": "lookup", "from": "nodes", "key": "datum.value",
                                    "fields": ["source", "target"],
                                    "as": ["source", "target"]}]})


def overview() -> list[dict]:
    """The SOC's first look: incidents, alerts, techniques, talkers, graph, inventory."""
    graph = {"type": "visualization", "id": "otsec-network-graph", **VERSION, "references": [],
             "attributes": {"title": "otsec: network graph", "uiStateJSON": "{}",
                            "description": "",
                            "visState": json.dumps({"title": "otsec: network graph",
                                                    "type": "vega", "aggs": [],
                                                    "params": {"spec": json.dumps(VEGA,
                                                                                  indent=2)}}),
                            "kibanaSavedObjectMeta": {"searchSourceJSON": "{}"}}}
    return board("otsec-overview", "otsec: OT security overview", (
        "Incidents first, then alerts, ATT&CK techniques, talkers, the network graph, "
        "assets and edges"), [
        (search("otsec-incidents-table", "otsec: incidents (one per actor, target and cause)",
                "otsec-incidents", ["event.severity", "source.ip", "destination.ip",
                                    "otsec.incident.cause", "otsec.incident.alerts",
                                    "otsec.incident.worst", "threat.technique.id"],
                "@timestamp"), 0, 0, 48, 15),
        (vis("otsec-alerts-over-time", "otsec: alerts over time", "otsec-alerts", "histogram",
             [COUNT, OVER_TIME, terms("event.severity", 4, "group", "3")]), 0, 15, 48, 12),
        (vis("otsec-alerts-by-rule", "otsec: alerts by rule", "otsec-alerts", "table",
             [COUNT, terms("rule.id", 25, "bucket")]), 0, 27, 24, 15),
        (vis("otsec-alerts-by-technique", "otsec: alerts by ATT&CK technique", "otsec-alerts",
             "pie", [COUNT, terms("threat.technique.id", 15)]), 24, 27, 24, 15),
        (vis("otsec-top-talkers", "otsec: top talkers (PDUs)", "otsec-events",
             "horizontal_bar", [COUNT, terms("source.ip", 15)]), 0, 42, 24, 15),
        (graph, 24, 42, 24, 15),
        (search("otsec-asset-inventory", "otsec: asset inventory", "otsec-assets",
                ["entity.display_name", "entity.sub_type", "host.ip", "host.mac",
                 "device.manufacturer", "device.model.name", "otsec.asset.firmware_version",
                 "otsec.asset.last_seen"], "otsec.asset.last_seen"), 0, 57, 48, 15),
        (search("otsec-edges-table", "otsec: communication edges", "otsec-edges",
                ["source.ip", "destination.ip", "destination.port", "network.protocol",
                 "otsec.edge.pdus", "otsec.edge.writes", "otsec.edge.state"],
                "otsec.edge.last_seen"), 0, 72, 48, 15),
    ])


def objects() -> list[dict]:
    return [*(view(v) for v in VIEWS), site_and_sensor_filter(), *overview(), *operations(),
            *fleet()]


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(o, sort_keys=True) + "\n" for o in objects()))
    print(OUT)


if __name__ == "__main__":
    main()
