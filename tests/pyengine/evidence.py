"""What one PDU says about the hosts at each end, as the former Python engine decided it:
behaviour evidence and identity (the compiled core now decides the evidence when it parses
a PDU, and each protocol module says what a PDU tells of a device's identity).

Evidence names are ``<protocol>-<behaviour>``: ``read``, ``write`` and ``programming``
for the requesting side, ``server`` for the answering side, and for DNP3 ``master`` and
``outstation``. Programming only counts when the device accepted it, so a scanner whose
probes are refused is not mistaken for an engineering workstation.
"""

from __future__ import annotations

from dataclasses import dataclass

from otsec.events import Event
from otsec.protocols import modbus, s7comm
from otsec.protocols.dnp3 import Dnp3Pdu
from otsec.protocols.modbus import PROGRAMMING_FUNCTIONS, UMAS, WRITE_FUNCTIONS, ModbusPdu
from otsec.protocols.s7comm import (
    DOWNLOAD,
    PI_SERVICE,
    PLC_STOP,
    UPLOAD,
    WRITE_VAR,
    S7Pdu,
    S7PlusPdu,
)

S7_PROGRAMMING = frozenset({*DOWNLOAD, *UPLOAD, PI_SERVICE, PLC_STOP})
S7_PROGRAMMING_GROUPS = frozenset({1, 3, 5})  # programmer commands, block functions, security
DNP3_WRITES = frozenset({2, 3, 4, 5, 6, 15, 16, 17, 18, 19, 25, 27, 31})
S7PLUS_WRITES = frozenset({0x04CA, 0x04D4, 0x04F2, 0x0542, 0x056B})


@dataclass(slots=True)
class Observation:
    client: str | None = None  # evidence for the requesting host
    server: str | None = None  # evidence for the answering host
    identity: dict[str, str] | None = None  # about the answering host
    source: str = ""  # where the identity came from


def observe(event: Event) -> Observation | None:
    kind = type(event)
    if kind is ModbusPdu:
        return _modbus(event)  # type: ignore[arg-type]
    if kind is S7Pdu:
        return _s7(event)  # type: ignore[arg-type]
    if kind is Dnp3Pdu:
        return _dnp3(event)  # type: ignore[arg-type]
    if kind is S7PlusPdu:
        if event.direction == "request":  # type: ignore[attr-defined]
            fc = event.function_code  # type: ignore[attr-defined]
            return Observation(client="s7comm_plus-write" if fc in S7PLUS_WRITES
                               else "s7comm_plus-read")
        return Observation(server="s7comm_plus-server")
    return None


def _modbus(pdu: ModbusPdu) -> Observation:
    if pdu.from_client:
        fc = pdu.function_code
        if fc in WRITE_FUNCTIONS:
            return Observation(client="modbus-write")
        if fc in PROGRAMMING_FUNCTIONS or fc == UMAS:
            return Observation()
        return Observation(client="modbus-read")
    obs = Observation(server="modbus-server")
    req = pdu.request
    if req is not None and req.accepted and (req.function_code in PROGRAMMING_FUNCTIONS
                                             or req.function_code == UMAS):
        obs.client = "modbus-programming"
    told = modbus.identity(pdu)  # what production reads of identities, by protocol
    if told is not None:
        obs.identity, obs.source = told
    return obs


def _s7(pdu: S7Pdu) -> Observation:
    if pdu.direction == "request":
        if not pdu.from_client:
            return Observation()  # the PLC's download-block jobs (see below)
        if pdu.rosctr == 1:
            behaviour = "write" if pdu.function_code == WRITE_VAR else "read"
            if pdu.function_code in S7_PROGRAMMING:
                return Observation()
            return Observation(client=f"s7comm-{behaviour}")
        return Observation(client="s7comm-read")
    if pdu.from_client:
        # the engineering station answering the PLC's own download-block jobs: the PLC
        # asks, but the station is the one programming it (its 0x1a job said so already)
        return Observation()
    obs = Observation(server="s7comm-server")
    req = pdu.request
    if req is not None and req.accepted and (
        req.function_code in S7_PROGRAMMING or (req.rosctr == 7 and req.group in
                                                S7_PROGRAMMING_GROUPS)):
        obs.client = "s7comm-programming"
    told = s7comm.identity(pdu)
    if told is not None:
        obs.identity, obs.source = told
    return obs


def _dnp3(pdu: Dnp3Pdu) -> Observation:
    fc = pdu.function_code
    if fc >= 0x80:
        return Observation(server="dnp3-outstation",
                           identity={"dnp3_address": str(pdu.source_address)}, source="dnp3")
    if fc == 0:  # a confirm: whoever sends it, it says nothing about roles
        return Observation()
    behaviour = "write" if fc in DNP3_WRITES else "read"
    return Observation(client=f"dnp3-{behaviour}")
