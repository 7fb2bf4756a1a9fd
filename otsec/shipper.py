"""Shipping on a thread of its own: a slow, throttling or hung cluster costs spool bytes,
never packets and never the local files.

Every batch the writer hands over goes to the spool first (written ahead, on the writer's
thread: a local file, quick), and the shipper's thread delivers the spool, oldest first,
whenever something new arrived and every ``RETRY_EVERY`` seconds. So nothing waits in
memory for the cluster, and a sensor stopped while the cluster hangs loses nothing: its
next run (or ``otsec ship``) delivers what is spooled.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
RETRY_EVERY = 30.0  # seconds between deliveries of the spool when nothing new arrives


@dataclass
class Shipped:
    """What the shipper did so far (for the console and the heartbeat)."""

    delivered: int = 0
    dropped: int = 0  # no room left in the spool, or the spool could not be written
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


class Shipper:
    def __init__(self, url: str, spool: Any) -> None:
        self.url = url
        self.spool = spool
        self.totals = Shipped()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="otsec-shipper", daemon=True)
        self._thread.start()

    def submit(self, actions: list[dict[str, Any]]) -> None:
        """Spool ``actions`` and wake the thread that delivers them. The spool survives a
        full disk or a lost permission itself (it counts what it could not keep)."""
        from otsec.sinks.search import say_dropped

        if not actions:
            return
        stored = self.spool.put(actions)
        if stored.dropped:
            say_dropped(self.spool, stored)
            with self._lock:
                self.totals.dropped += stored.dropped
        self._wake.set()

    def _run(self) -> None:
        from otsec.sinks.search import deliver

        failing = False
        while True:
            self._wake.wait(RETRY_EVERY)
            self._wake.clear()
            stopping = self._stopping
            try:
                outcome = deliver(self.url, [], self.spool)
            except Exception as exc:  # a cluster or spool fault must not end shipping
                log.error("search cluster: %s: %s", type(exc).__name__, exc)
                outcome = None
            if outcome is not None:
                with self._lock:
                    t = self.totals
                    t.delivered += outcome.delivered + outcome.duplicates
                    t.dead_lettered += outcome.dead_lettered
                    t.errors = (t.errors + outcome.errors)[-5:]
                if outcome.dead_lettered:
                    log.warning("search cluster: %d documents rejected, set aside in %s",
                                outcome.dead_lettered, self.spool.dead_letter)
                if outcome.errors and not failing:  # said when it starts, and when it ends
                    log.warning("search cluster: %s; documents wait in the spool (%s)",
                                outcome.errors[0], self.spool.dir)
                elif failing and not outcome.errors:
                    log.info("search cluster: delivering again")
                failing = bool(outcome.errors)
            if stopping:
                return

    def close(self, wait: float = 10.0) -> None:
        """One last delivery, for ``wait`` seconds at most; what is left stays spooled."""
        self._stopping = True
        self._wake.set()
        self._thread.join(wait)
        if self._thread.is_alive():
            log.warning("search cluster: still busy after %.0f s; the rest stays in the "
                        "spool for the next run or `otsec ship`", wait)
