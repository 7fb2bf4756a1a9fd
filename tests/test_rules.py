"""The YAML rule language: the built-in ruleset, validation errors, user rules and policy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from otsec.audit import run_audit
from otsec.detect.ruleset import RuleError, load

ROOT = Path(__file__).resolve().parents[1]
INTRUSION = ROOT / "pcaps" / "modbus-intrusion.pcap"

# every row of the detection catalogue, with the technique it must carry
CATALOGUE = {
    "otsec-baseline-new-asset": "T0846", "otsec-baseline-rogue-master": "T0848",
    "otsec-baseline-new-mac": "T0830", "otsec-baseline-new-edge": "T0869",
    "otsec-baseline-new-command": "T0855", "otsec-baseline-new-function": "T0801",
    "otsec-baseline-new-unit": "T0861", "otsec-baseline-new-range": "T0861",
    "otsec-baseline-silent-edge": "T0815", "otsec-baseline-identity-change": "T0839",
    "otsec-baseline-rate": "T0814",
    "otsec-modbus-write": "T0855", "otsec-modbus-listen-only": "T0814",
    "otsec-modbus-restart-comms": "T0816", "otsec-modbus-clear-counters": "T0872",
    "otsec-modbus-device-id": "T0888", "otsec-modbus-server-id": "T0888",
    "otsec-modbus-umas-start-stop": "T0858", "otsec-modbus-umas-download": "T0843",
    "otsec-modbus-programming": "T0843", "otsec-modbus-function-scan": "T0846",
    "otsec-modbus-address-scan": "T0846", "otsec-modbus-unit-scan": "T0846",
    "otsec-modbus-malformed": "T0814",
    "otsec-s7-plc-stop": "T0858", "otsec-s7-pi-service": "T0858", "otsec-s7-download": "T0843",
    "otsec-s7-upload": "T0845", "otsec-s7-write": "T0855", "otsec-s7-password": "T0892",
    "otsec-s7-set-clock": "T0855", "otsec-s7-force": "T0835", "otsec-s7-szl-read": "T0888",
    "otsec-s7-block-info": "T0888", "otsec-s7plus-session": "T0888",
    "otsec-dnp3-restart": "T0816", "otsec-dnp3-application": "T0858",
    "otsec-dnp3-disable-unsolicited": "T0878", "otsec-dnp3-write": "T0855",
    "otsec-dnp3-control": "T0831", "otsec-dnp3-freeze": "T0855",
    "otsec-dnp3-file-config": "T0843", "otsec-dnp3-broadcast": "T0855",
    "otsec-dnp3-unsupported-sweep": "T0846", "otsec-dnp3-malformed-link": "T0814",
}  # fmt: skip


def test_builtin_ruleset_covers_the_catalogue() -> None:
    rs = load()
    for rid, technique in CATALOGUE.items():
        rule = rs.rules[rid].rule
        assert technique in rule.techniques, rid
        assert rule.tactics and rule.reference.startswith("https://") and rule.description
    assert {Path(f).name for f in rs.files} >= {"modbus.yaml", "s7comm.yaml", "dnp3.yaml"}


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("rules:\n  - id: x\n    sevrity: high\n", 3, "unknown key 'sevrity'"),
        ("rules:\n  - id: x\n    name: n\n    description: d\n    severity: hihg\n"
         "    category: c\n    techniques: [T0855]\n    reference: r\n    protocol: modbus\n"
         "    message: m\n", 5, "unknown severity"),
        ("rules:\n  - id: x\n    name: n\n    description: d\n    severity: high\n"
         "    category: c\n    techniques: [T9999]\n    reference: r\n    protocol: modbus\n"
         "    message: m\n", 7, "unknown ATT&CK"),
        ("rules:\n  - id: x\n    name: n\n    description: d\n    severity: high\n"
         "    category: c\n    techniques: [T0855]\n    reference: r\n    protocol: modbus\n"
         "    match: {colour: red}\n    message: m\n", 10, "unknown field 'colour'"),
        ("rules:\n  - id: x\n    name: n\n    description: d\n    severity: high\n"
         "    category: c\n    techniques: [T0855]\n    reference: r\n    protocol: modbus\n"
         "    match: {function_code: {like: 3}}\n    message: m\n", 10, "unknown operator"),
        ("rules:\n  - id: x\n  name: [\n", 3, "not valid YAML"),
        ("suppress:\n  - reason: nothing named\n", 2, "names a rule"),
        ("maintenance:\n  - start: 2026-01-02T00:00:00Z\n    end: 2026-01-01T00:00:00Z\n", 2,
         "ends before it starts"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(RuleError) as err:
        load([f], builtin=False)
    assert f"{f}:{line}:" in str(err.value) and needle in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "otsec", "rules", "validate", str(f)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"bad.yaml:{line}:" in proc.stderr


USER_RULES = """
rules:
  - id: site-setpoint-register
    name: Setpoint register written
    description: Register 40 holds the boiler setpoint.
    severity: critical
    category: write
    techniques: [T0836]
    reference: https://example.invalid/site-runbook
    protocol: modbus
    match: {direction: request, function_code: 6, address: 40}
    message: "changed the boiler setpoint (register {address}{value_text}) on"
  - id: otsec-modbus-device-id
    name: Modbus device identification
    description: At this site identification reads are routine.
    severity: low
    category: recon
    techniques: [T0888]
    reference: https://example.invalid/site-runbook
    protocol: modbus
    match: {function_code: 43, mei_type: 14, unit_id: 99}
    message: "read the identity of"
