"""MAC address vendors from the IEEE registry shipped by the netaddr package."""

from __future__ import annotations

from functools import lru_cache

from netaddr import EUI, AddrFormatError, NotRegisteredError


@lru_cache(maxsize=4096)
def mac_vendor(mac: str) -> str | None:
    """The registered organisation of a MAC's OUI, or None (unknown or locally administered)."""
    try:
        eui = EUI(mac)
        if int(mac[:2].replace("-", ""), 16) & 0x02:
            return None  # locally administered: no vendor behind it
        return str(eui.oui.registration().org).strip().rstrip(",.") or None
    except (AddrFormatError, NotRegisteredError, ValueError, IndexError, OSError):
        return None  # OSError: the registry file became unreadable (privileges dropped)
