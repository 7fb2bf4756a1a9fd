"""The dissectors otsec knows, and how a flow is matched to one.

A flow is matched on the protocol's well-known port first (then the first payload must
still look like the protocol, so HTTP or TLS on port 502 is not taken for Modbus), and
by content alone on any other port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.pyengine.protocols.dnp3 import Dnp3Parser, looks_like_dnp3
from tests.pyengine.protocols.modbus import ModbusParser, looks_like_modbus
from tests.pyengine.protocols.s7comm import S7Parser, looks_like_s7


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    name: str
    tcp_ports: frozenset[int]
    udp_ports: frozenset[int]
    probe: Callable[[bytes, bool], bool]  # (first payload, strict) -> looks like it
    parser: Callable[[], Any]


REGISTRY: tuple[ProtocolSpec, ...] = (
    ProtocolSpec("modbus", frozenset({502}), frozenset({502}), looks_like_modbus, ModbusParser),
    ProtocolSpec("s7comm", frozenset({102}), frozenset(), looks_like_s7, S7Parser),
    ProtocolSpec("dnp3", frozenset({20000}), frozenset({20000}), looks_like_dnp3, Dnp3Parser),
)

#: (transport, port) -> the protocol dissected there
PORT_NAMES = {
    **{(6, port): spec.name for spec in REGISTRY for port in spec.tcp_ports},
    **{(17, port): spec.name for spec in REGISTRY for port in spec.udp_ports},
}

#: names for flows otsec does not dissect, for the inventory's service list
WELL_KNOWN = {
    (6, 2404): "iec104",
    (6, 44818): "enip", (17, 44818): "enip", (17, 2222): "enip", (17, 47808): "bacnet",
    (6, 80): "http", (6, 443): "tls", (6, 22): "ssh", (6, 23): "telnet", (6, 21): "ftp",
    (17, 53): "dns", (6, 53): "dns", (17, 123): "ntp", (17, 161): "snmp", (17, 67): "dhcp",
    (17, 68): "dhcp", (6, 3389): "rdp", (6, 445): "smb", (6, 4840): "opcua",
    (6, 1883): "mqtt", (6, 5900): "vnc", (6, 9600): "fins", (17, 9600): "fins",
}  # fmt: skip

_NOT_OT_PREFIXES = (b"GET ", b"POST", b"HEAD", b"PUT ", b"HTTP", b"\x16\x03", b"SSH-", b"OPTI")


def is_other_protocol(payload: bytes) -> bool:
    """Clearly something else (HTTP, TLS, SSH), whatever the port says."""
    return payload.startswith(_NOT_OT_PREFIXES)
