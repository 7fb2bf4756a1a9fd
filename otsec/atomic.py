"""Atomic file writes: readers never see half a file, a crash never leaves one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give: every output file alike


JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def write_json(path: Path, obj: Any) -> None:
    """Plain write, for a folder that is published as a whole when complete (an audit's)."""
    path.write_bytes(orjson.dumps(obj, option=JSON_OPTIONS) + b"\n")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write temp, fsync, rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(obj, option=JSON_OPTIONS))
            fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
