"""DNP3 (IEEE 1815): what its application function codes mean, its records' documents and
mappings (the compiled core parses link frames, transport segments and object headers)."""

from __future__ import annotations

from typing import Any

from otsec.events import Dnp3Anomaly, Dnp3Object, Dnp3Pdu
from otsec.protocols.spec import LONG, ProtocolSpec, RecordSpec

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
