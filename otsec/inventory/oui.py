"""MAC address vendors from the IEEE registry files shipped by the netaddr package.

The registry is read directly (its index, then the one record wanted): loading netaddr's
own lookup tables costs more than the rest of a small audit.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _registry() -> tuple[Path, bytes] | None:
    spec = importlib.util.find_spec("netaddr")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "eui"
    try:
        return folder / "oui.txt", b"\n" + (folder / "oui.idx").read_bytes()
    except OSError:
        return None  # unreadable (privileges dropped before it was loaded)


@lru_cache(maxsize=4096)
def mac_vendor(mac: str) -> str | None:
    """The registered organisation of a MAC's OUI, or None (unknown or locally administered)."""
    try:
        first = int(mac[:2], 16)
        prefix = int(mac.replace("-", "").replace(":", "")[:6], 16)
    except ValueError:
        return None
    if first & 0x02:
        return None  # locally administered: no vendor behind it
    return _vendor(prefix)


@lru_cache(maxsize=4096)
def _vendor(prefix: int) -> str | None:
    """The organisation registered for an OUI (a plant's devices share a few)."""
    registry = _registry()
    if registry is None:
        return None
    text, index = registry
    at = index.find(b"\n%d," % prefix)
    if at < 0:
        return None
    end = index.find(b"\n", at + 1)
    _prefix, offset, size = index[at + 1 : end if end > 0 else None].split(b",")
    try:
        with text.open("rb") as fh:
            fh.seek(int(offset))
            record = fh.read(int(size))
    except OSError:
        return None
    line = record.split(b"\n", 1)[0]
    org = line.split(b"(hex)", 1)[-1].decode("utf-8", "replace").strip().rstrip(",.")
    return org or None
