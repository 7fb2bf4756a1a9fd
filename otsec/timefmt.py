"""Timestamps as ECS wants them: ISO 8601, UTC, microseconds; and back."""

from __future__ import annotations

from datetime import UTC, datetime

_cache: dict[int, str] = {}
_texts: dict[float, str] = {}  # whole texts: a host's last packet is its edge's too


def iso(ts: float) -> str:
    """Format an epoch timestamp; the per-second prefix is cached (events come in bursts),
    and the texts made lately (documents name the same times again and again)."""
    text = _texts.get(ts)
    if text is not None:
        return text
    sec = int(ts // 1)
    prefix = _cache.get(sec)
    if prefix is None:
        if len(_cache) > 4096:
            _cache.clear()
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _cache[sec] = prefix
    micros = min(round((ts - sec) * 1_000_000), 999_999)
    if len(_texts) > 65_536:
        _texts.clear()
    text = _texts[ts] = f"{prefix}.{micros:06d}Z"
    return text


def epoch(text: str) -> float:
    """The epoch seconds of a timestamp as ``iso`` writes it (or any ISO 8601 text). The
    seconds of ``iso``'s texts are cached, the microseconds added as datetime does (the
    same float)."""
    if len(text) == 27 and text[19] == "." and text[26] == "Z" and text[20:26].isdigit():
        head = text[:19]
        sec = _seconds.get(head)
        if sec is None:
            if len(_seconds) > 4096:
                _seconds.clear()
            sec = _seconds[head] = int(datetime.fromisoformat(head + "+00:00").timestamp())
        return (sec * 1_000_000 + int(text[20:26])) / 1_000_000
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_seconds: dict[str, int] = {}
