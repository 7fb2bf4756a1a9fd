"""Siemens S7comm and S7comm-plus in Python: their records, what functions, groups, areas
and blocks mean, what the records tell of a PLC and how they are shown and stored (the
compiled core parses the bytes; see the README for what S7comm-plus V3 sessions hide)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from otsec.events import Event
from otsec.protocols.spec import KEYWORD, LONG, ProtocolSpec, RecordSpec
from otsec.text import hex_code


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
    TCP_OVERLAP_CONFLICT = "tcp_overlap_conflict"  # overlapping TCP data differed
    IP_FRAGMENT_OVERLAP_CONFLICT = "ip_fragment_overlap_conflict"  # overlapping fragments differed


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

PORT = 102
USERDATA_BASE = 0x1000  # userdata functions are 0x1000 + group * 0x100 + sub-function
AREAS = {0x81: "I", 0x82: "Q", 0x83: "M", 0x84: "DB", 0x85: "DI", 0x1C: "C", 0x1D: "T",
         0x80: "P"}  # fmt: skip
READ_VAR, WRITE_VAR = 0x04, 0x05
PI_SERVICE, PLC_STOP = 0x28, 0x29
DOWNLOAD = (0x1A, 0x1B, 0x1C)
UPLOAD = (0x1D, 0x1E, 0x1F)

FUNCTION_NAMES = {
    0x00: "CPU services", 0x04: "read var", 0x05: "write var", 0x1A: "request download",
    0x1B: "download block", 0x1C: "download ended", 0x1D: "start upload", 0x1E: "upload",
    0x1F: "end upload", 0x28: "PI service", 0x29: "PLC stop", 0xF0: "setup communication",
}  # fmt: skip
GROUP_NAMES = {
    0: "mode transition", 1: "programmer commands", 2: "cyclic data", 3: "block functions",
    4: "CPU functions", 5: "security", 6: "PBC BSEND/BRECV", 7: "time functions",
    15: "NC programming",
}  # fmt: skip
PLUS_FUNCTIONS = {
    0x04B1: "Error", 0x04BB: "Explore", 0x04CA: "CreateObject", 0x04D4: "DeleteObject",
    0x04F2: "SetVariable", 0x04FC: "GetVariable", 0x0506: "AddLink", 0x051A: "RemoveLink",
    0x0524: "GetLink", 0x0542: "SetMultiVariables", 0x054C: "GetMultiVariables",
    0x0556: "BeginSequence", 0x0560: "EndSequence", 0x056B: "Invoke",
    0x057C: "SetVarSubStreamed", 0x0586: "GetVarSubStreamed", 0x0590: "GetVariablesAddress",
    0x059A: "Abort", 0x05A9: "Error2", 0x05B3: "InitSsl",
}  # fmt: skip

PI_NAMES = {"P_PROGRAM": "start (P_PROGRAM)", "_GARB": "compress memory (_GARB)",
            "_MODU": "copy RAM to ROM (_MODU)", "_DELE": "delete block (_DELE)",
            "_INSE": "insert block (_INSE)"}  # fmt: skip
USERDATA_NAMES = {(5, 1): "set password", (5, 2): "clear password", (1, 8): "modify variable",
                  (1, 9): "force", (1, 12): "memory reset", (7, 2): "set clock",
                  (7, 4): "set clock"}  # fmt: skip


def function_name(code: int) -> str:
    """A job's function, or a userdata function as group/sub-function (see
    ``USERDATA_BASE``)."""
    if code >= USERDATA_BASE:
        group, sub = (code - USERDATA_BASE) >> 8, code & 0xFF
        return f"{GROUP_NAMES.get(group, 'group ' + str(group))}/{sub}"
    return FUNCTION_NAMES.get(code, f"0x{code:02x}")


def plus_function_name(code: int) -> str:
    return PLUS_FUNCTIONS.get(code, f"0x{code:04x}")


def document(pdu: S7Pdu) -> dict[str, Any]:
    """The ``otsec.s7comm`` object of a PDU's ECS document."""
    d: dict[str, Any] = {"rosctr": pdu.rosctr, "pdu_reference": pdu.pdu_reference}
    if pdu.function_code is not None:
        d["function_code"] = pdu.function_code
    if pdu.group is not None:
        ud: dict[str, Any] = {"type": pdu.userdata_type, "group": pdu.group,
                              "subfunction": pdu.subfunction}
        if pdu.szl_id is not None:
            ud["szl_id"] = pdu.szl_id
            ud["szl_index"] = pdu.szl_index
        d["userdata"] = ud
    if pdu.pi_service is not None:
        d["pi_service"] = pdu.pi_service
    if pdu.block_type is not None:
        d["block"] = {"type": pdu.block_type, "number": pdu.block_number}
    if pdu.error_class is not None:
        d["error_class"] = pdu.error_class
        d["error_code"] = pdu.error_code
    if pdu.items:
        d["items"] = [{"area": i.area, "db": i.db, "byte": i.byte, "bit": i.bit,
                       "length": i.length, "transport_size": i.transport_size}
                      for i in pdu.items[:64]]
    if pdu.return_codes:
        d["return_codes"] = list(pdu.return_codes[:64])
    if pdu.identity:
        d["identity"] = pdu.identity
    if pdu.dst_tsap is not None:
        d["tsap"] = {"source": pdu.src_tsap, "destination": pdu.dst_tsap}
    if pdu.anomalies:
        d["anomalies"] = [str(a) for a in pdu.anomalies]
    return d


