"""The compiled core against the Python engine it replaces: the same PDU events, counters,
flows, assets, edges and alerts on every sample and every corpus capture (documents
compared as parsed JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from otsec import _core
from otsec.audit import run_audit, run_learn
from otsec.baseline.learn import learn
from otsec.baseline.model import Baseline
from otsec.capture import NothingAnalysed
from otsec.detect import Detector
from otsec.detect.deviations import Deviations
from otsec.detect.incidents import incidents
from otsec.graph.edges import merged_edges
from otsec.inventory.assets import Inventory
from otsec.inventory.roles import flag_actors
from otsec.sinks.documents import (
    alert_document,
    asset_document,
    edge_document,
    incident_document,
)
from tests.oracle import CORPUS, corpus_rows, nothing_to_analyse
from tests.pyengine.capture_files import CaptureReader
from tests.pyengine.consumers import OldGraph, OldInventory
from tests.pyengine.engine import Engine
from tests.pyengine.files import EventFiles
from tests.pyengine.linktypes import format_mac
from tests.pyengine.net.flows import ip_text

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
SAMPLES = sorted(PCAPS.glob("*.pcap"))
ROWS = corpus_rows()


def run_former(path: Path, out: Path, consumers: list) -> Engine:
    """The former Python engine over one capture, its events written under `out`."""
    files = EventFiles(out)
    engine = Engine([files, *consumers])
    with CaptureReader(path) as reader:
        for pkt in reader:
            engine.packet(*pkt)
    engine.finish()
    files.close()
    return engine


def python_engine(path: Path, out: Path) -> tuple[Engine, list[bytes]]:
    engine = run_former(path, out, [])
    return engine, (out / "events.ndjson").read_bytes().splitlines()


def core_engine(path: Path, out: Path, threads: bool = True) -> tuple[dict, list[bytes]]:
    capture = _core.Capture(str(path))
    engine = _core.Engine(events=str(out / "core-events.ndjson"), threads=threads)
    while engine.feed(capture):
        pass
    engine.finish()
    return engine.stats(), (out / "core-events.ndjson").read_bytes().splitlines()


def compare(path: Path, tmp: Path) -> None:
    py, py_lines = python_engine(path, tmp)
    stats, core_lines = core_engine(path, tmp)
    assert len(core_lines) == len(py_lines), f"{path}: {len(core_lines)} != {len(py_lines)} PDUs"
    for i, (a, b) in enumerate(zip(py_lines, core_lines, strict=True)):
        assert orjson.loads(a) == orjson.loads(b), f"{path}: event {i + 1} differs"
    st = py.stats
    assert stats["packets"] == st.packets and stats["bytes"] == st.bytes
    assert stats["pdus"] == dict(st.pdus)
    # the reference engine does not compare overlapping TCP data or IP fragments
    network = ("tcp_overlap_conflict", "ip_fragment_overlap_conflict")
    anomalies = {k: n for k, n in stats["anomalies"].items() if k.split(".")[1] not in network}
    assert anomalies == dict(st.anomalies)
    for name in ("tcp_packets", "udp_packets", "arp_packets", "not_ip", "invalid", "other_ip",
                 "unrecognised_on_ot_port"):
        assert stats[name] == getattr(st, name), name
    assert stats["ip_fragments"] == st.ip_fragments
    assert stats["flows"]["created"] == py.flows.stats.created
    assert stats["flows"]["peak"] == py.flows.stats.peak
    for name in ("gaps", "skipped_bytes", "retransmitted_bytes", "out_of_order_segments"):
        assert stats["reassembly"][name] == getattr(py.reassembly, name), name


class _Policy:
    """The detector, as the former engine's consumer."""

    def __init__(self) -> None:
        self.detector = Detector()

    def on_event(self, event: object) -> None:
        self.detector.on_event(event)  # type: ignore[arg-type]

    def on_flow_end(self, flow: object) -> None:
        pass

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        pass


#: rules whose counting came with the core (the former engine had nothing like them)
CORE_ONLY = {"otsec-net-connection-flood", "otsec-net-scan", "otsec-net-device-unresponsive",
             "otsec-net-tcp-overlap-conflict", "otsec-net-ip-fragment-overlap-conflict"}


