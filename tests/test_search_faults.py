"""Shipping through faults: a real OpenSearch node behind a proxy that throttles, fails,
reorders or holds back bulk answers (tests/faultproxy.py). Skipped without Java."""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from otsec.cli import main
from otsec.sinks import bulk, search
from otsec.sinks.bulk import Retries
from otsec.sinks.search import Spool, audit_actions, deliver
from tests.faultproxy import fault_proxy
from tests.searchnode import URL, get, needs_node, refresh

ROOT = Path(__file__).resolve().parents[1]
INTRUSION = ROOT / "pcaps" / "modbus-intrusion.pcap"
pytestmark = needs_node


def count_where(index: str, query: dict) -> int:
    refresh(index)
    req = urllib.request.Request(f"{URL}/{index}/_count", data=json.dumps(
        {"query": query}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["count"]


def doc_by_id(index: str, _id: str) -> dict:
    return get(f"/{index}/_doc/{_id}")["_source"]


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[dict]]:
    out = tmp_path_factory.mktemp("faults") / "o"
    assert main(["audit", str(INTRUSION), "--out", str(out), "--format", "json"]) == 0
    read = lambda name: [json.loads(x) for x in (out / name).read_text().splitlines()]  # noqa: E731
    return read("alerts.ndjson"), read("incidents.ndjson")


def many(docs: list[dict], n: int, prefix: str) -> list[dict]:
    """``n`` documents like ``docs``, each with an id of its own."""
    out = []
    for i in range(n):
        doc = copy.deepcopy(docs[i % len(docs)])
        doc["event"]["id"] = f"{prefix}{i:04d}"
        out.append(doc)
    return out


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "RETRIES", Retries(backoff=0.01, max_backoff=0.05),
                        raising=False)


def prefixed(prefix: str) -> dict:
    return {"prefix": {"event.id": prefix}}


def test_every_document_arrives_through_throttling_retries_and_reordered_answers(
        cluster: str, spool_dir: Path, fast_retries: None,
        findings: tuple[list[dict], list[dict]]) -> None:
    """429 on every third item and 503 on every seventh, the first time each is sent; the
    answers come back in another order: all 900 alerts and 900 incidents arrive."""
    assert main(["setup", "--es", cluster]) == 0
    alerts, incidents = many(findings[0], 900, "ra"), many(findings[1], 900, "ri")
    position = itertools.count()

    def fault(_op: str, _meta: dict, seen: int) -> int | None:
        k = next(position)
        return None if seen else 429 if k % 3 == 0 else 503 if k % 7 == 0 else None

    with fault_proxy(cluster) as proxy:
        proxy.fault = fault
        proxy.shuffle = True
        outcome = deliver(proxy.url, audit_actions(alerts, [], [], namespace="faults",
                                                   incidents=incidents), Spool())
    assert {s for _op, _id, s in proxy.injected} == {429, 503}
    assert count_where("logs-otsec.alert-faults", prefixed("ra")) == 900
    assert count_where("logs-otsec.incident-faults", prefixed("ri")) == 900
    assert count_where("otsec-alerts-latest", prefixed("ra")) == 900
    assert count_where("otsec-incidents-latest", prefixed("ri")) == 900
    assert outcome.delivered == 3600 and outcome.spooled == 0 and outcome.dead_lettered == 0
    assert not Spool().files()


def test_a_rejected_alert_is_set_aside_with_its_own_error_and_nothing_else(
        cluster: str, spool_dir: Path, fast_retries: None,
        findings: tuple[list[dict], list[dict]]) -> None:
    assert main(["setup", "--es", cluster]) == 0
    alerts, incidents = many(findings[0], 300, "xa"), many(findings[1], 300, "xi")
    bad = alerts[123]["event"]["id"]
    position = itertools.count()

    def fault(op: str, meta: dict, seen: int) -> int | None:
        k = next(position)
        if op == "create" and meta["_id"] == bad:
            return 400
        return 429 if not seen and k % 3 == 0 else None

    with fault_proxy(cluster) as proxy:
        proxy.fault = fault
        outcome = deliver(proxy.url, audit_actions(alerts, [], [], namespace="rejects",
                                                   incidents=incidents), Spool())
    assert outcome.dead_lettered == 1 and outcome.spooled == 0
    (dead,) = [json.loads(x) for x in Spool().dead_letter.read_text().splitlines()]
    assert dead["action"]["_id"] == bad and dead["action"]["_index"] == "logs-otsec.alert-rejects"
    assert "injected: bad document" in dead["reason"]
    assert count_where("logs-otsec.alert-rejects", prefixed("xa")) == 299
    assert count_where("logs-otsec.incident-rejects", prefixed("xi")) == 300
    assert count_where("otsec-alerts-latest", prefixed("xa")) == 300


