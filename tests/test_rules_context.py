"""Rules on what no record holds (hosts' roles, the baseline's state, learned functions)
are matched in the core from what Python told it. The reference is Python deciding every
candidate as it happens (one packet at a time, the roles as the evidence so far has them):
the core gives the same alerts with a handful of records crossing instead of every one."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from otsec.audit import run_audit, run_learn
from otsec.capture import NothingAnalysed
from otsec.detect import compiled
from otsec.detect.ruleset import load
from otsec.pipeline import Pipeline
from tests import pcapgen as g
from tests.helpers import Conversation, holding_reply, read_holding
from tests.oracle import CORPUS, corpus_rows, nothing_to_analyse
from tests.pyengine.capture_files import CaptureReader

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
T0 = 1_764_000_000.0

RULES = """
rules:
  - id: site-plc-read
    name: Reads of a PLC the baseline did not learn
    description: Roles, baseline state and learned functions together.
    severity: low
    category: recon
    techniques: [T0801]
    reference: https://example.invalid/runbook
    protocol: modbus
    match: {direction: request, destination_role: plc, function_code: [1, 2, 3, 4],
            baseline_state: {ne: protecting}, function_learned: false}
    message: "read {table} of"
  - id: site-write-not-from-hmi
    name: Write from a host that is not an HMI
    description: Writes belong to HMIs.
    severity: high
    category: write
    techniques: [T0855]
    reference: https://example.invalid/runbook
    protocol: modbus
    match: {direction: request, function_code: [5, 6, 15, 16],
            source_role: {not_in: [hmi]}}
    message: "wrote {table} at {address} on"
    group_by: [function_code]
  - id: site-modbus-answer-to-station
    name: Answers to stations
    description: A response role check (the sender is the server).
    severity: low
    category: recon
    techniques: [T0801]
    reference: https://example.invalid/runbook
    protocol: modbus
    match: {direction: response, source_role: plc, destination_role: {ne: plc}}
    message: "answered"
  - id: site-s7-job-to-plc
    name: S7 job to a PLC while protecting
    description: Jobs to controllers once protecting, unless learned.
    severity: medium
    category: programming
    techniques: [T0843]
    reference: https://example.invalid/runbook
    protocol: s7comm
    match: {rosctr: 1, destination_role: plc, baseline_state: protecting,
            function_learned: false}
    message: "sent a job to"
  - id: site-dnp3-to-outstation
    name: DNP3 requests to an outstation
    description: Any request to an RTU-like outstation.
    severity: low
    category: control
    techniques: [T0855]
    reference: https://example.invalid/runbook
    protocol: dnp3
    match: {direction: request, destination_role: [rtu, plc]}
    message: "sent {function_name} to"
  - id: site-busy-controller
    name: Many requests to a controller
    description: A threshold counted only on records whose roles match.
    severity: low
    category: recon
    techniques: [T0801]
    reference: https://example.invalid/runbook
    protocol: any
    match: {direction: request, destination_role: [plc, rtu], function_learned: false}
    threshold: {count: 20, window: 30, by: client}
    message: "sent many requests to"
