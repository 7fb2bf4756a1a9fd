"""Many sensors, one cluster: sites, the merged inventory, sensor health, a shared baseline.

Against the real OpenSearch node of scripts/search-node: two sensors of site "north" see
overlapping traffic (the same PLC and operator, over Modbus and S7comm), a third at site
"south" reuses the same addresses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from otsec.baseline.model import Baseline
from otsec.cli import main, site_baseline
from otsec.health import Health, Reading, silent
from otsec.sensor import Sensor
from otsec.sinks.search import Spool, audit_actions, deliver
from tests.searchnode import count, needs_node, search

ROOT = Path(__file__).resolve().parents[1]
MODBUS, S7 = ROOT / "pcaps" / "modbus-intrusion.pcap", ROOT / "pcaps" / "s7-intrusion.pcap"
PLC = "10.77.0.10"
SENSORS = {  # name: (site, captures)
    "north-a": ("north", [MODBUS]),
    "north-b": ("north", [S7, MODBUS]),  # overlaps north-a: the Modbus traffic too
    "south-a": ("south", [MODBUS]),  # another plant, the same addresses
}


def audit(cluster: str, name: str, out: Path) -> dict:
    site, captures = SENSORS[name]
    assert main(["audit", *map(str, captures), "--out", str(out), "--format", "json",
                 "--es", cluster, "--es-namespace", "fleet", "--site", site, "--sensor",
                 name]) == 0
    return json.loads((out / "summary.json").read_text())


def plc_docs(out: Path) -> tuple[dict, dict]:
    """A sensor's own asset document of the PLC and its Modbus edge document."""
    asset = next(a for a in json.loads((out / "assets.json").read_text())
                 if PLC in a["host"]["ip"])
    edge = next(e for e in json.loads((out / "edges.json").read_text())
                if e["network"]["protocol"] == "modbus" and e["destination"]["ip"] == PLC)
    return asset, edge


def latest(index: str, site: str, term: dict) -> list[dict]:
    return search(index, {"bool": {"filter": [{"term": {"labels.site": site}}, {"term": term}]}})


@needs_node
def test_three_sensors_two_sites_one_merged_inventory(cluster: str, tmp_path: Path,
                                                      spool_dir: Path) -> None:
    assert main(["setup", "--es", cluster]) == 0
    outs = {name: tmp_path / name for name in SENSORS}
    summaries = {name: audit(cluster, name, outs[name]) for name in SENSORS}
    alerts_before = count("logs-otsec.alert-fleet")
    assert alerts_before == sum(s["alerts"]["total"] for s in summaries.values())  # none lost

    # the sites never collide: one PLC document per site
    north = latest("otsec-assets-latest", "north", {"host.ip": PLC})
    south = latest("otsec-assets-latest", "south", {"host.ip": PLC})
    assert len(north) == 1 and len(south) == 1
    (plc,), (other,) = north, south
    assert sorted(plc["observer"]["name"]) == ["north-a", "north-b"]
    assert other["observer"]["name"] == ["south-a"]
    # the PLC both northern sensors saw: one document, both sensors' services, counts summed
    a, b = plc_docs(outs["north-a"])[0], plc_docs(outs["north-b"])[0]
    asset = plc["otsec"]["asset"]
    assert {(s["protocol"], s["port"]) for s in asset["services"]} == {
        ("modbus", 502), ("s7comm", 102)}
    assert asset["packets"] == a["otsec"]["asset"]["packets"] + b["otsec"]["asset"]["packets"]
    assert asset["first_seen"] == min(a["otsec"]["asset"]["first_seen"],
                                      b["otsec"]["asset"]["first_seen"])
    assert asset["last_seen"] == max(a["otsec"]["asset"]["last_seen"],
                                     b["otsec"]["asset"]["last_seen"])
    assert other["otsec"]["asset"]["packets"] == plc_docs(outs["south-a"])[0]["otsec"][
        "asset"]["packets"]
    # the Modbus edge both saw: function counts summed per code and direction
    ea, eb = plc_docs(outs["north-a"])[1], plc_docs(outs["north-b"])[1]
    edge_id = {"otsec.edge.id": ea["otsec"]["edge"]["id"]}
    assert eb["otsec"]["edge"]["id"] == edge_id["otsec.edge.id"]
    (edge,) = latest("otsec-edges-latest", "north", edge_id)

    def counts(doc: dict) -> dict:
        return {(f["code"], f["direction"]): f["count"] for f in doc["otsec"]["edge"]["functions"]}

    both = counts(ea)
    for key, n in counts(eb).items():
        both[key] = both.get(key, 0) + n
    assert counts(edge) == both
    assert edge["otsec"]["edge"]["pdus"] == ea["otsec"]["edge"]["pdus"] + eb["otsec"]["edge"][
        "pdus"]

    # a rerun, and a replayed spool of an earlier run, change no count
    audit(cluster, "north-b", tmp_path / "rerun")
    alerts = [json.loads(x) for x in (outs["north-a"] / "alerts.ndjson").open()]
    assets = json.loads((outs["north-a"] / "assets.json").read_text())
    edges = json.loads((outs["north-a"] / "edges.json").read_text())
    Spool().put(audit_actions(alerts, assets, edges, namespace="fleet"))
    assert main(["ship", "--es", cluster]) == 0
    (again,) = latest("otsec-assets-latest", "north", {"host.ip": PLC})
    assert again["otsec"]["asset"]["packets"] == asset["packets"]
    (edge_again,) = latest("otsec-edges-latest", "north", edge_id)
    assert counts(edge_again) == both
    assert count("logs-otsec.alert-fleet") == alerts_before

    # every sensor said it ran (an audit's one heartbeat says it stopped: never silent)
    assert main(["sensors", "--es", cluster, "--silent-after", "0"]) == 0
    sites = sorted({site for site, _c in SENSORS.values()})  # other tests' sensors aside
    beats = search("otsec-sensors-latest", {"terms": {"labels.site": sites}})
    assert {(d["labels"]["site"], d["observer"]["name"]) for d in beats} == {
        (site, name) for name, (site, _c) in SENSORS.items()}
    assert all(d["otsec"]["sensor"]["state"] == "stopped" for d in beats)