def former_audit(path: Path, out: Path) -> tuple[list, list, list]:
    """Assets, edges and alerts as the Python engine and its consumers made them."""
    inventory, graph, policy = OldInventory(), OldGraph(), _Policy()
    run_former(path, out, [inventory, graph, policy])
    inv = Inventory()
    inv.hosts, inv.arp = inventory.hosts, inventory.arp
    assets, id_of = inv.assets()
    edges = merged_edges(graph.edges, id_of)
    asset_by_ip = {ip: a for a in assets for ip in a.ips}
    ip_of = {a.id: a.ips[0] for a in assets if a.ips}
    alerts = sorted(policy.detector.alerts, key=lambda a: (a.start, a.rule.id))
    alert_docs = [alert_document(a, asset_by_ip, "none") for a in alerts]
    # each alert gets its incident's id; the actors of incidents get their flags
    flag_actors(assets, [incident_document(i) for i in incidents(alert_docs)])
    return ([asset_document(a) for a in assets], [edge_document(e, ip_of) for e in edges],
            alert_docs)


def compare_audit(path: Path, tmp: Path, nothing: bool = False) -> None:
    (tmp / "former").mkdir()
    assets, edges, alerts = former_audit(path, tmp / "former")
    if nothing:  # the former engine gave an empty, clean-looking result here
        assert (assets, alerts) == ([], [])
        with pytest.raises(NothingAnalysed):
            run_audit([path], tmp)
        return
    run_audit([path], tmp)
    ours = json.loads((tmp / "assets.json").read_text())
    for doc in ours:  # process values came with the core: the former engine had none
        doc["otsec"]["asset"].pop("points", None)
    assert ours == orjson.loads(orjson.dumps(assets))
    assert json.loads((tmp / "edges.json").read_text()) == orjson.loads(orjson.dumps(edges))
    ours = [orjson.loads(x) for x in (tmp / "alerts.ndjson").read_bytes().splitlines()]
    ours = [a for a in ours if a["rule"]["id"] not in CORE_ONLY]
    assert ours == orjson.loads(orjson.dumps(alerts))


def compare_all(path: Path, tmp: Path, nothing: bool = False) -> None:
    (tmp / "events").mkdir()
    compare(path, tmp / "events")
    (tmp / "audit").mkdir()
    compare_audit(path, tmp / "audit", nothing)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_samples_give_the_same_results(path: Path, tmp_path: Path) -> None:
    compare_all(path, tmp_path)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_the_record_thread_changes_nothing(path: Path, tmp_path: Path) -> None:
    """The core's record side on a thread of its own or on the reading thread: the same
    lines and counters."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    assert core_engine(path, tmp_path / "one", threads=False) == core_engine(path, tmp_path / "two")


@pytest.mark.corpus
@pytest.mark.skipif(not ROWS, reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("row", ROWS, ids=[r["local_path"] for r in ROWS])
def test_corpus_gives_the_same_results(row: dict[str, str], tmp_path: Path) -> None:
    compare_all(CORPUS / row["local_path"], tmp_path, nothing_to_analyse(row))


def former_learn(path: Path, out: Path) -> Baseline:
    inventory, graph = OldInventory(), OldGraph()
    run_former(path, out, [inventory, graph])
    inv = Inventory()
    inv.hosts, inv.arp = inventory.hosts, inventory.arp
    assets, _ = inv.assets()
    return learn(assets, list(graph.edges.values()), [str(path)])


class _Protecting(_Policy):
    """The detector and the baseline's deviations, as the former engine's consumers."""

    def __init__(self, baseline: Baseline) -> None:
        super().__init__()
        self.deviations = Deviations(baseline, self.detector.add, self.detector.catalog)
        self.detector.protect_with(baseline, self.deviations)

    def on_event(self, event: object) -> None:
        super().on_event(event)
        self.deviations.on_event(event)  # type: ignore[arg-type]

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        self.deviations.on_arp(format_mac(mac), ip_text(ip), ts)


@pytest.mark.parametrize("protocol", ["modbus", "s7", "dnp3"])
def test_learning_and_protecting_give_the_same_baseline_and_alerts(protocol: str,
                                                                   tmp_path: Path) -> None:
    normal = PCAPS / f"{protocol}-normal.pcap"
    intrusion = PCAPS / f"{protocol}-intrusion.pcap"
    (tmp_path / "a").mkdir()
    former = former_learn(normal, tmp_path / "a")
    ours = run_learn([normal])
    assert ours.to_json() == former.to_json()
    policy = _Protecting(former)
    engine = run_former(intrusion, tmp_path / "a", [policy])
    policy.deviations.finish(engine.stats.last_ts or 0.0, [])
    result = run_audit([intrusion], tmp_path / "b", baseline=ours)
    theirs = sorted((a.rule.id, a.count, a.message) for a in policy.detector.alerts)
    mine = sorted((a["rule"]["id"], a["otsec"]["alert"]["count"], a["message"])
                  for a in result.alerts)
    assert mine == theirs and len(mine) > 3
