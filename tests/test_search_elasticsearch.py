"""The Elasticsearch client path, checked by the requests it sends.

No Elasticsearch can run here, so a small HTTP server on 127.0.0.1 answers as
Elasticsearch 9 does (product header, bulk item statuses, 409 on a repeated create) and
records every request otsec's official-client code sends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from otsec.cli import main
from otsec.sinks.search import Spool, audit_actions, connect, deliver, setup

ROOT = Path(__file__).resolve().parents[1]


class Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []
    seen_ids: ClassVar[set[str]] = set()

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        Recorder.requests.append((self.command, self.path, headers, body))
        if self.path.startswith("/_bulk"):
            items = []
            lines = [json.loads(x) for x in body.splitlines() if x.strip()]
            for action in lines[::2]:
                op, meta = next(iter(action.items()))
                key = f"{meta['_index']}/{meta.get('_id')}"
                status = 409 if op == "create" and key in Recorder.seen_ids else (
                    201 if op == "create" else 200)
                Recorder.seen_ids.add(key)
                items.append({op: {"_index": meta["_index"], "_id": meta.get("_id"),
                                   "status": status}})
            self._answer({"took": 1, "errors": any(i for i in items
                                                   if next(iter(i.values()))["status"] >= 300),
                          "items": items})
        elif self.path == "/":
            self._answer({"name": "es", "cluster_name": "test", "tagline": "You Know, for Search",
                          "version": {"number": "9.1.0", "build_flavor": "default"}})
        else:
            self._answer({"acknowledged": True})

    do_GET = do_PUT = do_POST = do_HEAD = _handle


@pytest.fixture
def es(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    Recorder.requests, Recorder.seen_ids = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTSEC_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("OTSEC_ES_API_KEY", "c2VjcmV0")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_client_is_chosen_by_asking_and_setup_sends_ilm(es: str) -> None:
    client, flavor = connect(es)
    assert flavor == "elasticsearch"
    notes = setup(client, flavor)
    assert "ILM policy otsec" in notes
    paths = {(m, p.split("?")[0]) for m, p, _h, _b in Recorder.requests}
    assert ("PUT", "/_component_template/otsec-ecs") in paths
    assert ("PUT", "/_ilm/policy/otsec") in paths
    template = next(json.loads(b) for m, p, _h, b in Recorder.requests
                    if p.startswith("/_index_template/logs-otsec.alert"))
    assert template["data_stream"] == {} and template["priority"] > 100
    assert template["template"]["settings"]["index.lifecycle.name"] == "otsec"
    assert all(h.get("authorization") == "ApiKey c2VjcmV0" for _m, _p, h, _b in
               Recorder.requests)  # credentials from the environment, on every request


def test_bulk_creates_alerts_with_their_ids_and_counts_409_as_delivered(es: str,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "o"
    main(["audit", str(ROOT / "pcaps" / "modbus-intrusion.pcap"), "--out", str(out),
          "--format", "json"])
    alerts = [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()]
    actions = list(audit_actions(alerts, [], [], namespace="prod"))
    first = deliver(es, actions, Spool())
    assert first.delivered == 2 * len(alerts) and first.spooled == 0
    bulk = [b for _m, p, _h, b in Recorder.requests if p.startswith("/_bulk")]
    lines = [json.loads(x) for body in bulk for x in body.splitlines() if x.strip()]
    creates = [line["create"] for line in lines[::2] if "create" in line]
    assert {m["_index"] for m in creates} == {"logs-otsec.alert-prod"}
    assert [m["_id"] for m in creates] == [a["event"]["id"] for a in alerts]
    latest = [line["index"] for line in lines[::2] if "index" in line]
    assert [m["_id"] for m in latest] == [a["event"]["id"] for a in alerts]
    assert {(m["_index"], m["version_type"]) for m in latest} == {
        ("otsec-alerts-latest", "external_gte")}  # the current state, never an older one
    again = deliver(es, actions, Spool())
    assert again.duplicates == len(alerts) and again.spooled == 0
    assert again.delivered == len(alerts)  # the same state again overwrites itself


def test_assets_are_merged_by_the_cluster_and_heartbeats_keep_the_newest(
        es: str, tmp_path: Path) -> None:
    """The Elasticsearch client sends the same merge (a scripted upsert per sensor's
    document, keyed by site) and the sensor's heartbeat (its newest one versioned by time)."""
    assert main(["audit", str(ROOT / "pcaps" / "modbus-intrusion.pcap"), "--out",
                 str(tmp_path / "o"), "--format", "json", "--es", es, "--site", "north",
                 "--sensor", "north-a"]) == 0
    bulk = [b for _m, p, _h, b in Recorder.requests if p.startswith("/_bulk")]
    lines = [json.loads(x) for body in bulk for x in body.splitlines() if x.strip()]
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    merges = [(meta["update"], body) for meta, body in pairs if "update" in meta]
    assets = json.loads((tmp_path / "o" / "assets.json").read_text())
    assert {m["_id"] for m, _b in merges if m["_index"] == "otsec-assets-latest"} == {
        f"north:{a['entity']['id']}" for a in assets}
    for meta, body in merges:
        assert meta["retry_on_conflict"] > 0 and body["scripted_upsert"] is True
        assert body["script"]["lang"] == "painless"
        assert body["script"]["params"]["sensor"] == "north-a"
    beats = [(op, meta, body) for action, body in pairs for op, meta in action.items()
             if meta["_index"] in ("metrics-otsec.sensor-default", "otsec-sensors-latest")]
    assert [(op, m["_index"]) for op, m, _b in beats] == [
        ("create", "metrics-otsec.sensor-default"), ("index", "otsec-sensors-latest")]
    latest = beats[1][1]
    assert latest["_id"] == "north:north-a" and latest["version_type"] == "external"
    assert beats[1][2]["otsec"]["sensor"]["mode"] == "audit"
