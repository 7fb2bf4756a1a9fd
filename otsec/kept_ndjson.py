"""An NDJSON file of which the head is final and the tail still changes (a live sensor's
alerts and incidents).

Every rewrite is atomic (a reader sees the old file or the new one); the final head is
copied by the kernel from the file being replaced, so a rewrite costs what changed, not
what is kept in memory, and a past run's lines stay (a restart appends). A head that grows
past ``rotate_bytes`` moves to a file of its own (``alerts.<UTC time>-<n>.ndjson``): files are
rotated, never truncated.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

log = logging.getLogger(__name__)
ROTATE_BYTES = 64 << 20  # copied at each change: kept small enough to cost little
MODE = 0o640


class KeptNdjson:
    def __init__(self, path: Path, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.head = _complete_lines(path)  # bytes of final lines at the start of the file
        self.closing: list[bytes] = []  # lines that became final since the last write
        self._tail: bytes | None = None  # the open tail last written

    def drop(self, ids: set[str]) -> int:
        """Take out the lines of documents whose ``event.id`` is in ``ids`` (alerts a
        restarted sensor took over: they come back as open ones); how many went."""
        if not ids or not self.head:
            return 0
        kept, gone = [], 0
        with open(os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            for line in fh:
                try:
                    doc_id = orjson.loads(line)["event"]["id"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    doc_id = None
                if doc_id in ids:
                    gone += 1
                else:
                    kept.append(line)
        if gone:
            self.head = 0
            self.closing[:0] = kept
            self.write([])
        return gone

    def close(self, lines: Iterable[bytes]) -> None:
        """Lines that will not change any more: kept at the head from the next write on."""
        self.closing.extend(lines)

    def write(self, tail: Iterable[bytes]) -> None:
        """The file anew: the final head, then ``tail`` (one JSON document a line each);
        nothing is written when neither changed since the last write."""
        tail_bytes = b"".join(tail)
        if not self.closing and tail_bytes == self._tail and self.path.exists():
            return
        self._tail = tail_bytes
        if self.head + sum(map(len, self.closing)) > self.rotate_bytes:
            self._rotate()
        tmp = self.path.with_name(f"{self.path.name}.tmp")
        tmp.unlink(missing_ok=True)  # whatever is there (a link too) is replaced, not followed
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, MODE)
        try:
            self._copy_head(fd)
            closing = b"".join(self.closing)
            _write_all(fd, closing + tail_bytes)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self.head += len(closing)
        self.closing.clear()

    def _copy_head(self, fd: int) -> None:
        if not self.head:
            return
        src = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            left, offset = self.head, 0
            while left:
                n = os.sendfile(fd, src, offset, left)
                if n == 0:  # the file is shorter than it was (changed under us)
                    break
                offset += n
                left -= n
            self.head = offset
        finally:
            os.close(src)

    def _rotate(self) -> None:
        """The head (and what closed since) into a file of its own; the file restarts."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for n in range(10_000):  # several in one second: numbered, in order
            target = self.path.with_name(f"{self.path.stem}.{stamp}-{n:04d}{self.path.suffix}")
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, MODE)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(target)
        try:
            self._copy_head(fd)
            _write_all(fd, b"".join(self.closing))
        finally:
            os.close(fd)
        log.info("%s: %d bytes of closed documents rotated to %s", self.path.name,
                 self.head + sum(map(len, self.closing)), target.name)
        self.head = 0
        self.closing.clear()


def _complete_lines(path: Path) -> int:
    """How many bytes of ``path`` are whole lines (a line cut by a crash is dropped). Only a
    regular file counts: a link left in its place is replaced, never followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return 0
    size = st.st_size
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with open(fd, "rb") as fh:
        back = min(size, 1 << 20)
        fh.seek(size - back)
        last = fh.read(back).rfind(b"\n")
    return size - back + last + 1 if last >= 0 else 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
