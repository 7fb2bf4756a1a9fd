"""Open requests waiting for their answers, bounded so a request flood cannot grow memory."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Pending(Generic[T]):
    """Insertion-ordered requests by key; the oldest is dropped beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: dict[Hashable, T] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.items)

    def open(self, key: Hashable, request: T) -> bool:
        """Remember a request; True when this drop starts a new thousand (report it)."""
        items = self.items
        items.pop(key, None)
        items[key] = request
        if len(items) <= self.limit:
            return False
        del items[next(iter(items))]
        self.dropped += 1
        return self.dropped % 1000 == 1

    def close(self, key: Hashable) -> T | None:
        return self.items.pop(key, None)

    def clear(self) -> None:
        self.items.clear()
