"""Shipping to a real OpenSearch node started by scripts/search-node (skipped without Java)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from otsec.cli import main
from otsec.sinks.search import Spool, audit_actions, deliver
from tests.searchnode import count, get, needs_node, node, search

ROOT = Path(__file__).resolve().parents[1]
INTRUSION = ROOT / "pcaps" / "modbus-intrusion.pcap"
pytestmark = needs_node


def test_setup_is_idempotent_and_alerts_arrive_once(cluster: str, tmp_path: Path,
                                                    spool_dir: Path) -> None:
    assert main(["setup", "--es", cluster]) == 0
    assert main(["setup", "--es", cluster]) == 0
    templates = {t["name"] for t in get("/_index_template")["index_templates"]}
    assert {"logs-otsec.alert", "logs-otsec.event", "otsec-latest"} <= templates
    out = tmp_path / "o"
    assert main(["audit", str(INTRUSION), "--out", str(out), "--format", "json", "--es",
                 cluster, "--es-events", "--es-namespace", "t1"]) == 0
    alerts = (out / "alerts.ndjson").read_text().splitlines()
    events = (out / "events.ndjson").read_text().splitlines()
    assert count("logs-otsec.alert-t1") == len(alerts)
    assert count("logs-otsec.event-t1") == len(events)  # the strict mapping rejected nothing
    incidents = (out / "incidents.ndjson").read_text().splitlines()
    assert 0 < len(incidents) < len(alerts)
    assert count("logs-otsec.incident-t1") == len(incidents)
    metrics = (out / "metrics.ndjson").read_text().splitlines()
    assert metrics and count("logs-otsec.metric-t1") == len(metrics)  # mapped, all taken
    assert main(["audit", str(INTRUSION), "--out", str(out), "--format", "json", "--es",
                 cluster, "--es-namespace", "t1"]) == 0
    assert count("logs-otsec.alert-t1") == len(alerts)  # a rerun adds no duplicates
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alerts"]["total"] == len(alerts)
    assert not spool_dir.exists() or not list(spool_dir.iterdir())


def test_the_operations_view_is_searchable(cluster: str, tmp_path: Path,
                                            spool_dir: Path) -> None:
    """What the operations dashboard asks: polling cycles per minute, the points written
    and by whom, the device that stopped answering, the write outside its learned range."""
    assert main(["setup", "--es", cluster]) == 0
    steps = json.loads((ROOT / "pcaps" / "modbus-operations.json").read_text())
    learn = steps["tamper"] - steps["start"] - 0.5
    assert main(["audit", str(ROOT / "pcaps" / "modbus-operations.pcap"), "--learn-for",
                 f"{learn:.3f}s", "--out", str(tmp_path / "o"), "--format", "json", "--es",
                 cluster, "--es-namespace", "ops", "--site", "ops"]) == 0
    site = {"term": {"labels.site": "ops"}}
    cycles = search("logs-otsec.metric-ops", {"range": {"otsec.metrics.cycle_ms.period":
                                                         {"gte": 400}}})
    assert {d["source"]["ip"] for d in cycles} == {"10.77.0.20", "10.77.0.30"}  # operator, SCADA
    (plc,) = search("otsec-assets-latest", {"bool": {"filter": [site, {"range": {
        "otsec.asset.points.written_max": {"gte": 950}}}]}})
    assert plc["host"]["ip"] == ["10.77.0.10"]
    assert search("otsec-assets-latest", {"bool": {"filter": [site, {"term": {
        "otsec.asset.points.writers": "10.77.0.20"}}]}})
    for rule in ("otsec-net-device-unresponsive", "otsec-baseline-value-out-of-range"):
        (alert,) = search("logs-otsec.alert-ops", {"term": {"rule.id": rule}})
        assert alert["threat"]["technique"]["id"]


def test_node_down_spools_then_ship_delivers_exactly(cluster: str, tmp_path: Path,
                                                     spool_dir: Path) -> None:
    main(["setup", "--es", cluster])
    out = tmp_path / "o"
    main(["audit", str(INTRUSION), "--out", str(out), "--format", "json"])
    alerts = [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()]
    actions = list(audit_actions(alerts, [], [], namespace="t2"))
    half = len(actions) // 2
    assert deliver(cluster, actions[:half], Spool()).delivered == half
    node("stop")  # the cluster goes away mid-run
    lost = deliver(cluster, actions[half:], Spool())
    assert lost.spooled == len(actions) - half and lost.delivered == 0
    assert node("up") == cluster
    time.sleep(1)
    assert main(["ship", "--es", cluster]) == 0
    assert count("logs-otsec.alert-t2") == len(alerts)
    assert main(["ship", "--es", cluster]) == 0  # nothing left, nothing doubled
    assert count("logs-otsec.alert-t2") == len(alerts)


def test_spool_is_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=2000)
    actions = [{"_op_type": "create", "_index": "x", "_id": str(i), "_source": {"n": "y" * 50}}
               for i in range(100)]
    put = spool.put(actions)
    assert put.stored + put.dropped == 100 and put.dropped > 0 and spool.size() <= 2000


def alert_actions(out: Path, namespace: str) -> list[dict]:
    main(["audit", str(INTRUSION), "--out", str(out), "--format", "json"])
    docs = [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()]
    return list(audit_actions(docs, [], [], namespace=namespace))


def test_a_bad_spool_line_and_a_rejected_document_never_block_the_rest(
        cluster: str, spool_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    main(["setup", "--es", cluster])
    actions = alert_actions(tmp_path / "o", "t3")
    rejected = json.loads(json.dumps(actions[0]))
    rejected["_id"] = "rejected-one"
    rejected["_source"]["source"]["port"] = "not a port"  # the strict mapping refuses it
    spool = Spool()
    spool.put([rejected, *actions[:2]])
    with next(iter(spool.files())).open("a") as fh:
        fh.write('{"_op_type": "create", "_ind')  # a spool file cut short (disk full)
    spool.put(actions[2:])
    assert main(["ship", "--es", cluster]) == 0
    printed = capsys.readouterr().out
    assert "set aside 2 that can never be delivered" in printed
    creates = [a for a in actions if a["_op_type"] == "create"]
    assert count("logs-otsec.alert-t3") == len(creates)  # everything else, in order
    assert count("otsec-alerts-latest") >= len(creates)
    assert not spool.files()
    dead = [json.loads(x) for x in spool.dead_letter.read_text().splitlines()]
    assert {d["reason"].split(" (")[0].split(": ", 1)[-1] for d in dead} == {
        "unreadable spool line", "rejected by the cluster"}
    assert any(d.get("action", {}).get("_id") == "rejected-one" for d in dead)
    assert main(["ship", "--es", cluster]) == 0  # the dead letters are not retried


def test_shipping_a_large_spool_runs_in_bounded_memory(cluster: str, spool_dir: Path) -> None:
    import tracemalloc

    main(["setup", "--es", cluster])
    spool = Spool()
    payload = "x" * 400
    spool.put({"_op_type": "create", "_index": "logs-otsec.event-t4", "_id": str(i),
               "_source": {"@timestamp": "2024-01-01T00:00:00Z", "message": payload}}
              for i in range(30_000))
    size = spool.size()
    tracemalloc.start()
    outcome = deliver(cluster, [], spool)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert outcome.delivered == 30_000 and not spool.files()
    assert peak < size / 3, (peak, size)  # batches, never the whole spool