"""

SCENARIOS = {
    "modbus": ("modbus-normal.pcap", "modbus-intrusion.pcap"),
    "s7": ("s7-normal.pcap", "s7-intrusion.pcap"),
    "dnp3": ("dnp3-normal.pcap", "dnp3-intrusion.pcap"),
}


def _alerts(result: Any) -> list[tuple[Any, ...]]:
    """What an analyst sees of each alert (its id names rule, endpoints and start)."""
    out = []
    for doc in result.alerts:
        a = doc["otsec"]["alert"]
        out.append((doc["rule"]["id"], doc["source"]["ip"], doc["destination"]["ip"],
                    doc["event"]["start"], doc["event"]["end"], a["count"],
                    a.get("accepted"), a.get("rejected"), doc["message"]))
    return sorted(out, key=repr)


def _one_packet_at_a_time(self: Pipeline, paths: Sequence[str | Path],
                          progress: Any = None) -> list[str]:
    """Pipeline.run, handing every record over as soon as its packet is read."""
    for path in paths:
        with CaptureReader(Path(path)) as reader:
            for ts, linktype, buf, start, caplen, wirelen in reader:
                self.core.packet(ts, linktype, bytes(buf[start:start + caplen]), wirelen)
                self.drain()
    return []


def _audit(tmp: Path, name: str, capture: str, python_decides: bool,
           monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Any:
    """One audit of a sample (or of any capture, by its absolute path) with the site
    rules; ``python_decides``: the context conditions are left to the Python matcher for
    every candidate (the rules become passthrough), one packet at a time."""
    with monkeypatch.context() as m:
        if python_decides:
            m.setattr(compiled, "CONTEXT_FIELDS", frozenset())
            m.setattr(Pipeline, "run", _one_packet_at_a_time)
        return run_audit([PCAPS / capture], tmp / name, ruleset=load([tmp / "site.yaml"]),
                         **kw)


@pytest.mark.parametrize("protocol", sorted(SCENARIOS))
def test_context_rules_in_the_core_alert_as_python_does(
        protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site.yaml").write_text(RULES)
    normal, intrusion = SCENARIOS[protocol]
    baseline = run_learn([PCAPS / normal])
    runs: list[tuple[str, str, dict[str, Any]]] = [
        ("plain", intrusion, {}),
        ("protecting", intrusion, {"baseline": baseline}),
        ("learning", normal, {"learn_for": 20.0}),
    ]
    seen = 0
    for name, capture, kw in runs:
        core = _audit(tmp_path, f"{name}-core", capture, False, monkeypatch, **kw)
        python = _audit(tmp_path, f"{name}-py", capture, True, monkeypatch, **kw)
        assert _alerts(core) == _alerts(python), name
        seen += sum(1 for a in core.alerts if a["rule"]["id"].startswith("site-"))
    assert seen  # the rules matched something in every protocol's runs


def test_context_rules_do_not_send_every_candidate_across(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steady polling of a PLC under a role rule: the core decides nearly every record."""
    (tmp_path / "site.yaml").write_text(RULES)
    core = _audit(tmp_path, "core", "modbus-normal.pcap", False, monkeypatch)
    python = _audit(tmp_path, "py", "modbus-normal.pcap", True, monkeypatch)
    reads = next(a for a in core.alerts if a["rule"]["id"] == "site-plc-read")
    assert reads["otsec"]["alert"]["count"] > 100
    assert _alerts(core) == _alerts(python)
    # the candidates stayed in the core
    assert core.summary["records_to_policy"] * 10 < python.summary["records_to_policy"]


def test_roles_follow_the_baseline_the_learning_window_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the learning window closes, the baseline's roles stand for its hosts (and its
    state and functions change what the rules see) in the core as in Python."""
    (tmp_path / "site.yaml").write_text(RULES)
    learning = _audit(tmp_path, "learn", "modbus-intrusion.pcap", False, monkeypatch,
                      learn_for=10.0)
    python = _audit(tmp_path, "learn-py", "modbus-intrusion.pcap", True, monkeypatch,
                    learn_for=10.0)
    assert _alerts(learning) == _alerts(python)


HISTORIAN_RULE = """
rules:
  - id: site-historian-read
    name: Reads by a historian
    description: A role that time decides (a slow reader becomes a historian).
    severity: low
    category: recon
    techniques: [T0801]
    reference: https://example.invalid/runbook
    protocol: modbus
    match: {direction: request, function_code: 3, source_role: historian}
    message: "read registers of"
  - id: site-hmi-reads
    name: Reads by an HMI, counted
    description: A threshold on a role that time changes.
    severity: low
    category: recon
    techniques: [T0801]
    reference: https://example.invalid/runbook
    protocol: modbus
    match: {direction: request, source_role: hmi}
    threshold: {count: 3, window: 300, by: client}
    message: "read as an HMI from"
