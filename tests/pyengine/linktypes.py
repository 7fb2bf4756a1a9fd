"""Link-layer decoding: find the network-layer header behind each supported link type.

Returns plain tuples (hot path): ``(l3_offset, ethertype, src_mac, dst_mac, vlan)`` where
the MACs are raw 6-byte values or ``b""`` when the link layer has none, and ``vlan`` is
the outermost 802.1Q/802.1ad tag or -1.
"""

from __future__ import annotations

import struct

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_SLL2 = 276
RAW_ALIASES = frozenset({LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6})

SUPPORTED = frozenset(
    {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LOOP, LINKTYPE_SLL, LINKTYPE_SLL2} | RAW_ALIASES
)

_H = struct.Struct("!H").unpack_from
_I_LE = struct.Struct("<I").unpack_from
_I_BE = struct.Struct(">I").unpack_from
# BSD AF_INET6 values differ between systems (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS)
_AF_INET6 = frozenset({10, 24, 28, 30})

LinkInfo = tuple[int, int, bytes, bytes, int]


def _raw_ip(buf: bytes, off: int) -> int:
    version = buf[off] >> 4
    return ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0


def decode_link(linktype: int, buf: bytes, start: int, end: int) -> LinkInfo | None:
    """Locate the network layer of one frame, or None when it carries no IP/ARP."""
    if linktype == LINKTYPE_ETHERNET:
        if end - start < 14:
            return None
        etype = _H(buf, start + 12)[0]
        off = start + 14
        vlan = -1
        while etype in VLAN_TPIDS and off + 4 <= end:
            if vlan < 0:
                vlan = _H(buf, off)[0] & 0x0FFF
            etype = _H(buf, off + 2)[0]
            off += 4
        return off, etype, buf[start + 6 : start + 12], buf[start : start + 6], vlan
    if linktype in RAW_ALIASES:
        if end <= start:
            return None
        return start, _raw_ip(buf, start), b"", b"", -1
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if end - start < 5:
            return None
        fam = _I_BE(buf, start)[0] if linktype == LINKTYPE_LOOP else _I_LE(buf, start)[0]
        if fam > 0xFFFF:  # written in the other byte order
            fam = _I_BE(buf, start)[0]
        if fam == 2:
            return start + 4, ETH_IPV4, b"", b"", -1
        if fam in _AF_INET6:
            return start + 4, ETH_IPV6, b"", b"", -1
        return None
    if linktype == LINKTYPE_SLL:
        if end - start < 16:
            return None
        halen = _H(buf, start + 4)[0]
        mac = buf[start + 6 : start + 12] if halen == 6 else b""
        return start + 16, _H(buf, start + 14)[0], mac, b"", -1
    if linktype == LINKTYPE_SLL2:
        if end - start < 20:
            return None
        mac = buf[start + 12 : start + 18] if buf[start + 11] == 6 else b""
        return start + 20, _H(buf, start)[0], mac, b"", -1
    return None


def format_mac(mac: bytes) -> str:
    """ECS form: upper-case, hyphen separated."""
    return "-".join(f"{b:02X}" for b in mac)
