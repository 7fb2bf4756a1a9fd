"""Sliding-window counters per key (scans and sweeps), bounded in the keys they track."""

from __future__ import annotations

from collections import deque

MAX_KEYS = 10_000


class Threshold:
    """Timestamps per key within ``window`` seconds; ``hit`` is True from the ``limit``-th."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self.seen: dict[str, deque[float]] = {}

    def hit(self, key: str, ts: float) -> bool:
        q = self.seen.get(key)
        if q is None:
            if len(self.seen) >= MAX_KEYS:
                self.seen.clear()
            q = self.seen[key] = deque()
        q.append(ts)
        while q and ts - q[0] > self.window:
            q.popleft()
        return len(q) >= self.limit
