"""ECS documents: alerts carry every required field."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
opt16 = st.none() | st.integers(0, 0xFFFF)


REQUIRED_ALERT_FIELDS = [
    "@timestamp", "ecs.version", "event.kind", "event.category", "event.type", "event.action",
    "event.severity", "event.risk_score", "event.id", "event.start", "event.end",
    "event.dataset", "event.module", "otsec.alert.count", "rule.id", "rule.name",
    "rule.description", "rule.category", "rule.ruleset", "rule.version", "rule.reference",
    "threat.framework", "threat.tactic.id", "threat.tactic.name", "threat.technique.id",
    "threat.technique.name", "threat.technique.reference", "observer.type", "observer.vendor",
    "observer.product", "observer.version", "observer.hostname", "observer.name", "source.ip",
    "source.port", "source.mac", "destination.ip", "destination.port", "destination.mac",
    "network.transport", "network.protocol", "network.community_id", "related.ip", "message",
    "tags", "labels", "otsec.modbus.function_code", "otsec.asset.source.id",
    "otsec.asset.destination.role", "otsec.baseline.state",
]  # fmt: skip


def get(doc: dict, dotted: str) -> object:
    for part in dotted.split("."):
        if part not in doc:
            raise KeyError(dotted)
        doc = doc[part]
    return doc


def test_alert_documents_have_every_required_field(tmp_path: Path) -> None:
    from otsec.cli import main

    main(["audit", str(ROOT / "pcaps" / "modbus-intrusion.pcap"), "--out", str(tmp_path),
          "--format", "json"])
    alerts = [json.loads(x) for x in (tmp_path / "alerts.ndjson").read_text().splitlines()]
    modbus_alerts = [a for a in alerts if "modbus" in a["otsec"]]
    assert modbus_alerts
    for alert in modbus_alerts:
        for field in REQUIRED_ALERT_FIELDS:
            get(alert, field)
        assert alert["event"]["kind"] == "alert"
        assert alert["event"]["category"] == ["network", "intrusion_detection"]
        assert alert["threat"]["framework"] == "MITRE ATT&CK"
        assert all(t.startswith("T0") for t in alert["threat"]["technique"]["id"])
        assert all(t.startswith("TA01") for t in alert["threat"]["tactic"]["id"])
        assert 1 <= alert["event"]["severity"] <= 4
        assert alert["event"]["start"] <= alert["event"]["end"]
    assets = json.loads((tmp_path / "assets.json").read_text())
    for asset in assets:
        for field in ("entity.id", "entity.type", "entity.sub_type", "host.ip",
                      "otsec.asset.first_seen", "otsec.asset.role", "otsec.asset.role_evidence",
                      "otsec.asset.services", "otsec.asset.peers.count"):
            get(asset, field)
    edges = json.loads((tmp_path / "edges.json").read_text())
    for edge in edges:
        for field in ("otsec.edge.id", "otsec.edge.state", "otsec.edge.functions",
                      "otsec.edge.writes", "source.ip", "destination.ip", "destination.port",
                      "network.protocol"):
            get(edge, field)


def test_messages_count_requests_and_answers_apart() -> None:
    from otsec.detect.alerts import Alert, Notice
    from otsec.detect.ruleset import load

    rule = load().rules["otsec-modbus-write"].rule
    notice = Notice(from_client=True, protocol_name="modbus", source_ip="10.0.0.5",
                    destination_ip="10.0.0.10")

    def message(count: int, accepted: int, rejected: int = 0) -> str:
        return Alert(rule=rule, key=("10.0.0.5", "10.0.0.10"), event=notice, action="wrote",
                     answerable=True, target="", swap=False, start=0.0, end=0.0, count=count,
                     accepted=accepted, rejected=rejected,
                     reasons={"illegal data address": rejected} if rejected else {}).message

    assert message(157, 155).endswith(
        "157 times; the device accepted 155; 2 got no answer.")
    assert message(3, 3).endswith("3 times; the device accepted all 3.")
    assert message(4, 0, 3).endswith(
        "the device rejected 3 (illegal data address); 1 got no answer.")


def test_a_finding_that_comes_back_says_so() -> None:
    from otsec.detect.alerts import AlertBook, Finding, Notice
    from otsec.detect.ruleset import load

    rule = load().rules["otsec-dnp3-write"].rule
    book = AlertBook(window=3600.0)
    for ts in (0.0, 10.0, 7200.0):
        book.add(Finding(rule, Notice(from_client=True, ts=ts, protocol_name="dnp3",
                                      source_ip="10.0.0.8", destination_ip="10.0.0.3"),
                         "wrote", answerable=False))
    first, second = book.alerts
    assert "again" not in first.message and first.count == 2
    assert second.message.endswith("(again, after 1 h or more without it).")
