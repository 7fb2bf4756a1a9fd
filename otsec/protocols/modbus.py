"""Modbus/TCP in Python: its records, what its function codes mean, what its records tell
of a device and how they are shown and stored (the compiled core parses the bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from otsec.events import Event
from otsec.protocols.spec import LONG, ProtocolSpec, RecordSpec


class ModbusAnomaly(StrEnum):
    """Ways a Modbus/TCP byte stream can deviate from the specification."""

    INVALID_PROTOCOL_ID = "invalid_protocol_id"  # MBAP protocol identifier is not 0
    INVALID_LENGTH = "invalid_length"  # MBAP length < 2 or > 254 (PDU over 253 bytes)
    LENGTH_MISMATCH = "length_mismatch"  # PDU body disagrees with its function's layout
    INVALID_FUNCTION_CODE = "invalid_function_code"  # FC 0, or FC >= 0x80 in a request
    UNSOLICITED_RESPONSE = "unsolicited_response"  # response to no request we saw
    FUNCTION_MISMATCH = "function_mismatch"  # response function differs from the request's
    FLOODED = "flooded"  # too many requests waiting for responses on one flow
    RESYNCHRONISED = "resynchronised"  # bytes skipped to find the next PDU header
    DISSECTOR_FAILURE = "dissector_failure"  # the dissector failed; the flow is not parsed
    TCP_OVERLAP_CONFLICT = "tcp_overlap_conflict"  # overlapping TCP data differed
    IP_FRAGMENT_OVERLAP_CONFLICT = "ip_fragment_overlap_conflict"  # overlapping fragments differed


@dataclass(slots=True, kw_only=True)
class ModbusPdu(Event):
    """One Modbus/TCP application PDU (MBAP header + function code + data)."""

    protocol: ClassVar[str] = "modbus"
    transaction_id: int
    unit_id: int
    function_code: int  # raw byte: exception responses carry code | 0x80
    length: int = 0  # MBAP length field
    exception_code: int | None = None
    subfunction: int | None = None  # FC 8
    mei_type: int | None = None  # FC 43
    address: int | None = None
    quantity: int | None = None
    value: int | None = None  # FC 5/6 written value
    write_address: int | None = None  # FC 23
    write_quantity: int | None = None  # FC 23
    umas_function: int | None = None  # FC 90
    device_id: dict[int, str] | None = None  # FC 43/14 objects
    server_id: str | None = None  # FC 17 (hex)
    run_indicator: bool | None = None  # FC 17
    anomalies: tuple[ModbusAnomaly, ...] = ()
    request: ModbusPdu | None = None  # on a response: the request it answers
    accepted: bool | None = None  # on a request: set when its response arrives

    @property
    def code(self) -> int:
        """The function without the exception bit."""
        return self.function_code & 0x7F

PORT = 502
WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 21, 22, 23})
UMAS = 90
PROGRAMMING_FUNCTIONS = frozenset({40, 41, 42, 125, 126})

FUNCTION_NAMES = {
    1: "read coils",
    2: "read discrete inputs",
    3: "read holding registers",
    4: "read input registers",
    5: "write single coil",
    6: "write single register",
    7: "read exception status",
    8: "diagnostics",
    11: "get comm event counter",
    12: "get comm event log",
    15: "write multiple coils",
    16: "write multiple registers",
    17: "report server id",
    20: "read file record",
    21: "write file record",
    22: "mask write register",
    23: "read/write multiple registers",
    24: "read FIFO queue",
    43: "encapsulated interface transport",
    90: "UMAS",
}

TABLES = {1: "coil", 5: "coil", 15: "coil", 2: "discrete input", 4: "input register",
          3: "holding register", 6: "holding register", 16: "holding register",
          22: "holding register", 23: "holding register", 24: "holding register",
          21: "file record"}  # fmt: skip
EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
              4: "server device failure", 5: "acknowledge", 6: "server device busy",
              8: "memory parity error", 10: "gateway path unavailable",
              11: "gateway target failed to respond"}  # fmt: skip
DIAG_NAMES = {0: "return query data", 1: "restart communications",
              2: "return diagnostic register", 4: "force listen-only mode",
              10: "clear counters and diagnostic register"}  # fmt: skip


def function_name(code: int) -> str:
    return FUNCTION_NAMES.get(code & 0x7F, f"function {code & 0x7F}")


def refusal(code: int) -> str:
    """Words for an exception code."""
    return EXCEPTIONS.get(code, f"exception {code}")


def _table(pdu: ModbusPdu) -> str:
    table = TABLES.get(pdu.code, "register")
    return table if (pdu.quantity or 1) == 1 else f"{pdu.quantity} {table}s"


def _value(pdu: ModbusPdu) -> str:
    if pdu.value is None:
        return ""
    if pdu.function_code == 5:
        return " = ON" if pdu.value == 0xFF00 else " = OFF" if pdu.value == 0 else ""
    return f" = {pdu.value}" if pdu.function_code == 6 else ""


TEXTS = {
    "function_name": lambda pdu: FUNCTION_NAMES.get(pdu.code, f"function {pdu.code}"),
    "table": _table,
    "value_text": _value,
    "reason": lambda pdu: "" if pdu.exception_code is None else refusal(pdu.exception_code),
}


def document(pdu: ModbusPdu) -> dict[str, Any]:
    """The ``otsec.modbus`` object of a PDU's ECS document."""
    d: dict[str, Any] = {
        "transaction_id": pdu.transaction_id,
        "unit_id": pdu.unit_id,
        "function_code": pdu.function_code,
    }
    for name in ("exception_code", "subfunction", "mei_type", "address", "quantity", "value"):
        value = getattr(pdu, name)
        if value is not None:
            d[name] = value
    if pdu.write_address is not None:
        d["write_address"] = pdu.write_address
        d["write_quantity"] = pdu.write_quantity
    if pdu.umas_function is not None:
        d["umas_function"] = pdu.umas_function
    if pdu.device_id:
        d["device_identification"] = {str(k): v for k, v in sorted(pdu.device_id.items())}
    if pdu.server_id is not None:
        d["server_id"] = pdu.server_id
        d["run_indicator"] = pdu.run_indicator
    if pdu.anomalies:
        d["anomalies"] = [str(a) for a in pdu.anomalies]
    req = pdu.request
    if req is not None and req.address is not None:
        d["request"] = {"address": req.address, "quantity": req.quantity}
    return d