def test_a_request_refused_as_a_whole_sets_aside_only_the_document_that_causes_it(
        cluster: str, spool_dir: Path, fast_retries: None,
        findings: tuple[list[dict], list[dict]]) -> None:
    """413 for any request holding one oversized document: it alone is set aside."""
    assert main(["setup", "--es", cluster]) == 0
    alerts = many(findings[0], 40, "ba")
    big = alerts[17]["event"]["id"]
    with fault_proxy(cluster) as proxy:
        proxy.refuse = lambda metas: 413 if any(m["_id"] == big for m in metas) else None
        outcome = deliver(proxy.url, audit_actions(alerts, [], [], namespace="big"), Spool())
    dead = [json.loads(x)["action"] for x in Spool().dead_letter.read_text().splitlines()]
    assert sorted(d["_index"] for d in dead) == ["logs-otsec.alert-big", "otsec-alerts-latest"]
    assert {d["_id"] for d in dead} == {big}
    assert outcome.dead_lettered == 2 and outcome.spooled == 0 and not Spool().files()
    assert count_where("logs-otsec.alert-big", prefixed("ba")) == 39


def test_a_hanging_cluster_gets_the_documents_later(
        cluster: str, spool_dir: Path, monkeypatch: pytest.MonkeyPatch,
        findings: tuple[list[dict], list[dict]]) -> None:
    assert main(["setup", "--es", cluster]) == 0
    monkeypatch.setattr(search, "REQUEST_TIMEOUT", 1.0, raising=False)
    alerts = many(findings[0], 50, "ha")
    with fault_proxy(cluster) as proxy:
        proxy.delay = 3.0  # longer than a request may take
        held = deliver(proxy.url, audit_actions(alerts, [], [], namespace="hang"), Spool())
        assert held.spooled == 100 and held.delivered == 0
        proxy.delay = 0.0
        assert main(["ship", "--es", proxy.url]) == 0
    assert count_where("logs-otsec.alert-hang", prefixed("ha")) == 50
    assert count_where("otsec-alerts-latest", prefixed("ha")) == 50
    assert not Spool().files()


def test_an_alert_and_an_incident_stay_one_current_document(
        cluster: str, spool_dir: Path, findings: tuple[list[dict], list[dict]]) -> None:
    """A live alert that repeats: its later counts reach the cluster; the incident it is
    part of grows in place; a replayed older state changes nothing."""
    assert main(["setup", "--es", cluster]) == 0
    first = copy.deepcopy(findings[0][0])
    first["event"]["id"] = "live-alert"
    first["otsec"]["alert"].update(count=1, accepted=1, rejected=0)
    later = copy.deepcopy(first)
    later["event"]["end"] = "2031-01-01T00:00:20Z"
    later["otsec"]["alert"].update(count=20, accepted=20)
    incidents = []
    for n, end in ((1, "2031-01-01T00:00:01Z"), (11, "2031-01-01T00:00:20Z")):
        inc = copy.deepcopy(findings[1][0])
        inc["event"].update(id="live-incident", end=end)
        inc["otsec"]["incident"]["alerts"] = n
        incidents.append(inc)
    for alert, incident in ((first, incidents[0]), (later, incidents[1]),
                            (first, incidents[0])):  # the last: an old spool replayed
        outcome = deliver(cluster, audit_actions([alert], [], [], namespace="live",
                                                 incidents=[incident]), Spool())
        assert outcome.spooled == 0 and outcome.dead_lettered == 0
    assert doc_by_id("otsec-alerts-latest", "live-alert")["otsec"]["alert"]["count"] == 20
    assert doc_by_id("otsec-incidents-latest", "live-incident")["otsec"]["incident"][
        "alerts"] == 11
    assert count_where("logs-otsec.alert-live", prefixed("live-alert")) == 1
    assert count_where("logs-otsec.incident-live", prefixed("live-incident")) == 1
    assert count_where("otsec-incidents-latest", prefixed("live-incident")) == 1
    mapping = get("/otsec-alerts-latest/_mapping")["otsec-alerts-latest"]["mappings"]
    assert mapping["dynamic"] == "strict"  # installed by setup: every field mapped


def test_ship_delivers_a_file_its_writer_left_unfinished(
        cluster: str, spool_dir: Path, findings: tuple[list[dict], list[dict]],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--es", cluster]) == 0
    actions = list(audit_actions(many(findings[0], 5, "ta"), [], [], namespace="tmp"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    spool_dir.mkdir(parents=True)
    lines = [json.dumps(a) for a in actions]
    (spool_dir / f"spool-00000000000000000001-{dead}-cafe0123.tmp").write_text(
        "\n".join(lines) + "\n" + lines[0][:30])  # the writer died mid-line
    capsys.readouterr()
    assert main(["ship", "--es", cluster]) == 0
    assert "delivered 10 (0 already there) from 1 spool file(s); 0 left" in capsys.readouterr().out
    assert count_where("logs-otsec.alert-tmp", prefixed("ta")) == 5
    assert not list(spool_dir.glob("spool-*"))

