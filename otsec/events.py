"""The typed records that dissectors emit and every later stage consumes.

Dissectors fill the protocol fields; the engine stamps ``ts``, ``frame`` and ``flow``.
Nothing here decides whether an event is notable: that is the detect package's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


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


#: anomalies that mean the PDU itself is malformed (as opposed to odd conversation state)
MALFORMED = frozenset(
    {
        ModbusAnomaly.INVALID_PROTOCOL_ID,
        ModbusAnomaly.INVALID_LENGTH,
        ModbusAnomaly.LENGTH_MISMATCH,
        ModbusAnomaly.INVALID_FUNCTION_CODE,
    }
)


@dataclass(slots=True, kw_only=True)
class Event:
    """Common envelope: where and when. ``flow`` is the engine's Flow object."""

    protocol: ClassVar[str] = ""
    from_client: bool
    ts: float = 0.0
    frame: int = 0
    flow: Any = None

    @property
    def direction(self) -> str:
        return "request" if self.from_client else "response"


@dataclass(slots=True, kw_only=True)
class Anomaly(Event):
    """A deviation found while parsing; the flow goes on being parsed."""

    protocol_name: str
    kind: StrEnum
    detail: str = ""


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
