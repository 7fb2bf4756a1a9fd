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
    DISSECTOR_FAILURE = "dissector_failure"  # the dissector failed; the flow is not parsed


class S7Anomaly(StrEnum):
    """Deviations in TPKT, COTP, S7comm and S7comm-plus."""

    INVALID_TPKT = "invalid_tpkt"  # version not 3, or a length under 7
    INVALID_COTP = "invalid_cotp"  # COTP length indicator beyond the TPKT
    INVALID_HEADER = "invalid_header"  # neither S7comm (0x32) nor S7comm-plus (0x72)
    TRUNCATED_PDU = "truncated_pdu"  # parameter/data lengths run past the PDU
    UNKNOWN_ROSCTR = "unknown_rosctr"  # PDU type other than 1, 2, 3, 7
    FRAGMENT_OVERFLOW = "fragment_overflow"  # COTP fragments beyond the reassembly limit
    UNSOLICITED_RESPONSE = "unsolicited_response"  # ack/ack_data for no job we saw
    FLOODED = "flooded"  # too many jobs waiting for an answer
    RESYNCHRONISED = "resynchronised"  # bytes skipped to find the next TPKT header
    DISSECTOR_FAILURE = "dissector_failure"  # the dissector failed; the flow is not parsed


class Dnp3Anomaly(StrEnum):
    """Deviations in the DNP3 link, transport and application layers."""

    BAD_HEADER_CRC = "bad_header_crc"  # link header CRC mismatch
    BAD_DATA_CRC = "bad_data_crc"  # a user-data block CRC mismatch
    INVALID_LENGTH = "invalid_length"  # link length under 5
    TRANSPORT_SEQUENCE = "transport_sequence"  # segment out of sequence, or no FIR
    FRAGMENT_TOO_LONG = "fragment_too_long"  # reassembled fragment over the limit
    RESERVED_FUNCTION = "reserved_function"  # application function code not assigned
    TRUNCATED_OBJECTS = "truncated_objects"  # an object header or its data is cut short
    RESYNCHRONISED = "resynchronised"  # bytes skipped to find the next 0x05 0x64
    DISSECTOR_FAILURE = "dissector_failure"  # the dissector failed; the flow is not parsed


@dataclass(slots=True, kw_only=True)
class Event:
    """Common envelope: where and when. ``flow`` is the engine's Flow object."""

    protocol: ClassVar[str] = ""
    from_client: bool
    ts: float = 0.0
    frame: int = 0
    flow: Any = None
    meaning: Any = None  # what the PDU does (graph.functions.Use), decided by the core

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


@dataclass(frozen=True, slots=True)
class S7Item:
    """One variable of a read/write var job (S7ANY addressing)."""

    area: int  # 0x84 DB, 0x81 inputs, 0x82 outputs, 0x83 flags (M), 0x1c counters, 0x1d timers
    db: int
    byte: int
    bit: int
    length: int  # elements of transport size
    transport_size: int


@dataclass(slots=True, kw_only=True)
class S7Pdu(Event):
    """One S7comm PDU (protocol id 0x32) from a COTP data TPDU."""

    protocol: ClassVar[str] = "s7comm"
    rosctr: int  # 1 job, 2 ack, 3 ack_data, 7 userdata
    pdu_reference: int
    function_code: int | None = None  # job/ack_data parameter function
    error_class: int | None = None
    error_code: int | None = None
    group: int | None = None  # userdata function group
    subfunction: int | None = None  # userdata sub-function
    userdata_type: int | None = None  # 0 push, 4 request, 8 response
    szl_id: int | None = None
    szl_index: int | None = None
    pi_service: str | None = None
    block_type: str | None = None  # "OB", "DB", "FC", "FB", ...
    block_number: int | None = None
    items: tuple[S7Item, ...] = ()
    return_codes: tuple[int, ...] = ()  # per item of an ack_data read/write, or userdata
    identity: dict[str, str] | None = None  # from SZL 0x0011 / 0x001C answers
    src_tsap: int | None = None  # from the COTP connection request
    dst_tsap: int | None = None
    anomalies: tuple[S7Anomaly, ...] = ()
    request: S7Pdu | None = None
    accepted: bool | None = None

    @property
    def from_request(self) -> bool:
        """Job, or userdata of type request (the client side of the exchange)."""
        return self.rosctr == 1 or (self.rosctr == 7 and self.userdata_type == 4)

    @property
    def direction(self) -> str:
        return "request" if self.from_request else "response"


@dataclass(slots=True, kw_only=True)
class S7PlusPdu(Event):
    """The visible header of one S7comm-plus PDU (protocol id 0x72)."""

    protocol: ClassVar[str] = "s7comm_plus"
    version: int  # 1, 2, 3; 0xFE/0xFF keep-alive
    opcode: int | None = None  # 0x31 request, 0x32 response, 0x33 notification, 0x02 response2
    function_code: int | None = None  # e.g. 0x04CA CreateObject
    sequence: int | None = None
    integrity: bool = False  # V3 integrity digest present before the data
    anomalies: tuple[S7Anomaly, ...] = ()

    @property
    def direction(self) -> str:
        if self.opcode is None:
            return "request" if self.from_client else "response"
        return "request" if self.opcode == 0x31 else "response"


@dataclass(frozen=True, slots=True)
class Dnp3Object:
    group: int
    variation: int
    qualifier: int
    count: int
    start: int | None = None  # range start (start/stop qualifiers)
    indexes: tuple[int, ...] = ()  # points of index-prefixed control objects (g12, g41)


@dataclass(slots=True, kw_only=True)
class Dnp3Pdu(Event):
    """One DNP3 application fragment (after transport reassembly)."""

    protocol: ClassVar[str] = "dnp3"
    source_address: int
    destination_address: int
    function_code: int
    app_control: int
    iin: int | None = None  # responses: IIN1 << 8 | IIN2
    objects: tuple[Dnp3Object, ...] = ()
    link_function: int = 0
    anomalies: tuple[Dnp3Anomaly, ...] = ()
    request: Dnp3Pdu | None = None
    accepted: bool | None = None

    @property
    def direction(self) -> str:
        return "request" if self.function_code < 0x80 else "response"

    @property
    def unsolicited(self) -> bool:
        return bool(self.app_control & 0x10)

    @property
    def sequence(self) -> int:
        return self.app_control & 0x0F
