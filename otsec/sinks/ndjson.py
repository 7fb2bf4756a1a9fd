"""NDJSON files the policy writes (alerts); the core writes the per-PDU lines itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


def write_ndjson(path: Path, docs: list[dict[str, Any]]) -> None:
    """Write ``path`` as a new file (mode from the umask: the live sensor's 0640); whatever
    was there, a link left in its place too, is replaced, never followed."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    with open(fd, "wb") as fh:
        for doc in docs:
            fh.write(orjson.dumps(doc))
            fh.write(b"\n")
