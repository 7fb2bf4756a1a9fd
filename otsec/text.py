"""Text from the wire made safe to show: names and identities come from devices (or from
whoever forges their packets), so before they reach a terminal, a log or a page, control
characters are spelled out and the length is bounded."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

MAX_SHOWN = 512  # characters of one value on a terminal or a page

# C0 and C1 controls, DEL, and the Unicode controls that reorder or hide text
CONTROL_CHARS = "\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff"
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")


def _spell(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(value: object, limit: int = MAX_SHOWN) -> str:
    """One line of plain text: controls as ``\\xNN``, at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}…[{len(text) - limit} more characters]"
    return _CONTROL.sub(_spell, text)


def shown(value: object, limit: int = MAX_SHOWN) -> Text:
    """For a rich table cell: printable, and never read as console markup. (rich is loaded
    here, by what draws on a terminal: a JSON run need not pay for it.)"""
    from rich.text import Text

    return Text(printable(value, limit))


def hex_code(value: int | None, width: int = 2) -> str:
    """A protocol code as hex (``0x05``), ``?`` when there is none."""
    return "?" if value is None else f"0x{value:0{width}x}"
