"""Modbus/TCP detections: which PDUs match which built-in rule.

Per-PDU rules look at requests; threshold rules (scans) count exception responses per
client over a sliding 60-second window.
"""

from __future__ import annotations

from otsec.detect.alerts import Finding
from otsec.detect.catalog import CATALOG
from otsec.detect.window import Threshold
from otsec.events import MALFORMED, Anomaly, ModbusPdu
from otsec.protocols.modbus import (
    FUNCTION_NAMES,
    PROGRAMMING_FUNCTIONS,
    PUBLIC_FUNCTIONS,
    UMAS,
    WRITE_FUNCTIONS,
)

SCAN_WINDOW = 60.0
MAX_TRACKED_CLIENTS = 10_000
UNIT_SCAN = 16  # distinct unit ids from one client within the window (gateways poll a few)

EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

TABLES = {
    1: "coil", 5: "coil", 15: "coil", 2: "discrete input", 4: "input register",
    3: "holding register", 6: "holding register", 16: "holding register",
    22: "holding register", 23: "holding register", 24: "holding register",
}  # fmt: skip

DIAG_RULES = {4: "otsec-modbus-listen-only", 1: "otsec-modbus-restart-comms",
              10: "otsec-modbus-clear-counters"}  # fmt: skip
DIAG_NAMES = {0: "return query data", 1: "restart communications",
              2: "return diagnostic register", 4: "force listen-only mode",
              10: "clear counters and diagnostic register"}  # fmt: skip


def exception_text(code: int | None) -> str:
    if code is None:
        return ""
    return EXCEPTIONS.get(code, f"exception {code}")


def umas_rule(sub: int | None) -> str:
    if sub in (0x40, 0x41):
        return "otsec-modbus-umas-start-stop"
    if sub is not None and 0x30 <= sub <= 0x34:
        return "otsec-modbus-umas-download"
    if sub is not None and 0x20 <= sub <= 0x22:
        return "otsec-modbus-umas-upload"
    return "otsec-modbus-umas"


