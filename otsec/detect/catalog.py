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

S7_REF = "https://wiki.wireshark.org/S7comm"
DNP3_REF = "https://www.dnp.org/About/Overview-of-DNP3-Protocol"

_S7 = [
    Rule("otsec-s7-plc-stop", "S7 PLC stop", "Job function 0x29 stops the CPU: the process "
         "it controls stops with it.", "critical", ("T0858", "T0816"), "operating-mode",
         "s7comm", S7_REF),
    Rule("otsec-s7-pi-service", "S7 PI service", "Job function 0x28 starts the CPU "
         "(P_PROGRAM), compresses memory (_GARB), copies RAM to ROM (_MODU), deletes (_DELE) or "
         "inserts (_INSE) blocks.", "critical", ("T0858", "T0843"), "operating-mode",
         "s7comm", S7_REF),
    Rule("otsec-s7-download", "S7 program download", "Functions 0x1a-0x1c load blocks into "
         "the PLC: its logic changes.", "critical", ("T0843",), "programming", "s7comm",
         S7_REF),
    Rule("otsec-s7-upload", "S7 program upload", "Functions 0x1d-0x1f copy the PLC's blocks "
         "out: the logic and know-how leave the controller.", "high", ("T0845",),
         "programming", "s7comm", S7_REF),
    Rule("otsec-s7-write", "S7 write variable", "Job function 0x05 writes process memory "
         "(DB, flags, outputs).", "high", ("T0855", "T0836"), "write", "s7comm", S7_REF),
    Rule("otsec-s7-password", "S7 set or clear password", "Userdata security functions "
         "(group 5, sub 1/2) change the CPU's protection.", "high", ("T0892",), "security",
         "s7comm", S7_REF),
    Rule("otsec-s7-set-clock", "S7 set clock", "Userdata time functions (group 7, sub 2/4) "
         "set the CPU clock that time-stamps its events.", "medium", ("T0855",), "write",
         "s7comm", S7_REF),
    Rule("otsec-s7-force", "S7 force or modify variables", "Programmer commands (group 1, "
         "sub 0x08/0x09/0x0c) force I/O, modify variables or reset memory.", "critical",
         ("T0835", "T0836"), "programming", "s7comm", S7_REF),
    Rule("otsec-s7-szl-read", "S7 SZL read", "System status list reads reveal module, "
         "firmware and serial numbers: reconnaissance unless an engineering tool does it.",
         "low", ("T0888",), "recon", "s7comm", S7_REF),
    Rule("otsec-s7-block-info", "S7 block listing", "Block functions (group 3) list and "
         "describe the program's blocks.", "low", ("T0888",), "recon", "s7comm", S7_REF),
    Rule("otsec-s7plus-session", "S7comm-plus object operation", "CreateObject, DeleteObject "
         "and Invoke open sessions or run functions on S7-1200/1500 CPUs.", "low",
         ("T0888",), "programming", "s7comm_plus", S7_REF),
    Rule("otsec-s7-malformed", "Malformed S7comm PDU", "Broken TPKT/COTP/S7 headers or "
         "lengths: crafted traffic or a fuzzer.", "medium", ("T0814",), "protocol", "s7comm",
         S7_REF),
]  # fmt: skip

