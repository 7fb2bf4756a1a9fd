"""Roles from behaviour, MAC vendors, and DNP3 found by content or over UDP."""

from __future__ import annotations

import struct
from collections import Counter

from otsec.inventory.oui import mac_vendor
from otsec.inventory.roles import guess_role
from otsec.protocols.dnp3 import Dnp3Pdu
from tests import pcapgen as g
from tests.helpers import Conversation, run_frames
from tests.test_dnp3 import app, fragment

MODBUS = {("tcp", 502, "modbus")}


def test_roles_from_behaviour() -> None:
    assert guess_role(Counter({"s7comm-programming": 2, "s7comm-read": 40}), set(), set(),
                      300)[0] == "engineering_workstation"
    assert guess_role(Counter({"modbus-server": 10}), MODBUS, set(), 100)[0] == "plc"
    assert guess_role(Counter({"dnp3-outstation": 10}), set(), set(), 100)[0] == "rtu"
    assert guess_role(Counter({"modbus-read": 100, "modbus-write": 1}), set(), MODBUS,
                      100)[0] == "hmi"
    role, evidence = guess_role(Counter({"modbus-read": 20}), set(), MODBUS, 3600)
    assert role == "historian" and "only reads" in evidence[0]
    assert guess_role(Counter(), {("tcp", 80, "http")}, set(), 10)[0] == "it_host"


def test_mac_vendors_from_the_ieee_registry() -> None:
    assert mac_vendor("00-1B-1B-12-34-56").startswith("Siemens")
    assert mac_vendor("02-42-DE-AD-00-42") is None  # locally administered


def test_dnp3_by_content_on_another_port_and_over_udp() -> None:
    c = Conversation(sport=20001)
    c.send(True, fragment(10, 1, app(1, bytes([60, 1, 6]))))
    c.send(False, fragment(1, 10, app(129, iin=b"\0\0")))
    _, sink = run_frames(c.frames)
    assert [e.function_code for e in sink.events if isinstance(e, Dnp3Pdu)] == [1, 129]
    payload = fragment(10, 1, app(13))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                     bytes([10, 0, 0, 20]), bytes([10, 0, 0, 10]))
    udp = struct.pack("!HHHH", 40000, 20000, 8 + len(payload), 0) + payload
    _, sink = run_frames([g.ether(ip + udp)])
    (restart,) = [e for e in sink.events if isinstance(e, Dnp3Pdu)]
    assert restart.function_code == 13 and restart.flow.transport == "udp"
