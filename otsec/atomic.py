"""Atomic file writes: readers never see half a file, a crash never leaves one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import orjson

JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def write_json(path: Path, obj: Any) -> None:
    """Plain write, for a folder that is published as a whole when complete (an audit's)."""
    path.write_bytes(orjson.dumps(obj, option=JSON_OPTIONS) + b"\n")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write temp, fsync, rename: readers never see half a file. The temp file is new
    (never a link someone left) and has the mode open() gives under the process's umask, as
    every other output (the live sensor's: 0640)."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(obj, option=JSON_OPTIONS))
            fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
