"""The envelope of the typed records every stage consumes (each protocol's records are
defined in its module under ``otsec.protocols``), and parse anomalies.

The core fills the protocol fields; ``ts``, ``frame`` and ``flow`` say where and when.
Nothing here decides whether an event is notable: that is the detect package's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


@dataclass(slots=True, kw_only=True)
class Event:
    """Common envelope: where and when. ``flow`` is the engine's Flow object."""

    protocol: ClassVar[str] = ""
    from_client: bool
    ts: float = 0.0
    frame: int = 0
    flow: Any = None
    meaning: Any = None  # what the PDU does (graph.functions.Use), decided by the core

    @property
    def direction(self) -> str:
        return "request" if self.from_client else "response"


@dataclass(slots=True, kw_only=True)
class Anomaly(Event):
    """A deviation found while parsing; the flow goes on being parsed."""

    protocol_name: str
    kind: StrEnum
    detail: str = ""
