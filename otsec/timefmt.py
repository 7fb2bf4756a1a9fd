"""Timestamps as ECS wants them: ISO 8601, UTC, microseconds; and back."""

from __future__ import annotations

from datetime import UTC, datetime

_cache: dict[int, str] = {}


def iso(ts: float) -> str:
    """Format an epoch timestamp; the per-second prefix is cached (events come in bursts)."""
    sec = int(ts // 1)
    prefix = _cache.get(sec)
    if prefix is None:
        if len(_cache) > 4096:
            _cache.clear()
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _cache[sec] = prefix
    micros = min(round((ts - sec) * 1_000_000), 999_999)
    return f"{prefix}.{micros:06d}Z"


def epoch(text: str) -> float:
    """The epoch seconds of a timestamp as ``iso`` writes it (or any ISO 8601 text)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
