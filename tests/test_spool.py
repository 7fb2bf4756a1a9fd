"""The spool without a cluster: what a full spool gives up, and a spool that cannot be
written (a full file system, a path that is no folder) costs documents, never the run."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otsec.cli import main
from otsec.sinks import spool as spool_module
from otsec.sinks.bulk import matched
from otsec.sinks.search import Spool, changed_findings, deliver, finding_actions
from otsec.sinks.spool import BULK, FINDING, STATE, default_spool_dir, sensor_spool

ROOT = Path(__file__).resolve().parents[1]
INTRUSION = ROOT / "pcaps" / "modbus-intrusion.pcap"
NOWHERE = "http://127.0.0.1:9"  # nothing listens: the cluster is down


def spooled(directory: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(directory.glob("spool-*.ndjson"))
            for line in f.read_text().splitlines()]


def event(i: int) -> dict:
    return {"_op_type": "create", "_index": "logs-otsec.event-t", "_id": f"e{i}",
            "_source": {"message": "x" * 100}}


def alert(i: int) -> dict:
    return {"_op_type": "create", "_index": "logs-otsec.alert-t", "_id": f"a{i}",
            "_source": {"message": "y" * 100}}


def test_a_full_spool_sheds_metrics_and_events_before_alerts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(spool_module, "FILE_BYTES", 2000, raising=False)
    spool = Spool(tmp_path / "s", max_bytes=20_000)
    first = spool.put(event(i) for i in range(300))
    assert first.stored < 300 and first.shed == {BULK: 300 - first.stored}
    with caplog.at_level(logging.WARNING):
        later = deliver(None, [alert(i) for i in range(11)], spool)
    assert later.spooled == 11 and later.dropped > 0
    assert later.dropped_by == {"metrics, PDU events and heartbeats": later.dropped}
    kept = spooled(spool.dir)
    assert [a["_id"] for a in kept if "alert" in a["_index"]] == [f"a{i}" for i in range(11)]
    assert len(kept) == first.stored - later.dropped + 11  # whole files of events went
    assert spool.size() <= 20_000
    (warning,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert "is full" in warning and f"{later.dropped} metrics, PDU events" in warning


def test_alerts_are_turned_away_only_when_nothing_is_worth_less_and_never_silently(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path / "s", max_bytes=3000)
    with caplog.at_level(logging.WARNING):
        outcome = deliver(None, [alert(i) for i in range(100)], spool)
    assert outcome.spooled > 0 and outcome.dropped == 100 - outcome.spooled
    assert outcome.dropped_by == {"alerts and incidents": outcome.dropped}
    assert any(r.levelno == logging.ERROR and "alerts and incidents" in r.getMessage()
               for r in caplog.records)


def test_a_later_audits_alerts_get_into_a_spool_full_of_events(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTSEC_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("OTSEC_SPOOL_MAX_BYTES", "200000")
    assert main(["audit", str(INTRUSION), "--out", str(tmp_path / "a"), "--format", "json",
                 "--es", NOWHERE, "--es-events", "--es-namespace", "first"]) == 0
    capsys.readouterr()
    caplog.clear()
    assert main(["audit", str(INTRUSION), "--out", str(tmp_path / "b"), "--format", "json",
                 "--es", NOWHERE, "--es-events", "--es-namespace", "later"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)["search"]
    alerts = (tmp_path / "b" / "alerts.ndjson").read_text().splitlines()
    kept = spooled(tmp_path / "spool")
    later = {a["_id"] for a in kept if a["_index"] == "logs-otsec.alert-later"}
    assert later == {json.loads(x)["event"]["id"] for x in alerts}  # every one of them
    assert summary["dropped"] > 0 and set(summary["dropped_by"]) <= {
        "metrics, PDU events and heartbeats", "asset, edge and sensor state"}
    (said,) = [r for r in caplog.records if "dropped" in r.getMessage()]  # on the console
    assert said.levelno == logging.WARNING and "metrics, PDU events" in said.getMessage()


def test_spool_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.put([alert(1), event(2)])
    spool.bury("test", alert(3))
    assert spool.dir.stat().st_mode & 0o777 == 0o700
    files = [*spool.files(), spool.dead_letter]
    assert len(files) == 3 and all(f.stat().st_mode & 0o777 == 0o600 for f in files)


def test_the_default_spool_lies_under_a_state_directory_its_sensor_owns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        public_tmp: Callable[[str], Path]) -> None:
    monkeypatch.delenv("OTSEC_SPOOL_DIR", raising=False)
    if os.geteuid() == 0:
        assert Spool().dir == Path("/var/lib/otsec/spool")
    monkeypatch.setenv("OTSEC_SPOOL_DIR", str(tmp_path / "env"))
    assert Spool().dir == tmp_path / "env"
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    if os.geteuid() != 0:
        pytest.skip("needs root to give the spool away")
    state = public_tmp("otsec-state-")  # as /var/lib/otsec: root's, reachable by all
    state.chmod(0o755)
    path = default_spool_dir(state, owner=(nobody.pw_uid, nobody.pw_gid))
    assert path == state / "spool" and path.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_uid == nobody.pw_uid
    script = ("import os, sys; from pathlib import Path; from otsec.sinks.search import Spool; "
              f"os.setgid({nobody.pw_gid}); os.setuid({nobody.pw_uid}); "
              "print(Spool(Path(sys.argv[1])).put([{'_index': 'logs-otsec.alert-x', "
              "'_id': '1', '_source': {}}]).stored)")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False)
    assert done.stdout.strip() == "1", done.stderr  # after giving up root, it still spools
    monkeypatch.setenv("OTSEC_SPOOL_DIR", str(state / "chosen"))
    chosen = sensor_spool(state, owner=(nobody.pw_uid, nobody.pw_gid))
    assert chosen.dir == state / "chosen" and chosen.dir.stat().st_uid == nobody.pw_uid
    monkeypatch.delenv("OTSEC_SPOOL_DIR")
    assert sensor_spool(state).dir == path


def test_a_spool_that_is_no_folder_costs_documents_not_the_audit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("OTSEC_SPOOL_DIR", str(tmp_path / "file" / "spool"))
    assert main(["audit", str(INTRUSION), "--out", str(tmp_path / "o"), "--format", "json",
                 "--es", NOWHERE]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["search"]["lost"] > 0 and summary["search"]["spooled"] == 0
    assert (tmp_path / "o" / "alerts.ndjson").read_text()  # the local files are all there
    assert caplog.text.count("cannot create its directory") == 1


def test_a_broken_spool_is_logged_once_per_process(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("")
    spool = Spool(tmp_path / "file" / "spool")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # three flushes of a live sensor
            outcome = deliver(None, [alert(1)], spool)
            assert outcome.lost == 1
    assert sum("cannot create" in r.getMessage() for r in caplog.records) == 1
    assert spool.errors == 3  # counted every time


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real file system of 128 kB (tmpfs), mounted for the test."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small file system")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs",
                           str(where)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_file_system_costs_documents_and_leaves_no_tmp(
        small_fs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    spool_dir = small_fs / "spool"
    monkeypatch.setenv("OTSEC_SPOOL_DIR", str(spool_dir))
    args = ["audit", str(INTRUSION), "--format", "json", "--es", NOWHERE, "--es-events"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)["search"]
    assert summary["lost"] > 0 and summary["spooled"] > 0  # what fitted was kept
    assert caplog.text.count("cannot write") == 1
    assert not list(spool_dir.glob("*.tmp"))
    kept = spooled(spool_dir)  # only complete lines: every one of them can be shipped
    assert len(kept) == summary["spooled"]
    assert {a["_index"] for a in kept} >= {"logs-otsec.alert-default"}
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # and the next run goes on
    assert (tmp_path / "b" / "alerts.ndjson").read_text()
    assert not list(spool_dir.glob("*.tmp"))


def test_a_tmp_left_by_a_writer_that_died_is_completed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    tmp = spool.dir / f"spool-00000000000000000001-{dead}-000001-p0.ndjson.tmp"
    spool.dir.mkdir(parents=True)
    lines = [json.dumps(alert(i)) for i in range(5)]
    tmp.write_text("\n".join(lines) + "\n" + lines[0][:20])  # cut short mid-line
    rewrite = spool.dir / "spool-00000000000000000002-1-000001-p1.ndjson"
    rewrite.write_text(json.dumps(event(1)) + "\n")
    half = rewrite.with_name(f"{rewrite.name}.{dead}.rewrite.tmp")
    half.write_text("")  # a rewrite of it that never finished
    assert spool.recover() == 1
    assert not list(spool.dir.glob("*.tmp"))
    assert [a["_id"] for a in spooled(spool.dir)] == [*(f"a{i}" for i in range(5)), "e1"]


def test_finding_actions_keep_one_current_document_per_alert_and_incident() -> None:
    alert_doc = {"@timestamp": "2024-01-01T00:00:00Z",
                 "event": {"id": "a1", "end": "2024-01-01T00:00:05Z"}}
    incident_doc = {"@timestamp": "2024-01-01T00:00:00Z",
                    "event": {"id": "i1", "end": "2024-01-01T00:00:09Z"}}
    actions = list(finding_actions([alert_doc], [incident_doc], "ns"))
    assert [(a["_op_type"], a["_index"], a["_id"]) for a in actions] == [
        ("create", "logs-otsec.incident-ns", "i1"), ("index", "otsec-incidents-latest", "i1"),
        ("create", "logs-otsec.alert-ns", "a1"), ("index", "otsec-alerts-latest", "a1")]
    assert actions[3]["version"] == 1704067205000
    assert actions[3]["version_type"] == "external_gte"
    assert all(spool_module.worth(a) == FINDING for a in actions)


def test_plain_http_credentials_are_warned_about_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(spool_module, "_warned", set(), raising=False)
    monkeypatch.setenv("OTSEC_ES_USERNAME", "otsec")
    monkeypatch.setenv("OTSEC_ES_PASSWORD", "secret")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # three flushes of a live sensor
            deliver(NOWHERE, [], Spool(tmp_path / "s"))
    assert caplog.text.count("plain http") == 1


ops = st.sampled_from(["create", "index", "update"])
ids = st.sampled_from(["a", "b", "c", "d"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ops, ids), max_size=12), st.randoms(use_true_random=False),
       st.integers(min_value=0, max_value=12))
def test_each_answer_goes_to_the_action_with_its_operation_and_id(
        keys: list[tuple[str, str]], rng: Any, missing: int) -> None:
    """Whatever the order of the answers, and with some missing, each action gets an
    answer of its own operation and id (one each), or none."""
    actions = [{"_op_type": op, "_id": i, "n": n} for n, (op, i) in enumerate(keys)]
    items = [{op: {"_id": i, "status": 200 + n}} for n, (op, i) in enumerate(keys)]
    rng.shuffle(items)
    items = items[missing:]
    answers = matched(actions, items)
    got = [a for a in answers if a is not None]
    assert len(got) == len(items) and len({id(a) for a in got}) == len(got)
    for action, answer in zip(actions, answers, strict=True):
        if answer is not None:
            assert answer["_id"] == action["_id"]
            (op,) = [o for item in items for o, info in item.items() if info is answer]
            assert op == action["_op_type"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.sampled_from([FINDING, STATE, BULK]), min_size=1, max_size=40),
                min_size=1, max_size=6))
def test_a_spool_never_outgrows_its_room_nor_sheds_upward(puts: list[list[int]]) -> None:
    """Puts of documents of any worth in any order: the spool stays in its bytes, every
    document is kept or counted, nothing gives way to what is worth less, and alerts and
    incidents give way to nothing at all."""
    index = {FINDING: "logs-otsec.alert-p", STATE: "otsec-assets-latest",
             BULK: "logs-otsec.event-p"}

    def census(spool: Spool) -> dict[int, int]:
        kinds = [spool_module.worth(a) for a in spooled(spool.dir)]
        return {k: kinds.count(k) for k in index}

    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "s", max_bytes=2500)
        old = spool_module.FILE_BYTES
        spool_module.FILE_BYTES = 600
        try:
            for n, kinds in enumerate(puts):
                before = census(spool)
                had = {(a["_id"], spool_module.worth(a)) for a in spooled(spool.dir)}
                put = spool.put({"_index": index[k], "_id": f"{n}-{i}",
                                 "_source": {"m": "z" * 90}} for i, k in enumerate(kinds))
                after = census(spool)
                assert spool.size() <= 2500
                for k in index:
                    assert before[k] + kinds.count(k) - after[k] == put.shed.get(k, 0)
                assert sum(after.values()) - sum(before.values()) <= put.stored
                assert put.stored == sum(1 for a in spooled(spool.dir)
                                         if a["_id"].startswith(f"{n}-"))
                have = {a["_id"] for a in spooled(spool.dir)}
                for gone in {k for i, k in had if i not in have}:  # gave way: to better
                    assert gone != FINDING and any(k <= gone for k in kinds)
                if put.shed.get(FINDING):  # alerts turned away: no room even without the rest
                    assert after[STATE] + after[BULK] <= kinds.count(STATE) + kinds.count(BULK)
        finally:
            spool_module.FILE_BYTES = old


def test_one_process_at_a_time_delivers_a_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.put([alert(1)])
    other = Spool(tmp_path / "s")  # e.g. `otsec ship` while a sensor delivers
    with spool.delivering() as first, other.delivering() as second:
        assert first and not second
    with spool.delivering() as again:
        assert again


def test_a_live_sensor_sends_the_alerts_and_incidents_that_changed() -> None:
    sent: dict[str, str] = {}
    docs = [{"event": {"id": "a1"}, "otsec": {"alert": {"count": 1}}},
            {"event": {"id": "i1"}, "otsec": {"incident": {"alerts": 1}}}]
    assert changed_findings(docs, sent) == docs
    assert changed_findings(docs, sent) == []
    grown = [docs[0], {"event": {"id": "i1"}, "otsec": {"incident": {"alerts": 2}}}]
    assert changed_findings(grown, sent) == [grown[1]]