"""


def test_user_rules_add_and_override(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(USER_RULES)
    result = run_audit([INTRUSION], tmp_path / "o", ruleset=load([f]))
    by_rule = {a["rule"]["id"]: a for a in result.alerts}
    site = by_rule["site-setpoint-register"]
    assert site["event"]["severity"] == 4 and "= 9999" in site["message"]
    assert "otsec-modbus-device-id" not in by_rule  # overridden: unit 99 only


def test_suppression_and_maintenance(tmp_path: Path) -> None:
    baseline = run_audit([INTRUSION], tmp_path / "a")
    first = min(a["event"]["start"] for a in baseline.alerts)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""
suppress:
  - rule: otsec-modbus-write
    source_ip: 10.77.0.66
    reason: commissioning
maintenance:
  - start: "{first}"
    end: "2099-01-01T00:00:00Z"
    hosts: [10.77.0.10]
    reason: planned work on the PLC
""")
    quiet = run_audit([INTRUSION], tmp_path / "b", ruleset=load([policy]))
    assert quiet.alerts == []
    assert quiet.summary["suppressed"]["suppress"] >= 3
    assert quiet.summary["suppressed"]["maintenance"] >= 1


def test_rules_cli(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "otsec", "rules", "explain", "otsec-s7-plc-stop"],
                         capture_output=True, text=True, check=True).stdout
    assert "T0858 Change Operating Mode" in out and "s7comm.yaml" in out
    listed = subprocess.run([sys.executable, "-m", "otsec", "rules", "list"],
                            capture_output=True, text=True, check=True).stdout
    assert "otsec-dnp3-broadcast" in listed
    user = tmp_path / "site.yaml"
    user.write_text(USER_RULES)
    main_out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "otsec", "audit", str(INTRUSION), "--rules",
                           str(user), "--out", str(main_out), "--format", "json"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    ids = {json.loads(x)["rule"]["id"] for x in (main_out / "alerts.ndjson").open()}
    assert "site-setpoint-register" in ids


ROLE_RULES = """
rules:
  - id: site-reads-from-plc
    name: Reads from a PLC while protecting
    description: Matches on the destination's role and the baseline state.
    severity: low
    category: recon
    techniques: [T0801]
    reference: https://example.invalid/site-runbook
    protocol: modbus
    match: {direction: request, destination_role: plc, function_code: 3,
            baseline_state: {ne: protecting}, function_learned: false}
    message: "read holding registers of"
"""


def test_rules_match_roles_and_baseline_state(tmp_path: Path) -> None:
    f = tmp_path / "roles.yaml"
    f.write_text(ROLE_RULES)
    normal = ROOT / "pcaps" / "modbus-normal.pcap"
    result = run_audit([normal], tmp_path / "o", ruleset=load([f]))
    (alert,) = result.alerts
    assert alert["rule"]["id"] == "site-reads-from-plc" and alert["otsec"]["alert"]["count"] > 10
    from otsec.audit import run_learn

    protected = run_audit([normal], tmp_path / "p", ruleset=load([f]),
                          baseline=run_learn([normal]))
    assert protected.alerts == []  # protecting, and the function is learned
