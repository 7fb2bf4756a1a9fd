"""What a protocol module declares about itself, for everything else to derive from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: mapping types of document fields (Elasticsearch / OpenSearch)
KEYWORD, LONG = "keyword", "long"


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """One kind of record a protocol's PDUs become (S7comm connections carry two)."""

    name: str
    #: the event dataclass, and the names of its parse anomalies
    event: type
    anomalies: type[StrEnum]
    #: the name of a function code as the graph and the alerts show it
    function_name: Callable[[int], str]
    #: the ECS document's ``otsec.<name>`` object for one PDU, and its fields' mapping types
    document: Callable[[Any], dict[str, Any]]
    mappings: Mapping[str, str]
    #: request function codes that change the process (writes, operates): marked in reports
    changes: frozenset[int]
    #: its colour in the report
    colour: str
    #: turns the core's nested tuples in a record's fields into their dataclasses
    fix: Callable[[dict[str, Any]], None] | None = None
    #: what a record tells of the answering device's identity, and where that came from
    identity: Callable[[Any], tuple[dict[str, str], str] | None] | None = None
    #: texts rules and messages compute from its records (``{table}``, ``{reason}``...)
    texts: Mapping[str, Callable[[Any], str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """A protocol otsec dissects: where it listens, what its records are, who serves it."""

    name: str
    tcp_ports: frozenset[int]
    udp_ports: frozenset[int]
    records: tuple[RecordSpec, ...]
    #: the role of a host that answers it
    server_role: str
