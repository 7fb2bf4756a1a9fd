"""ECS documents: the fast event line is the document; alerts carry every required field."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from otsec.events import ModbusAnomaly, ModbusPdu
from otsec.sinks.documents import modbus_fields, modbus_json

ROOT = Path(__file__).resolve().parents[1]
opt16 = st.none() | st.integers(0, 0xFFFF)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255), st.none() |
       st.integers(0, 255), opt16, opt16, opt16, opt16, opt16, st.none() | st.integers(0, 255),
       st.booleans(), opt16)
def test_modbus_json_equals_the_document(tid: int, unit: int, fc: int, exc: int | None,
                                         sub: int | None, addr: int | None, qty: int | None,
                                         value: int | None, waddr: int | None,
                                         umas: int | None, anomalous: bool,
                                         req_addr: int | None) -> None:
    pdu = ModbusPdu(from_client=False, transaction_id=tid, unit_id=unit, function_code=fc,
                    exception_code=exc, subfunction=sub, address=addr, quantity=qty, value=value,
                    write_address=waddr, write_quantity=qty if waddr is not None else None,
                    umas_function=umas,
                    anomalies=(ModbusAnomaly.LENGTH_MISMATCH,) if anomalous else ())
    if req_addr is not None:
        pdu.request = ModbusPdu(from_client=True, transaction_id=tid, unit_id=unit,
                                function_code=fc, address=req_addr, quantity=qty)
    assert modbus_json(pdu) == orjson.dumps(modbus_fields(pdu)).decode()


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
