"""IPv4/IPv6 and TCP/UDP header decoding on buffer offsets (no per-packet objects)."""

from __future__ import annotations

import struct

from tests.pyengine.linktypes import decode_link

TCP = 6
UDP = 17

FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10

_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_v4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_tcp = struct.Struct("!HHIIBB").unpack_from
_ports = struct.Struct("!HH").unpack_from
_H = struct.Struct("!H").unpack_from

# (src, dst, proto, sport, dport, seq, ack, flags, payload_start, payload_end)
Transport = tuple[bytes, bytes, int, int, int, int, int, int, int, int]



def decode_ip(buf: bytes, off: int, end: int, ethertype: int) -> Transport | int:
    """Decode the IP and transport headers.

    Returns the transport tuple, or an int reason code when the packet is not a decodable
    TCP/UDP packet: 1 truncated/invalid, 2 non-first IP fragment, 3 other IP protocol.
    """
    if ethertype == 0x0800:
        if end - off < 20:
            return 1
        vihl, _tos, total, _id, frag, _ttl, proto, _ck, src, dst = _v4(buf, off)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            return 1
        if total >= ihl and off + total < end:
            end = off + total  # drop Ethernet padding
        if frag & 0x1FFF:
            return 2
        off += ihl
    elif ethertype == 0x86DD:
        if end - off < 40:
            return 1
        plen = _H(buf, off + 4)[0]
        proto = buf[off + 6]
        src = buf[off + 8 : off + 24]
        dst = buf[off + 24 : off + 40]
        if plen and off + 40 + plen < end:
            end = off + 40 + plen
        off += 40
        while proto in _IPV6_EXT or proto == 44:
            if off + 8 > end:
                return 1
            if proto == 44:
                if _H(buf, off + 2)[0] & 0xFFF8:
                    return 2
                proto = buf[off]
                off += 8
            else:
                proto, hlen = buf[off], (buf[off + 1] + 1) * 8
                off += hlen
    else:
        return 1
    if proto == TCP:
        if end - off < 20:
            return 1
        sport, dport, seq, ack, doff, flags = _tcp(buf, off)
        hl = (doff >> 4) * 4
        if hl < 20:
            return 1
        start = off + hl
        return src, dst, TCP, sport, dport, seq, ack, flags, min(start, end), end
    if proto == UDP:
        if end - off < 8:
            return 1
        sport, dport = _ports(buf, off)
        ulen = _H(buf, off + 4)[0]
        if ulen >= 8 and off + ulen < end:
            end = off + ulen
        return src, dst, UDP, sport, dport, 0, 0, 0, off + 8, end
    return 3


def decode_arp(buf: bytes, off: int, end: int) -> tuple[bytes, bytes] | None:
    """Sender (MAC, IPv4) of an Ethernet/IPv4 ARP packet, for the inventory."""
    if end - off < 28 or buf[off + 4] != 6 or buf[off + 5] != 4:
        return None
    return buf[off + 8 : off + 14], buf[off + 14 : off + 18]


_ETH_V4 = struct.Struct("!6s6sHBxHxxHxB2x4s4s").unpack_from  # Ethernet + option-less IPv4

# (src_mac, dst_mac, vlan, src, dst, proto, sport, dport, seq, ack, flags, pstart, pend)
Frame = tuple[bytes, bytes, int, bytes, bytes, int, int, int, int, int, int, int, int]
ARP = 4  # reason code: an ARP packet (decode it with decode_arp at the returned offset)


def decode_frame(linktype: int, buf: bytes, start: int, end: int) -> Frame | tuple[int, int]:
    """Link, IP and transport headers in one call.

    Untagged Ethernet with option-less IPv4 (nearly every packet on an OT network) takes a
    single ``struct`` call; everything else goes through ``decode_link``/``decode_ip``.
    On failure returns ``(reason, l3_offset)`` with the reason codes of ``decode_ip``,
    0 for no IP at all, or ``ARP``.
    """
    if linktype == 1 and end - start >= 34 and buf[start + 12] == 8 and buf[start + 13] == 0:
        dmac, smac, _et, vihl, total, frag, proto, src, dst = _ETH_V4(buf, start)
        if vihl == 0x45 and not frag & 0x1FFF:
            off = start + 34
            if total >= 20 and off - 20 + total < end:
                end = off - 20 + total
            if proto == TCP and end - off >= 20:
                sport, dport, seq, ack, doff, flags = _tcp(buf, off)
                hl = (doff >> 4) * 4
                if hl >= 20:
                    p = off + hl
                    return (smac, dmac, -1, src, dst, TCP, sport, dport, seq, ack, flags,
                            p if p < end else end, end)
    link = decode_link(linktype, buf, start, end)
    if link is None:
        return 0, 0
    off, etype, smac, dmac, vlan = link
    if etype == 0x0806:
        return ARP, off
    res = decode_ip(buf, off, end, etype)
    if type(res) is int:
        return (0 if etype not in (0x0800, 0x86DD) else res), off
    return (smac, dmac, vlan, *res)  # type: ignore[return-value]
