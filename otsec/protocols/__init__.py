"""The protocols otsec dissects (in the compiled core), with their well-known ports, and
everything else derived from what each protocol's module declares.

The core matches a flow on a protocol's well-known port first (its first payload must
still look like the protocol, so HTTP or TLS on port 502 is not Modbus) and by content
alone on any other port.
"""

from __future__ import annotations

from otsec.protocols import dnp3, modbus, s7comm
from otsec.protocols.spec import ProtocolSpec, RecordSpec

#: the protocols otsec dissects: each is one module here (names, documents, mappings,
#: report colours of its records) and one in the core; add one by adding its line
REGISTRY: tuple[ProtocolSpec, ...] = (
    modbus.SPEC,
    s7comm.SPEC,
    dnp3.SPEC,
)

#: record protocol -> what it is
RECORDS: dict[str, RecordSpec] = {r.name: r for spec in REGISTRY for r in spec.records}
#: every record protocol, in registry order (rules name these, or "any")
RECORD_PROTOCOLS: tuple[str, ...] = tuple(RECORDS)
#: record protocol -> its colour in the report, and the role of a host that answers it
COLOURS = {name: r.colour for name, r in RECORDS.items()}
SERVER_ROLES = {r.name: spec.server_role for spec in REGISTRY for r in spec.records}

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

#: other OT protocols whose conversations the live sensor keeps (inventory, graph)
OTHER_OT_PORTS = ((6, 2404), (6, 44818), (17, 44818), (17, 47808))


#: what may carry the dissected protocols past a filter on ports: IP fragments (only the
#: first has ports), MPLS, GRE (and ERSPAN in it), IP in IP, VXLAN, NSH
CARRIERS = ("(ip[6:2] & 0x3fff != 0) or (ip6 and ip6[6] == 44) or ether proto 0x8847 or "
            "ether proto 0x8848 or ip proto 47 or ip6 proto 47 or ip proto 4 or ip proto 41 or "
            "udp port 4789 or ether proto 0x894f")


def capture_filter() -> str:
    """The live sensor's default kernel filter: the dissected protocols' ports, the other
    OT ports, what may carry them in pieces or tunnels, and what the inventory needs
    beside them (ARP, DNS, DHCP); VLAN-tagged traffic of the dissected protocols too."""
    names = {6: "tcp", 17: "udp"}
    ports = sorted({(6, p) for spec in REGISTRY for p in spec.tcp_ports}
                   | {(17, p) for spec in REGISTRY for p in spec.udp_ports}
                   | set(OTHER_OT_PORTS), key=lambda tp: (tp[1], tp[0]))
    ot = " or ".join(f"{names[t]} port {p}" for t, p in ports)
    tagged = " or ".join(f"tcp port {p}" for spec in REGISTRY for p in sorted(spec.tcp_ports))
    return (f"{ot} or {CARRIERS} or arp or port 53 or port 67 or port 68 or "
            f"(vlan and ({tagged} or arp))")
