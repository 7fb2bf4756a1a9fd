"""DNP3 (IEEE 1815) in Python: its records, what its application function codes mean and
how its records are shown and stored (the compiled core parses link frames, transport
segments and object headers)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from otsec.events import Event
from otsec.protocols.spec import LONG, ProtocolSpec, RecordSpec


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
    TCP_OVERLAP_CONFLICT = "tcp_overlap_conflict"  # overlapping TCP data differed
    IP_FRAGMENT_OVERLAP_CONFLICT = "ip_fragment_overlap_conflict"  # overlapping fragments differed


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

PORT = 20000
#: writes, selects and operates: what changes the outstation or the process
CHANGES = frozenset({2, 3, 4, 5, 6})

FUNCTION_NAMES = {
    0: "confirm", 1: "read", 2: "write", 3: "select", 4: "operate", 5: "direct operate",
    6: "direct operate no ack", 7: "immediate freeze", 8: "immediate freeze no ack",
    9: "freeze and clear", 10: "freeze and clear no ack", 11: "freeze at time",
    12: "freeze at time no ack", 13: "cold restart", 14: "warm restart",
    15: "initialize data", 16: "initialize application", 17: "start application",
    18: "stop application", 19: "save configuration", 20: "enable unsolicited",
    21: "disable unsolicited", 22: "assign class", 23: "delay measurement",
    24: "record current time", 25: "open file", 26: "close file", 27: "delete file",
    28: "get file info", 29: "authenticate file", 30: "abort file", 31: "activate config",
    32: "authenticate request", 33: "authenticate request no ack", 129: "response",
    130: "unsolicited response", 131: "authenticate response",
}  # fmt: skip


def function_name(code: int) -> str:
    return FUNCTION_NAMES.get(code, f"function {code}")


def refusal(iin: int) -> str:
    """What the internal indications' second octet says was refused."""
    return ", ".join(n for b, n in ((1, "function not supported"), (2, "object unknown"),
                                    (4, "parameter error")) if iin & b)


TEXTS = {
    "function_name": lambda pdu: function_name(pdu.function_code),
    "objects_text": lambda pdu: " on " + ", ".join(f"g{o.group}v{o.variation}"
                                                   for o in pdu.objects[:4])
    if pdu.objects else "",
    "reason": lambda pdu: refusal(pdu.iin or 0),
}


def document(pdu: Dnp3Pdu) -> dict[str, Any]:
    """The ``otsec.dnp3`` object of a PDU's ECS document."""
    d: dict[str, Any] = {
        "source_address": pdu.source_address,
        "destination_address": pdu.destination_address,
        "function_code": pdu.function_code,
        "application_control": pdu.app_control,
        "unsolicited": pdu.unsolicited,
    }
    if pdu.iin is not None:
        d["iin"] = pdu.iin
    if pdu.objects:
        d["objects"] = [{"group": o.group, "variation": o.variation, "qualifier": o.qualifier,
                         "count": o.count} for o in pdu.objects[:64]]
    if pdu.anomalies:
        d["anomalies"] = [str(a) for a in pdu.anomalies]
    return d


def fix(fields: dict[str, Any]) -> None:
    """Object headers as dataclasses."""
    if "objects" in fields:
        fields["objects"] = tuple(Dnp3Object(*o) for o in fields["objects"])


MAPPINGS = {
    f"otsec.dnp3.{name}": LONG
    for name in ("source_address", "destination_address", "function_code", "iin",
                 "objects.group", "objects.variation", "objects.qualifier", "objects.count")
}

SPEC = ProtocolSpec("dnp3", frozenset({PORT}), frozenset({PORT}), (
    RecordSpec("dnp3", Dnp3Pdu, Dnp3Anomaly, function_name, document, MAPPINGS, CHANGES,
               "#ff7f0e", fix, texts=TEXTS),
), server_role="rtu")