"""


def test_a_role_that_time_changes_is_asked_for_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One read every 20 s, a connection each: an HMI at first, a historian once a minute
    of slow reading is behind it. Nothing new is seen when that happens; the core asks
    again because the role it holds has aged."""
    frames = []
    for i in range(10):
        c = Conversation(client="10.0.0.30", cport=41000 + i)
        c.send(True, read_holding(i + 1))
        c.send(False, holding_reply(i + 1))
        c.frames += [c.frame(True, 0x11), c.frame(False, 0x11)]
        frames += [(T0 + 20 * i + k * 0.001, f) for k, f in enumerate(c.frames)]
    (tmp_path / "slow.pcap").write_bytes(g.pcap(frames))
    (tmp_path / "site.yaml").write_text(HISTORIAN_RULE)
    slow = str(tmp_path / "slow.pcap")
    core = _audit(tmp_path, "core", slow, False, monkeypatch)
    assert _alerts(core) == _alerts(_audit(tmp_path, "py", slow, True, monkeypatch))
    historian, hmi = sorted(core.alerts, key=lambda a: a["rule"]["id"])
    assert historian["otsec"]["alert"]["count"] == 5  # the reads from 100 s on
    assert historian["event"]["start"].startswith("2025-11-24T16:01:40")
    # the threshold counts only the reads made as an HMI: the third (at 40 s) crosses it,
    # the fourth and fifth fold in, and none from 100 s on
    assert hmi["rule"]["id"] == "site-hmi-reads"
    assert hmi["otsec"]["alert"]["count"] == 3
    assert hmi["event"]["end"].startswith("2025-11-24T16:01:20")


OT_ROWS = [r for r in corpus_rows() if not nothing_to_analyse(r)
           and int(r["packets"]) < 60_000
           and any(int(r[k] or 0) for k in ("modbus_pdu_frames", "s7comm_frames", "dnp3_frames"))]


@pytest.mark.skipif(not OT_ROWS, reason="the corpus is absent")
def test_context_rules_agree_on_every_corpus_capture(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every corpus capture with Modbus, S7comm or DNP3 (under 60k packets): the core's
    context rules alert as Python deciding each candidate as it happens."""
    (tmp_path / "site.yaml").write_text(RULES)
    differ, matched = [], 0
    for i, row in enumerate(OT_ROWS):
        path = CORPUS / row["local_path"]
        try:
            core = _audit(tmp_path, f"c{i}", str(path), False, monkeypatch)
        except NothingAnalysed:
            continue
        python = _audit(tmp_path, f"p{i}", str(path), True, monkeypatch)
        matched += sum(1 for a in core.alerts if a["rule"]["id"].startswith("site-"))
        if _alerts(core) != _alerts(python):
            differ.append(row["local_path"])
        shutil.rmtree(tmp_path / f"c{i}")
        shutil.rmtree(tmp_path / f"p{i}")
    assert differ == []
    assert matched > 100


def test_a_failing_role_policy_is_reported_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the role policy never stops the reading: it is reported each time a role is
    asked for (when a host changes, not per record), the host has no role for the rules,
    everything else is analysed."""
    (tmp_path / "site.yaml").write_text(RULES)
    reported: list[str] = []

    def broken(self: Pipeline, ip: str, row: Any, now: float) -> tuple[str | None, float]:
        raise RuntimeError(f"no role for {ip}")

    monkeypatch.setattr(Pipeline, "_role_for_rules", broken)
    monkeypatch.setattr("sys.unraisablehook", lambda u: reported.append(str(u.exc_value)))
    result = _audit(tmp_path, "o", "modbus-normal.pcap", False, monkeypatch)
    assert result.summary["pdus"] == {"modbus": 240}
    assert not [a for a in result.alerts if a["rule"]["id"].startswith("site-")]
    assert 0 < len(reported) <= 10  # 240 records: asked when the PLC appeared and changed
    assert all(r.startswith("no role for 10.") for r in reported)


def test_ctrl_c_in_a_role_policy_stops_the_audit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """While the core reads, Python code runs only when the core asks for a role: an
    interrupt arriving there stops the run (exit 130), it is not swallowed."""
    from otsec.cli import main

    (tmp_path / "site.yaml").write_text(RULES)

    def interrupted(self: Pipeline, ip: str, row: Any, now: float) -> tuple[str | None, float]:
        raise KeyboardInterrupt

    monkeypatch.setattr(Pipeline, "_role_for_rules", interrupted)
    code = main(["audit", str(PCAPS / "modbus-normal.pcap"), "--rules",
                 str(tmp_path / "site.yaml"), "--out", str(tmp_path / "o")])
    assert code == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "o" / "summary.json").exists()  # no partial run published
