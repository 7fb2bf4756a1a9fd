"""The built-in rule catalogue: what each rule means, how bad it is, and its ATT&CK mapping.

Rules here are descriptions only; which PDUs trigger them is decided in the
per-protocol detector modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from otsec.detect.attack import TECHNIQUES

SEVERITIES = {"low": 1, "medium": 2, "high": 3, "critical": 4}
RISK = {1: 21, 2: 47, 3: 73, 4: 99}  # Elastic's usual risk score per severity


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    description: str  # the one-line rationale
    severity: str
    techniques: tuple[str, ...]
    category: str
    protocol: str
    reference: str
    version: int = 1

    @property
    def severity_level(self) -> int:
        return SEVERITIES[self.severity]

    @property
    def tactics(self) -> tuple[str, ...]:
        seen: list[str] = []
        for t in self.techniques:
            for tactic in TECHNIQUES[t][1]:
                if tactic not in seen:
                    seen.append(tactic)
        return tuple(seen)


MODBUS_SPEC = "https://modbus.org/docs/Modbus_Application_Protocol_V1_1b3.pdf"

_MODBUS = [
    Rule("otsec-modbus-write", "Modbus write", "A client changed coils or registers "
         "(FC 5, 6, 15, 16, 21, 22, 23); writes change the process and must come from "
         "known engineering or HMI hosts.", "high", ("T0855", "T0836"), "write", "modbus",
         MODBUS_SPEC),
    Rule("otsec-modbus-listen-only", "Modbus force listen-only mode", "FC 8 sub-function 4 "
         "silences a device until it is restarted.", "critical", ("T0814",), "diagnostics",
         "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-restart-comms", "Modbus restart communications", "FC 8 sub-function 1 "
         "restarts the device's communications port.", "high", ("T0816",), "diagnostics",
         "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-clear-counters", "Modbus clear counters", "FC 8 sub-function 10 "
         "erases the diagnostic counters that would show an attack.", "medium", ("T0872",),
         "diagnostics", "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-diagnostics", "Modbus diagnostics query", "FC 8 diagnostics are "
         "rarely part of normal polling.", "low", ("T0888",), "diagnostics", "modbus",
         MODBUS_SPEC),
    Rule("otsec-modbus-device-id", "Modbus device identification", "FC 43/14 and FC 17 reveal "
         "vendor, model and firmware: typical reconnaissance.", "low", ("T0888",), "recon",
         "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-umas-start-stop", "Schneider UMAS start/stop PLC", "UMAS (FC 90) "
         "sub-functions 0x40/0x41 start or stop the controller.", "critical",
         ("T0858",), "programming", "modbus", "https://attack.mitre.org/software/S1072/"),
    Rule("otsec-modbus-umas-download", "Schneider UMAS program download", "UMAS (FC 90) "
         "sub-functions 0x30-0x34 download a program to the controller.", "critical",
         ("T0843",), "programming", "modbus", "https://attack.mitre.org/software/S1072/"),
    Rule("otsec-modbus-umas-upload", "Schneider UMAS program upload", "UMAS (FC 90) "
         "sub-functions 0x20-0x22 read the controller's program.", "high", ("T0845",),
         "programming", "modbus", "https://attack.mitre.org/software/S1072/"),
    Rule("otsec-modbus-umas", "Schneider UMAS session", "UMAS (FC 90) is Schneider's "
         "engineering protocol; only engineering workstations speak it.", "medium",
         ("T0888",), "programming", "modbus", "https://attack.mitre.org/software/S1072/"),
    Rule("otsec-modbus-programming", "Modbus legacy programming function", "FC 40, 41, 42, "
         "125 and 126 program or flash controllers (Modicon).", "critical",
         ("T0843", "T0839"), "programming", "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-nonstandard-function", "Modbus non-standard function code", "A "
         "request used a function code that is neither public nor a known vendor one.",
         "medium", ("T0855",), "protocol", "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-function-scan", "Modbus function-code scan", "Three or more "
         "'illegal function' exceptions to one client within 60 s.", "medium", ("T0846",),
         "scan", "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-address-scan", "Modbus address scan", "Five or more 'illegal data "
         "address' exceptions to one client within 60 s.", "medium", ("T0846", "T0861"),
         "scan", "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-unit-scan", "Modbus unit-id scan", "Five or more gateway/unit "
         "exceptions, or 16 or more unit ids, from one client within 60 s.", "medium",
         ("T0846", "T0861"), "scan", "modbus", MODBUS_SPEC),
    Rule("otsec-modbus-malformed", "Malformed Modbus PDU", "Protocol id not 0, a length that "
         "disagrees with the PDU, a PDU over 253 bytes or function code 0: crafted or "
         "fuzzing traffic.", "medium", ("T0814",), "protocol", "modbus", MODBUS_SPEC),
]  # fmt: skip

CATALOG: dict[str, Rule] = {r.id: r for r in _MODBUS}
