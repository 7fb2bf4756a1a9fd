"""Kibana saved objects: valid, self-consistent, and naming only fields otsec maps."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otsec.cli import main
from otsec.sinks.kibana import saved_objects
from otsec.sinks.mappings import ECS_FIELDS, OTSEC_FIELDS

MAPPED = set(ECS_FIELDS) | set(OTSEC_FIELDS)


def objects() -> list[dict]:
    return [json.loads(line) for line in saved_objects().read_text().splitlines()]


def fields_named(obj: dict) -> set[str]:
    attrs = obj["attributes"]
    out: set[str] = set()
    if obj["type"] == "index-pattern" and "timeFieldName" in attrs:
        out.add(attrs["timeFieldName"])
    if obj["type"] == "search":
        out |= set(attrs["columns"]) | {s[0] for s in attrs["sort"]}
    if obj["type"] == "visualization":
        state = json.loads(attrs["visState"])
        out |= {a["params"]["field"] for a in state["aggs"] if "field" in a.get("params", {})}
        out |= {c["fieldName"] for c in state["params"].get("controls", [])}
        if state["type"] == "vega":
            spec = json.loads(state["params"]["spec"])
            out |= set(spec["data"][0]["url"]["body"]["_source"])
    return out


def test_saved_objects_are_valid_and_reference_each_other() -> None:
    objs = objects()
    ids = {(o["type"], o["id"]) for o in objs}
    assert {"index-pattern", "visualization", "search", "dashboard"} <= {o["type"] for o in objs}
    for o in objs:
        for r in o["references"]:
            assert (r["type"], r["id"]) in ids, (o["id"], r)
        json.loads(o["attributes"].get("panelsJSON", "[]"))
    dashboard = next(o for o in objs if o["type"] == "dashboard")
    titles = {o["id"] for o in objs}
    assert {"otsec-alerts-over-time", "otsec-alerts-by-rule", "otsec-alerts-by-technique",
            "otsec-top-talkers", "otsec-asset-inventory", "otsec-edges-table",
            "otsec-network-graph"} <= titles
    assert len(json.loads(dashboard["attributes"]["panelsJSON"])) == len(dashboard["references"])


def test_every_field_they_name_is_mapped() -> None:
    for o in objects():
        missing = fields_named(o) - MAPPED
        assert not missing, (o["id"], missing)


def test_setup_imports_them_into_kibana(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[tuple[str, dict, bytes]] = []

    class Kibana(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            data = json.dumps({"success": True, "successCount": 12}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Kibana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from otsec.sinks.kibana import import_objects

        monkeypatch.setenv("OTSEC_KIBANA_API_KEY", "a2V5")
        result = import_objects(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert result["successCount"] == 12
    path, headers, body = received[0]
    assert path == "/api/saved_objects/_import?overwrite=true"
    assert headers["kbn-xsrf"] and headers["authorization"] == "ApiKey a2V5"
    assert b'"otsec-overview"' in body and b"multipart" not in body[:2]
    assert main(["setup", "--es", "http://127.0.0.1:9", "--kibana", "http://127.0.0.1:9"]) == 1


def test_every_dashboard_filters_by_site_and_sensor() -> None:
    objs = {o["id"]: o for o in objects()}
    boards = [o for o in objs.values() if o["type"] == "dashboard"]
    assert {"otsec-overview", "otsec-operations", "otsec-fleet"} <= {b["id"] for b in boards}
    control = json.loads(objs["otsec-site-sensor-filter"]["attributes"]["visState"])
    assert [c["fieldName"] for c in control["params"]["controls"]] == ["labels.site",
                                                                       "observer.name"]
    for board in boards:
        first = min(json.loads(board["attributes"]["panelsJSON"]),
                    key=lambda p: (p["gridData"]["y"], p["gridData"]["x"]))
        ref = next(r for r in board["references"] if r["name"] == first["panelRefName"])
        assert ref["id"] == "otsec-site-sensor-filter", board["id"]


def test_the_fleet_dashboard_puts_silent_sensors_first() -> None:
    objs = {o["id"]: o for o in objects()}
    sensors = objs["otsec-fleet-sensors"]["attributes"]
    assert sensors["sort"] == [["@timestamp", "asc"]]  # the oldest newest heartbeat on top
    assert objs["otsec-sensors"]["attributes"]["title"] == "otsec-sensors-latest"
    assert "timeFieldName" not in objs["otsec-sensors"]["attributes"]  # silent for long: shown
    assert objs["otsec-heartbeats"]["attributes"]["title"] == "metrics-otsec.sensor-*"
    panels = {r["id"] for r in objs["otsec-fleet"]["references"]}
    assert {"otsec-fleet-drops", "otsec-fleet-spool", "otsec-fleet-alerts-per-site",
            "otsec-fleet-health-alerts"} <= panels


def test_the_operations_dashboard_shows_what_an_engineer_asks_first() -> None:
    objs = {o["id"]: o for o in objects()}
    board = objs["otsec-operations"]
    panels = {r["id"] for r in board["references"]} - {"otsec-site-sensor-filter"}
    assert panels == {"otsec-ops-response-time", "otsec-ops-slowest", "otsec-ops-timeouts",
                      "otsec-ops-polling", "otsec-ops-tcp", "otsec-ops-availability",
                      "otsec-ops-value-alerts",
                      "otsec-ops-process-values"}
    assert objs["otsec-metrics"]["attributes"]["title"] == "logs-otsec.metric-*"
    for pid in panels:  # the fields their queries name are mapped too
        search = json.loads(objs[pid]["attributes"]["kibanaSavedObjectMeta"]
                            ["searchSourceJSON"])
        query = search.get("query", {}).get("query", "")
        named = {w for w in query.replace("(", " ").split() if "." in w and '"' not in w}
        assert named <= MAPPED, (pid, named - MAPPED)
