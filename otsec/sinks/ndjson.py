"""NDJSON files the policy writes (alerts); the core writes the per-PDU lines itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def write_ndjson(path: Path, docs: list[dict[str, Any]]) -> None:
    with open(path, "wb") as fh:
        for doc in docs:
            fh.write(orjson.dumps(doc))
            fh.write(b"\n")
