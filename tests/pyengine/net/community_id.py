"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec)."""

from __future__ import annotations

import base64
import hashlib
import struct


def community_id(
    src: bytes, dst: bytes, proto: int, sport: int, dport: int, seed: int = 0
) -> str:
    """Hash a flow's 5-tuple so that both directions and other tools agree."""
    if (src, sport) > (dst, dport):
        src, dst, sport, dport = dst, src, dport, sport
    data = struct.pack("!H", seed) + src + dst + struct.pack("!BBHH", proto, 0, sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