def plus_document(pdu: S7PlusPdu) -> dict[str, Any]:
    """The ``otsec.s7comm_plus`` object of a PDU's ECS document."""
    d: dict[str, Any] = {"version": pdu.version, "integrity": pdu.integrity}
    if pdu.opcode is not None:
        d["opcode"] = pdu.opcode
    if pdu.function_code is not None:
        d["function_code"] = pdu.function_code
        d["function_name"] = PLUS_FUNCTIONS.get(pdu.function_code, "unknown")
    if pdu.sequence is not None:
        d["sequence"] = pdu.sequence
    if pdu.anomalies:
        d["anomalies"] = [str(a) for a in pdu.anomalies]
    return d


def identity(pdu: S7Pdu) -> tuple[dict[str, str], str] | None:
    """What a PLC's answer tells of its identity (SZL 0x0011 / 0x001C), and from where."""
    if pdu.direction == "request" or pdu.from_client or not pdu.identity:
        return None
    ident = pdu.identity
    mapped = {
        "manufacturer": "Siemens",
        "model_identifier": ident.get("order_number"),
        "model_name": ident.get("module_type"),
        "serial_number": ident.get("serial_number"),
        "firmware_version": ident.get("firmware_version"),
        "name": ident.get("plant_name") or ident.get("module_name"),
    }
    return {k: v for k, v in mapped.items() if v}, f"s7comm-szl-0x{pdu.szl_id:04x}"


def refusal(error_class: int | None, error_code: int | None) -> str:
    return f"error class {hex_code(error_class)} code {hex_code(error_code)}"


def item_refusal(return_code: int) -> str:
    return f"return code {hex_code(return_code)}"


def _reason(pdu: S7Pdu) -> str:
    if pdu.error_class or pdu.error_code:
        return refusal(pdu.error_class, pdu.error_code)
    bad = [rc for rc in pdu.return_codes if rc != 0xFF]
    return item_refusal(bad[0]) if bad else ""


def _items(pdu: S7Pdu) -> str:
    parts = []
    for i in pdu.items[:4]:
        area = AREAS.get(i.area, f"area 0x{i.area:02x}")
        parts.append(f"DB{i.db}.DBX{i.byte}.{i.bit}" if i.area == 0x84
                     else f"{area}{i.byte}.{i.bit}")
    more = f" and {len(pdu.items) - 4} more" if len(pdu.items) > 4 else ""
    return ", ".join(parts) + more


def _block(pdu: S7Pdu) -> str:
    if pdu.block_type is None:
        return ""
    return f"{pdu.block_type}{'' if pdu.block_number is None else pdu.block_number}"


TEXTS = {
    "function_name": lambda pdu: FUNCTION_NAMES.get(pdu.function_code or -1,
                                                    str(pdu.function_code)),
    "block": _block,
    "items_text": _items,
    "userdata_name": lambda pdu: USERDATA_NAMES.get((pdu.group or -1, pdu.subfunction or -1),
                                                    f"{pdu.group}/{pdu.subfunction}"),
    "reason": _reason,
}
PLUS_TEXTS = {
    "function_name": lambda pdu: PLUS_FUNCTIONS.get(pdu.function_code or -1,
                                                    str(pdu.function_code)),
}


def fix(fields: dict[str, Any]) -> None:
    """Items as dataclasses, TSAPs as numbers."""
    if "items" in fields:
        fields["items"] = tuple(S7Item(*i) for i in fields["items"])
    for name in ("src_tsap", "dst_tsap"):
        if name in fields:
            fields[name] = int.from_bytes(fields[name], "big")


MAPPINGS = {
    **{f"otsec.s7comm.{name}": LONG
       for name in ("rosctr", "pdu_reference", "function_code", "userdata.group",
                    "userdata.subfunction", "userdata.szl_id", "error_class", "error_code",
                    "block.number")},
    "otsec.s7comm.pi_service": KEYWORD, "otsec.s7comm.block.type": KEYWORD,
}  # fmt: skip
PLUS_MAPPINGS = {
    "otsec.s7comm_plus.version": LONG, "otsec.s7comm_plus.opcode": LONG,
    "otsec.s7comm_plus.function_code": LONG, "otsec.s7comm_plus.function_name": KEYWORD,
}  # fmt: skip

SPEC = ProtocolSpec("s7comm", frozenset({PORT}), frozenset(), (
    RecordSpec("s7comm", S7Pdu, S7Anomaly, function_name, document, MAPPINGS,
               frozenset({WRITE_VAR}), "#2ca02c", fix, identity, TEXTS),
    RecordSpec("s7comm_plus", S7PlusPdu, S7Anomaly, plus_function_name, plus_document,
               PLUS_MAPPINGS, frozenset(), "#17becf", texts=PLUS_TEXTS),
), server_role="plc")
