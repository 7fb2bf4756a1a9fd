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


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write temp, fsync, rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                                  | orjson.OPT_NON_STR_KEYS))
            fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
