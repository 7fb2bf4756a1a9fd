"""Rules and baseline files written carelessly or with hostile intent: one line naming the
file (and line), exit 2, before any work starts; never a memory blow-up or a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otsec.baseline.model import MAX_RANGES, Baseline, EdgeEntry, merge_spans

ROOT = Path(__file__).resolve().parents[1]
NORMAL = ROOT / "pcaps" / "modbus-normal.pcap"

RULE = """
  - id: my-rule
    name: a rule
    description: what it means
    severity: high
    category: write
    techniques: [T0855]
    reference: https://example.org
    protocol: modbus
    message: a write
"""

BOMB = """a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]"""


def otsec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otsec", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def one_line_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("text", "needles"), [
    (BOMB + "\nrules:\n  - id: x\n    description: *g\n",
     ("bad.yaml:7:", "expands to more than")),
    ("rules:" + RULE.replace("[T0855]", "[[T0855]]"), ("bad.yaml:2:", "wrong type")),
    ("rules:" + RULE.replace("name: a rule", "name: [a, b]"),
     ("bad.yaml:3:", "'name' is a text, not a list")),
    ("rules:" + RULE.replace("severity: high", "severity: {a: 1}"),
     ("bad.yaml:5:", "not a mapping")),
    ("rules:" + RULE + "suppress:\n  - rule: otsec-no-such-rule\n",
     ("bad.yaml:12:", "'otsec-no-such-rule', which does not exist")),
    ("suppress:\n  - source_ip: not-an-ip\n", ("bad.yaml:2:", "not an IP address")),
    ("maintenance:\n  - {start: 2024-01-01, end: 2024-01-02, hosts: 10.0.0.1}\n",
     ("bad.yaml:2:", "'hosts' is a list")),
    ("[" * 200 + "]" * 200, ("bad.yaml",)),
], ids=["alias-bomb", "list-in-list", "list-as-name", "mapping-as-severity", "unknown-rule",
        "bad-address", "hosts-not-a-list", "deep-nesting"])
def test_bad_rules_files_are_one_line_with_file_and_line(tmp_path: Path, text: str,
                                                         needles: tuple[str, ...]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    started = time.monotonic()
    one_line_usage_error(otsec("rules", "validate", str(bad)), *needles)
    assert time.monotonic() - started < 30
    one_line_usage_error(otsec("audit", str(NORMAL), "--rules", str(bad), "--out",
                               str(tmp_path / "o")), "bad.yaml")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_suppression_by_network_and_normalised_address(tmp_path: Path) -> None:
    out = tmp_path / "o"
    intrusion = ROOT / "pcaps" / "modbus-intrusion.pcap"
    assert otsec("audit", str(intrusion), "--out", str(out)).returncode == 0
    before = json.loads((out / "summary.json").read_text())["alerts"]["total"]
    policy = tmp_path / "p.yaml"
    policy.write_text("suppress:\n  - source_ip: 0.0.0.0/0\n    reason: all of IPv4\n")
    assert otsec("audit", str(intrusion), "--rules", str(policy), "--out", str(out)).returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    assert before > 0 and summary["alerts"]["total"] < before
    assert summary["suppressed"]["suppress"] > 0


def baseline_with(**edge: object) -> dict:
    e = {"client": "10.0.0.1", "server": "10.0.0.2", "transport": "tcp", "port": 502,
         "protocol": "modbus", **edge}
    return {"version": 1, "assets": {}, "edges": {"k": e}, "sources": []}


@pytest.mark.parametrize(("data", "needle"), [
    ({"version": 1, "assets": [], "edges": {}}, "'assets' must be a mapping"),
    ({"version": 1, "assets": {"10.0.0.1": {"macs": "aa"}}}, "macs: must be a list of texts"),
    (baseline_with(functions={"request": "3"}), "functions: must be a mapping"),
    (baseline_with(ranges={"1/hr": [[0]]}), "ranges: must be"),
    (baseline_with(port="502"), "port: must be a whole number"),
    (baseline_with(colour="red"), "unknown field 'colour'"),
    ({"version": 1, "edges": {"k": {"client": "x"}}}, "missing server"),
], ids=["assets-list", "macs-text", "functions-text", "short-span", "port-text", "unknown",
        "missing"])
def test_bad_baselines_are_one_line(tmp_path: Path, data: dict, needle: str) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps(data))
    for args in (["baseline", "show", str(f)],
                 ["audit", str(NORMAL), "--baseline", str(f), "--out", str(tmp_path / "o")]):
        one_line_usage_error(otsec(*args), "b.json", needle)


def test_a_deeply_nested_baseline_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "b.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    one_line_usage_error(otsec("baseline", "show", str(f)), "b.json")


def test_merging_many_ranges_is_fast_and_keeps_the_closest_apart() -> None:
    spans = [[i * 3, i * 3] for i in range(200_000)] + [[10**6, 10**6 + 5]]
    started = time.monotonic()
    merged = merge_spans(spans)
    assert time.monotonic() - started < 5
    assert len(merged) == MAX_RANGES and merged[-1] == [10**6, 10**6 + 5]
    a = Baseline(edges={"k": EdgeEntry("a", "b", "tcp", 502, "modbus",
                                       ranges={"1/hr": spans[:100_000]})})
    b = Baseline(edges={"k": EdgeEntry("a", "b", "tcp", 502, "modbus",
                                       ranges={"1/hr": spans[100_000:]})})
    a.merge(b)
    assert len(a.edges["k"].ranges["1/hr"]) == MAX_RANGES