def identity(pdu: ModbusPdu) -> tuple[dict[str, str], str] | None:
    """What an answer tells of the device's identity (FC 43 device identification, FC 17
    server id), and where that came from."""
    if pdu.from_client:
        return None
    if pdu.device_id:
        d = pdu.device_id
        ident = {"manufacturer": d.get(0), "model_identifier": d.get(1),
                 "firmware_version": d.get(2), "model_name": d.get(5) or d.get(4)}
        found = {k: v for k, v in ident.items() if v}
        return (found, "modbus-fc43") if found else None
    if pdu.server_id:
        raw = bytes.fromhex(pdu.server_id)
        text = raw.decode("ascii", "replace").strip("\x00 ")
        printable = raw and all(32 <= b < 127 for b in raw.rstrip(b"\x00"))
        return {"model_identifier": text if printable else pdu.server_id}, "modbus-fc17"
    return None


MAPPINGS = {
    f"otsec.modbus.{name}": LONG
    for name in ("transaction_id", "unit_id", "function_code", "exception_code", "subfunction",
                 "mei_type", "address", "quantity", "umas_function")
}

SPEC = ProtocolSpec("modbus", frozenset({PORT}), frozenset({PORT}), (
    RecordSpec("modbus", ModbusPdu, ModbusAnomaly, function_name, document, MAPPINGS,
               WRITE_FUNCTIONS, "#1f77b4", identity=identity, texts=TEXTS),
), server_role="plc")