@needs_node
def test_an_older_sensors_spool_still_ships(cluster: str, tmp_path: Path,
                                            spool_dir: Path) -> None:
    """Documents written before sites existed (no labels.site, no observer.name, the
    -latest asset overwritten under its bare id) index with today's templates."""
    assert main(["setup", "--es", cluster]) == 0
    out = tmp_path / "o"
    assert main(["audit", str(MODBUS), "--out", str(out), "--format", "json"]) == 0
    alert = json.loads((out / "alerts.ndjson").open().readline())
    asset = json.loads((out / "assets.json").read_text())[0]
    alert["labels"] = {}
    del alert["observer"]["name"]
    del asset["labels"], asset["observer"]
    Spool().put([{"_op_type": "create", "_index": "logs-otsec.alert-old", "_id": "old-1",
                  "_source": alert},
                 {"_op_type": "index", "_index": "otsec-assets-latest",
                  "_id": asset["entity"]["id"], "_source": asset}])
    assert main(["ship", "--es", cluster]) == 0
    assert count("logs-otsec.alert-old") == 1
    assert search("otsec-assets-latest", {"ids": {"values": [asset["entity"]["id"]]}})
    assert not (spool_dir / "dead-letter.ndjson").exists()


def test_every_document_names_its_sensor_and_site(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert main(["audit", str(MODBUS), "--out", str(out), "--format", "json", "--site",
                 "plant-7", "--sensor", "cell-3"]) == 0
    docs = [json.loads(x) for name in ("events.ndjson", "alerts.ndjson", "incidents.ndjson",
                                       "metrics.ndjson") for x in (out / name).open()]
    docs += json.loads((out / "assets.json").read_text())
    docs += json.loads((out / "edges.json").read_text())
    assert docs
    for d in docs:
        assert d["observer"]["name"] == "cell-3" and d["labels"]["site"] == "plant-7", d
    other = tmp_path / "p"
    assert main(["audit", str(MODBUS), "--out", str(other), "--format", "json", "--site",
                 "plant-8", "--sensor", "cell-3"]) == 0

    def ids(folder: Path) -> set[str]:
        return {json.loads(x)["event"]["id"] for x in (folder / "alerts.ndjson").open()}

    assert ids(out) and not ids(out) & ids(other)  # two sites' alerts never share an id


@pytest.mark.parametrize("flag", [["--site", "north plant"], ["--sensor", "a/b"],
                                  ["--site", ""]])
def test_a_bad_site_or_sensor_name_is_a_usage_error(flag: list[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(MODBUS), "--out", str(tmp_path / "o"), *flag]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "letters, digits" in err


def test_health_alerts_on_drops_and_a_full_spool(tmp_path: Path) -> None:
    from otsec.detect.ruleset import load

    catalog = load([])
    health = Health(Sensor("north", "north-a", "eth1"), started=1000.0)
    first = health.beat(Reading(at=1060.0, packets=500, spool_max=100))
    assert first["otsec"]["sensor"]["state"] == "ok" and not health.alerts(catalog)
    dropping = health.beat(Reading(at=1120.0, packets=900, kernel_drops=40, spool_max=100))
    assert dropping["otsec"]["sensor"]["state"] == "dropping"
    assert dropping["otsec"]["sensor"]["since_last"] == {"seconds": 60.0, "packets": 400,
                                                         "kernel_drops": 40}
    health.beat(Reading(at=1180.0, packets=1300, kernel_drops=100, spool_max=100))
    health.beat(Reading(at=1240.0, packets=1700, kernel_drops=100, spool_max=100,
                        spool_bytes=95, spool_oldest=1200.0))
    (loss,) = [a for a in health.alerts(catalog) if a["rule"]["id"] == "otsec-sensor-packet-loss"]
    assert loss["otsec"]["alert"]["count"] == 100  # one episode: 40 + 60 dropped
    assert "100 packets" in loss["message"] and loss["observer"]["name"] == "north-a"
    (full,) = [a for a in health.alerts(catalog) if a["rule"]["id"] == "otsec-sensor-spool-full"]
    assert full["threat"]["technique"]["id"] and full["labels"] == {"site": "north"}
    last = health.last
    assert last is not None and last["otsec"]["sensor"]["spool"]["age_s"] == 40.0
    assert silent([last], now=1240.0 + 181) == [last]
    assert silent([last], now=1240.0 + 100) == []
    stopped = health.beat(Reading(at=1250.0), stopping=True)
    assert silent([stopped], now=1e12) == []  # it said it stopped
    # the site's policy: a planned cluster outage, and packet loss accepted on this site
    policy = tmp_path / "policy.yaml"
    policy.write_text("suppress:\n  - {rule: otsec-sensor-packet-loss, reason: small box}\n"
                      "maintenance:\n  - {start: 1970-01-01T00:20:00Z, "
                      "end: 1970-01-01T00:21:00Z, reason: cluster upgrade}\n")
    assert health.alerts(load([policy])) == []


@needs_node
def test_a_site_shares_one_baseline(cluster: str, tmp_path: Path) -> None:
    a, b, both = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "both.json"
    assert main(["learn", str(MODBUS), "--baseline", str(a)]) == 0
    assert main(["learn", str(S7), "--baseline", str(b)]) == 0
    assert main(["learn", "--baseline", str(both), "--merge", str(a), "--merge", str(b)]) == 0
    merged = Baseline.load(both)
    assert set(merged.edges) == set(Baseline.load(a).edges) | set(Baseline.load(b).edges)
    es = ["--es", cluster, "--site", "share"]
    assert main(["baseline", "publish", str(a), *es, "--sensor", "north-a"]) == 0
    assert main(["baseline", "publish", str(b), *es, "--sensor", "north-b", "--merge"]) == 0
    fetched = tmp_path / "fetched.json"
    assert main(["baseline", "fetch", str(fetched), *es]) == 0
    assert main(["baseline", "diff", str(fetched), str(both)]) == 0  # version 2: the union
    first = tmp_path / "v1.json"
    assert main(["baseline", "fetch", str(first), *es, "--version", "1"]) == 0
    assert set(Baseline.load(first).edges) == set(Baseline.load(a).edges)
    assert main(["baseline", "fetch", str(first), "--es", cluster, "--site", "nowhere"]) == 2
    started = tmp_path / "new-sensor.json"  # a new sensor of the site starts with it
    site_baseline(started, cluster, "share")
    assert set(Baseline.load(started).edges) == set(merged.edges)


# -- a live sensor that goes silent ---------------------------------------------------

NS = f"otsec-fleet-{os.getpid()}"


def _netns_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a veth pair"
    probe = subprocess.run(["ip", "netns", "add", NS], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
    return None if probe.returncode == 0 else "cannot create network namespaces here"


@needs_node
@pytest.mark.netns
@pytest.mark.skipif(_netns_reason() is not None, reason=_netns_reason() or "")
def test_a_killed_sensor_shows_as_silent(cluster: str, capsys: pytest.CaptureFixture[str],
                                         public_tmp: Callable[[str], Path]) -> None:
    """A monitor on a veth end (the other end in a namespace of the test, nothing sent)
    beats every second; killed, it says nothing more, and `otsec sensors` calls it silent."""
    assert main(["setup", "--es", cluster]) == 0
    dev = f"otfl{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", NS], check=True)
    subprocess.run(["ip", "link", "add", dev, "type", "veth", "peer", "name", "feed0", "netns",
                    NS], check=True)
    subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
    subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    out = public_tmp("otsec-fleet-")
    env = dict(os.environ, OTSEC_SPOOL_DIR=str(out / "spool"))
    sensor = subprocess.Popen([sys.executable, "-m", "otsec", "monitor", "-i", dev, "--out",
                               str(out), "--es", cluster, "--site", "east", "--sensor",
                               "east-live", "--heartbeat", "1", "--flush-every", "0.5"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        for _ in range(100):
            beats = search("metrics-otsec.sensor-*", {"term": {"observer.name": "east-live"}})
            if len(beats) >= 2:
                break
            assert sensor.poll() is None, sensor.communicate()[1][-2000:]
            time.sleep(0.2)
        assert len(beats) >= 2
        assert {b["otsec"]["sensor"]["mode"] for b in beats} == {"monitor"}
        assert beats[0]["observer"]["ingress"]["interface"]["name"] == dev
        os.kill(sensor.pid, signal.SIGKILL)  # a crash: no last word
        sensor.wait(timeout=10)
        time.sleep(2.5)
        capsys.readouterr()
        assert main(["sensors", "--es", cluster, "--site", "east", "--silent-after", "2",
                     "--format", "json"]) == 1
        (row,) = json.loads(capsys.readouterr().out)
        assert row["sensor"] == "east-live" and row["state"] == "silent"
    finally:
        if sensor.poll() is None:
            sensor.kill()
        subprocess.run(["ip", "link", "del", dev], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)


def test_shipping_a_heartbeat_twice_keeps_one_newest(tmp_path: Path) -> None:
    from otsec.sinks.search import heartbeat_actions

    beat = Health(Sensor("north", "north-a")).beat(Reading(at=1_700_000_000.0))
    create, newest = heartbeat_actions(beat, "fleet")
    assert create["_index"] == "metrics-otsec.sensor-fleet"
    assert newest["_id"] == "north:north-a" and newest["version_type"] == "external"
    assert newest["version"] == 1_700_000_000_000
    assert deliver(None, [create, newest], Spool(tmp_path / "s")).spooled == 2


def test_a_live_sensor_ships_only_the_assets_and_edges_that_changed(tmp_path: Path) -> None:
    from otsec.monitor import changed_documents

    out = tmp_path / "o"
    assert main(["audit", str(MODBUS), "--out", str(out), "--format", "json"]) == 0
    assets = json.loads((out / "assets.json").read_text())
    edges = json.loads((out / "edges.json").read_text())
    sent: dict[str, str] = {}
    assert changed_documents(assets, sent) == assets and changed_documents(edges, sent) == edges
    assert changed_documents(assets, sent) == [] and changed_documents(edges, sent) == []
    assets[0]["otsec"]["asset"]["packets"] += 1  # one device had traffic since
    assert changed_documents(assets, sent) == [assets[0]]
    assert len(sent) == len(assets) + len(edges)  # one entry per document: bounded


@needs_node
def test_sensors_updating_one_device_at_once_all_count(cluster: str, tmp_path: Path,
                                                       spool_dir: Path) -> None:
    """Eight sensors of one site send their view of one PLC at the same moment: the
    cluster's version conflicts are retried, none of the views is lost."""
    import copy
    import threading

    assert main(["setup", "--es", cluster]) == 0
    out = tmp_path / "o"
    assert main(["audit", str(MODBUS), "--out", str(out), "--format", "json", "--site",
                 "busy"]) == 0
    plc = plc_docs(out)[0]
    names = [f"cell-{i}" for i in range(8)]
    views = []
    for i, name in enumerate(names):
        doc = copy.deepcopy(plc)
        doc["observer"] = dict(doc["observer"], name=name)
        doc["otsec"]["asset"]["packets"] = 10 ** i
        views.append(doc)
    results = []
    threads = [threading.Thread(target=lambda d=d: results.append(deliver(
        cluster, list(audit_actions([], [d], [], namespace="busy")), Spool())))
        for d in views]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r.spooled == 0 and r.dead_lettered == 0 for r in results), results
    (merged,) = latest("otsec-assets-latest", "busy", {"host.ip": PLC})
    assert sorted(merged["observer"]["name"]) == names
    assert merged["otsec"]["asset"]["packets"] == 11_111_111