_DNP3 = [
    Rule("otsec-dnp3-restart", "DNP3 cold/warm restart", "FC 13/14 restart the outstation.",
         "critical", ("T0816",), "operating-mode", "dnp3", DNP3_REF),
    Rule("otsec-dnp3-application", "DNP3 stop/initialize/start application", "FC 16/17/18 "
         "change what the outstation runs.", "critical", ("T0858",), "operating-mode", "dnp3",
         DNP3_REF),
    Rule("otsec-dnp3-disable-unsolicited", "DNP3 disable unsolicited responses", "FC 21 "
         "outside a master's start-up silences the outstation's event reports.", "high",
         ("T0878",), "alarm", "dnp3", DNP3_REF),
    Rule("otsec-dnp3-write", "DNP3 write", "FC 2 writes values (time with g50, attributes); "
         "clearing the restart bit (g80) is routine and excluded.", "high",
         ("T0855", "T0836"), "write", "dnp3", DNP3_REF),
    Rule("otsec-dnp3-control", "DNP3 control operation", "Select/operate/direct operate "
         "(FC 3-6) on relay outputs (g12) or analog outputs (g41) act on the process.",
         "high", ("T0855", "T0831"), "control", "dnp3", DNP3_REF),
    Rule("otsec-dnp3-freeze", "DNP3 freeze", "FC 7-12 freeze counters.", "medium",
         ("T0855",), "control", "dnp3", DNP3_REF),
    Rule("otsec-dnp3-file-config", "DNP3 file or configuration operation", "File transfer "
         "(FC 25-31), save configuration (FC 19) or initialize data (FC 15).", "high",
         ("T0843", "T0839"), "programming", "dnp3", DNP3_REF),
    Rule("otsec-dnp3-broadcast", "DNP3 broadcast request", "Link destination 0xFFFD-0xFFFF "
         "reaches every outstation on the line.", "high", ("T0855",), "control", "dnp3",
         DNP3_REF),
    Rule("otsec-dnp3-unsupported-sweep", "DNP3 unsupported-function sweep", "Three or more "
         "responses with IIN2 'function not supported', 'object unknown' or 'parameter "
         "error' to one master within 60 s.", "medium", ("T0846",), "scan", "dnp3",
         DNP3_REF),
    Rule("otsec-dnp3-malformed", "Malformed DNP3", "Bad link CRCs, reserved function codes, "
         "inconsistent lengths or object headers.", "medium", ("T0814",), "protocol", "dnp3",
         DNP3_REF),
]  # fmt: skip

BASELINE_REF = "https://attack.mitre.org/matrices/ics/"

_BASELINE = [
    Rule("otsec-baseline-new-asset", "New asset", "An IP address the baseline never saw is "
         "talking on the OT network.", "medium", ("T0846",), "baseline", "any", BASELINE_REF),
    Rule("otsec-baseline-rogue-master", "Rogue master", "A host outside the baseline sends "
         "commands (writes, controls, programming) to a controller.", "critical", ("T0848",),
         "baseline", "any", BASELINE_REF),
    Rule("otsec-baseline-new-mac", "IP address with a new MAC", "A known IP answers from a MAC "
         "the baseline never saw for it: ARP spoofing or a swapped device.", "high",
         ("T0830",), "baseline", "any", BASELINE_REF),
    Rule("otsec-baseline-new-edge", "New communication path", "A client talks to a server with "
         "a protocol the baseline never saw between them.", "medium", ("T0869",), "baseline",
         "any", BASELINE_REF),
    Rule("otsec-baseline-new-command", "New command on a known path", "A write, control or "
         "programming function never learned on this edge.", "high", ("T0855",), "baseline",
         "any", BASELINE_REF),
    Rule("otsec-baseline-new-function", "New function on a known path", "A read or other "
         "function never learned on this edge.", "medium", ("T0801",), "baseline", "any",
         BASELINE_REF),
    Rule("otsec-baseline-new-unit", "New unit or station address", "A Modbus unit id or DNP3 "
         "address never learned on this edge.", "medium", ("T0861",), "baseline", "any",
         BASELINE_REF),
    Rule("otsec-baseline-new-range", "New register range", "Registers or memory outside the "
         "ranges learned on this edge.", "medium", ("T0861",), "baseline", "any",
         BASELINE_REF),
    Rule("otsec-baseline-identity-change", "Device identity changed", "Vendor, model or "
         "firmware reported by a device differs from the baseline.", "high", ("T0839",),
         "baseline", "any", BASELINE_REF),
    Rule("otsec-baseline-silent-edge", "Polling stopped", "A cyclic polling edge of the "
         "baseline went silent while the network carried on.", "high", ("T0815",),
         "baseline", "any", BASELINE_REF),
    Rule("otsec-baseline-rate", "Request rate far above the baseline", "An edge carries far "
         "more requests per minute than it did while learning.", "medium", ("T0814",),
         "baseline", "any", BASELINE_REF),
]  # fmt: skip

CATALOG: dict[str, Rule] = {r.id: r for r in (*_MODBUS, *_S7, *_DNP3, *_BASELINE)}