class ModbusDetector:
    """Turns Modbus PDUs and anomalies into findings."""

    def __init__(self) -> None:
        self.function_scan = Threshold(3)
        self.address_scan = Threshold(5)
        self.unit_errors = Threshold(5)
        self.units: dict[str, dict[int, float]] = {}

    def anomaly(self, anomaly: Anomaly) -> list[Finding]:
        if anomaly.kind not in MALFORMED:
            return []
        return [
            Finding(
                CATALOG["otsec-modbus-malformed"],
                anomaly,
                f"sent a malformed Modbus PDU ({anomaly.kind}: {anomaly.detail}) to",
                key=(str(anomaly.kind),),
                answerable=False,
            )
        ]

    def pdu(self, pdu: ModbusPdu) -> list[Finding]:
        out: list[Finding] = []
        if pdu.anomalies:
            bad = [a for a in pdu.anomalies if a in MALFORMED]
            if bad:
                out.append(
                    Finding(
                        CATALOG["otsec-modbus-malformed"],
                        pdu,
                        f"sent a malformed Modbus {pdu.direction} "
                        f"(FC {pdu.function_code}: {', '.join(bad)}) to",
                        key=tuple(str(b) for b in bad),
                        answerable=False,
                    )
                )
        if pdu.from_client:
            self._request(pdu, out)
        elif pdu.exception_code is not None:
            self._exception(pdu, out)
        return out

    def _request(self, pdu: ModbusPdu, out: list[Finding]) -> None:
        fc = pdu.function_code
        unit = f"unit {pdu.unit_id}"
        if fc in WRITE_FUNCTIONS:
            out.append(Finding(CATALOG["otsec-modbus-write"], pdu, _write_phrase(pdu),
                               key=(pdu.unit_id, fc), target=unit))
        elif fc == 8 and pdu.subfunction is not None:
            sub = pdu.subfunction
            rule = DIAG_RULES.get(sub, "otsec-modbus-diagnostics")
            name = DIAG_NAMES.get(sub, f"sub-function {sub}")
            out.append(Finding(CATALOG[rule], pdu, f"sent diagnostics '{name}' (FC 8/{sub}) to",
                               key=(sub,), target=unit))
        elif fc == 43 and pdu.mei_type == 14:
            out.append(Finding(CATALOG["otsec-modbus-device-id"], pdu,
                               "read the device identification (FC 43/14) of",
                               key=(fc,), target=unit))
        elif fc == 17:
            out.append(Finding(CATALOG["otsec-modbus-device-id"], pdu,
                               "read the server id (FC 17) of", key=(fc,), target=unit))
        elif fc == UMAS:
            sub = pdu.umas_function
            label = f"0x{sub:02X}" if sub is not None else "?"
            out.append(Finding(CATALOG[umas_rule(sub)], pdu,
                               f"sent UMAS function {label} (FC 90) to", key=(sub,),
                               target=unit))
        elif fc in PROGRAMMING_FUNCTIONS:
            out.append(Finding(CATALOG["otsec-modbus-programming"], pdu,
                               "sent programming function codes {details} to",
                               target=unit, detail=str(fc)))
        elif 0 < fc < 0x80 and fc not in PUBLIC_FUNCTIONS:
            out.append(Finding(CATALOG["otsec-modbus-nonstandard-function"], pdu,
                               "sent non-standard function codes {details} to",
                               target=unit, detail=str(fc)))
        self._unit_sweep(pdu, out)

    def _unit_sweep(self, pdu: ModbusPdu, out: list[Finding]) -> None:
        if pdu.flow is None:
            return
        client = _client(pdu)
        units = self.units.get(client)
        if units is None:
            if len(self.units) >= MAX_TRACKED_CLIENTS:
                self.units.clear()
            units = self.units[client] = {}
        units[pdu.unit_id] = pdu.ts
        if len(units) >= UNIT_SCAN:
            recent = [u for u, t in units.items() if pdu.ts - t <= SCAN_WINDOW]
            if len(recent) >= UNIT_SCAN:
                out.append(Finding(CATALOG["otsec-modbus-unit-scan"], pdu,
                                   f"addressed {len(recent)} unit ids within 60 s on",
                                   key=("units",), answerable=False))
            for u in [u for u, t in units.items() if pdu.ts - t > SCAN_WINDOW]:
                del units[u]

    def _exception(self, pdu: ModbusPdu, out: list[Finding]) -> None:
        client = _client(pdu)
        code = pdu.exception_code
        if code == 1 and self.function_scan.hit(client, pdu.ts):
            rule, what = "otsec-modbus-function-scan", "illegal function"
        elif code == 2 and self.address_scan.hit(client, pdu.ts):
            rule, what = "otsec-modbus-address-scan", "illegal data address"
        elif code in (4, 10, 11) and self.unit_errors.hit(client, pdu.ts):
            rule, what = "otsec-modbus-unit-scan", exception_text(code)
        else:
            return
        out.append(Finding(CATALOG[rule], pdu, f"drew repeated '{what}' exceptions from",
                           answerable=False, swap=True))


def _write_phrase(pdu: ModbusPdu) -> str:
    fc = pdu.function_code
    table = TABLES.get(fc, "file record" if fc == 21 else "register")
    qty = pdu.quantity or 1
    noun = table if qty == 1 else f"{qty} {table}s"
    at = f" at {pdu.address}" if pdu.address is not None else ""
    value = f" = {pdu.value}" if pdu.value is not None and fc == 6 else ""
    if fc == 5 and pdu.value is not None:
        value = " = ON" if pdu.value == 0xFF00 else " = OFF" if pdu.value == 0 else ""
    name = FUNCTION_NAMES.get(fc, f"FC {fc}")
    return f"wrote {noun}{at}{value} ({name}, FC {fc}) on"


def _client(pdu: ModbusPdu) -> str:
    flow = pdu.flow
    return flow.ip_texts[flow.client_side] if flow is not None else ""
