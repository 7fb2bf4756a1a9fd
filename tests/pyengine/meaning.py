"""What a PDU does, derived from the former engine's events (the core decides it now);
the oracle's events get it here so the shared policy code can read ``event.meaning``."""

from __future__ import annotations

from otsec.events import Event
from otsec.graph.functions import Use
from otsec.protocols import dnp3, modbus, s7comm
from otsec.protocols.dnp3 import Dnp3Pdu
from otsec.protocols.modbus import ModbusPdu
from otsec.protocols.s7comm import AREAS as S7_AREAS
from otsec.protocols.s7comm import USERDATA_BASE, S7Pdu, S7PlusPdu
from tests.pyengine.evidence import DNP3_WRITES, S7PLUS_WRITES

MODBUS_TABLES = {
    1: "coils", 5: "coils", 15: "coils", 2: "discrete_inputs", 4: "input_registers",
    3: "holding_registers", 6: "holding_registers", 16: "holding_registers",
    22: "holding_registers", 23: "holding_registers", 24: "holding_registers",
}  # fmt: skip
MODBUS_COMMANDS = frozenset({8, modbus.UMAS, *modbus.PROGRAMMING_FUNCTIONS})
S7_COMMANDS = frozenset({s7comm.WRITE_VAR, *s7comm.DOWNLOAD, *s7comm.UPLOAD, s7comm.PI_SERVICE,
                         s7comm.PLC_STOP})
S7_COMMAND_GROUPS = frozenset({1, 5, 7})  # programmer commands, security, time

def derive(event: Event) -> Use | None:
    kind = type(event)
    if kind is ModbusPdu:
        return _modbus(event)  # type: ignore[arg-type]
    if kind is S7Pdu:
        return _s7(event)  # type: ignore[arg-type]
    if kind is S7PlusPdu:
        fc = event.function_code  # type: ignore[attr-defined]
        if fc is None:
            return None
        writes = event.direction == "request" and fc in S7PLUS_WRITES
        return Use(fc, s7comm.PLUS_FUNCTIONS.get(fc, f"0x{fc:04x}"), writes=writes,
                   command=writes)
    if kind is Dnp3Pdu:
        fc = event.function_code  # type: ignore[attr-defined]
        outstation = event.destination_address if fc < 0x80 else event.source_address  # type: ignore[attr-defined]
        groups = tuple(sorted({o.group for o in event.objects})) if fc < 0x80 else ()  # type: ignore[attr-defined]
        points: list[tuple[str, int, int]] = []
        if 3 <= fc <= 6:  # controls: the points they act on
            for o in event.objects:  # type: ignore[attr-defined]
                if o.group in (12, 41):
                    points += ([(f"g{o.group}", o.start, o.count)] if o.start is not None
                               and o.count > 0 else [(f"g{o.group}", i, 1) for i in o.indexes])
        return Use(fc, dnp3.FUNCTION_NAMES.get(fc, f"function {fc}"), writes=fc in DNP3_WRITES,
                   command=1 < fc < 0x80 and fc != 23, unit=outstation, groups=groups,
                   ranges=tuple(points))
    return None


def _modbus(pdu: ModbusPdu) -> Use:
    fc = pdu.function_code
    use = Use(fc, modbus.FUNCTION_NAMES.get(fc & 0x7F, f"function {fc & 0x7F}"),
              writes=pdu.from_client and fc in modbus.WRITE_FUNCTIONS, unit=pdu.unit_id)
    use.command = pdu.from_client and (use.writes or fc in MODBUS_COMMANDS)
    table = MODBUS_TABLES.get(fc)
    if pdu.from_client and table and pdu.address is not None:
        spans = [(table, pdu.address, pdu.quantity or 1)]
        if pdu.write_address is not None:
            spans.append((table, pdu.write_address, pdu.write_quantity or 1))
        use.ranges = tuple(spans)
    return use


def _s7(pdu: S7Pdu) -> Use | None:
    if pdu.rosctr == 7 and pdu.group is not None:
        code = USERDATA_BASE + pdu.group * 0x100 + (pdu.subfunction or 0)
        name = f"{s7comm.GROUP_NAMES.get(pdu.group, 'group ' + str(pdu.group))}/{pdu.subfunction}"
        return Use(code, name, command=pdu.userdata_type == 4 and pdu.group in S7_COMMAND_GROUPS)
    if pdu.function_code is None:
        return None
    fc = pdu.function_code
    use = Use(fc, s7comm.FUNCTION_NAMES.get(fc, f"0x{fc:02x}"),
              writes=pdu.rosctr == 1 and fc == s7comm.WRITE_VAR,
              command=pdu.rosctr == 1 and fc in S7_COMMANDS)
    if pdu.rosctr == 1 and pdu.items:
        use.ranges = tuple(
            (S7_AREAS.get(i.area, f"area{i.area}") + (str(i.db) if i.area == 0x84 else ""),
             i.byte, max(i.length, 1)) for i in pdu.items[:32])
    return use


