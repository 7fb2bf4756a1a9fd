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
    probe: Callable[[bytes, bool], str]  # (first bytes, strict) -> "yes", "no", "more"
    parser: Callable[[], Any]


REGISTRY: tuple[ProtocolSpec, ...] = (
    ProtocolSpec("modbus", frozenset({502}), frozenset({502}), looks_like_modbus, ModbusParser),
    ProtocolSpec("s7comm", frozenset({102}), frozenset(), looks_like_s7, S7Parser),
    ProtocolSpec("dnp3", frozenset({20000}), frozenset({20000}), looks_like_dnp3, Dnp3Parser),
)

_NOT_OT_PREFIXES = (b"GET ", b"POST", b"HEAD", b"PUT ", b"HTTP", b"\x16\x03", b"SSH-", b"OPTI")


def is_other_protocol(payload: bytes) -> bool:
    """Clearly something else (HTTP, TLS, SSH), whatever the port says (on 4 bytes)."""
    return payload.startswith(_NOT_OT_PREFIXES)
