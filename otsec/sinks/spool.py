"""The spool: bulk actions the search cluster has not taken yet, on disk and bounded.

Files hold NDJSON actions, one class of worth per file, delivered oldest first. When the
spool is full, what is worth least goes first (metrics, PDU events and heartbeats, then
asset, edge and sensor state, each also for newer of its kind; alerts and incidents never
give way), a whole file of the oldest at a time, and what went is counted. A spool that cannot be
written (disk full, no permission) costs the documents it could not keep, counted and
logged once, never the sensor. A file whose writer died (``.tmp``) is completed the next
time the spool is used, so it is shipped and never blocks later runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

Action = dict[str, Any]  # {"_op_type", "_index", "_id"?, "_source", ...}

DEFAULT_MAX_BYTES = 1 << 30
FILE_BYTES = 4 << 20  # one spool file at most: the unit shed when the spool is full
FILES_MIN = 64  # a spool holds at least this many files' worth (a small spool sheds finely)

# what a document is worth keeping, best first
FINDING, STATE, BULK = 0, 1, 2
WORTH_NAMES = {FINDING: "alerts and incidents", STATE: "asset, edge and sensor state",
               BULK: "metrics, PDU events and heartbeats"}
_FINDINGS = ("logs-otsec.alert-", "logs-otsec.incident-", "otsec-alerts-latest",
             "otsec-incidents-latest")
_BULK = ("logs-otsec.metric-", "logs-otsec.event-", "metrics-otsec.")


def worth(action: Action) -> int:
    """How much an action is worth keeping: FINDING, STATE or BULK."""
    index = str(action.get("_index", ""))
    if index.startswith(_FINDINGS):
        return FINDING
    if index.startswith(_BULK):
        return BULK
    return STATE


def default_state_dir() -> Path:
    """Where otsec keeps its state unless told (see privileges.state_directory): the same
    folder for the sensor that fills the spool and for `otsec ship`."""
    from otsec.privileges import state_directory

    return state_directory()


def default_spool_dir(state_dir: Path | None = None, owner: tuple[int, int] | None = None,
                      create: bool = True) -> Path:
    """The spool directory under ``state_dir`` (default_state_dir() when None): created
    0700, and given to ``owner`` (uid, gid) when named, i.e. the user a sensor becomes
    when it gives up root, which must happen before it does."""
    path = (state_dir or default_state_dir()) / "spool"
    if create:
        _make_private(path)
        if owner is not None:
            os.chown(path, *owner)
            for child in path.iterdir():
                os.chown(child, *owner)
    return path


def sensor_spool(state_dir: Path | None = None, owner: tuple[int, int] | None = None
                 ) -> Spool:
    """The spool a live sensor keeps for its whole run, made ready while it is still root:
    OTSEC_SPOOL_DIR, else the spool under ``state_dir`` (default_state_dir() when None),
    created 0700 and given to ``owner`` (uid, gid), the user it is about to become."""
    env = os.environ.get("OTSEC_SPOOL_DIR")
    if env:
        path = Path(env)
        _make_private(path)
        if owner is not None:
            for p in [path, *path.iterdir()]:
                os.chown(p, *owner)
        return Spool(path)
    return Spool(default_spool_dir(state_dir, owner))


def _make_private(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        path.chmod(0o700)  # the spool holds alerts: readable by its owner only


_warned: set[str] = set()


def warn_once(key: str, message: str, *args: Any, logger: logging.Logger = log) -> None:
    """Log a warning the first time it happens in this process (shipping runs at every
    flush: a full disk or a plain-http URL must not fill the log as well)."""
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


@dataclass
class Stored:
    """What one ``Spool.put`` did."""

    stored: int = 0
    shed: dict[int, int] = field(default_factory=dict)  # by worth: turned away or shed
    lost: int = 0  # of these: not written because the spool could not be written

    @property
    def dropped(self) -> int:
        return sum(self.shed.values())

    def count(self, kind: int, n: int = 1) -> None:
        self.shed[kind] = self.shed.get(kind, 0) + n


class _Writer:
    """One spool file being written (``.tmp`` until complete)."""

    def __init__(self, spool: Spool, kind: int) -> None:
        self.kind = kind
        self.final = spool.dir / (f"spool-{time.time_ns():020d}-{os.getpid()}-"
                                  f"{spool.next_seq():06d}-p{kind}.ndjson")
        self.tmp = self.final.with_name(self.final.name + ".tmp")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.fh: IO[bytes] = os.fdopen(fd, "wb")
        self.bytes = 0
        self.lines = 0

    def write(self, line: bytes) -> None:
        self.fh.write(line)
        self.bytes += len(line)
        self.lines += 1

    def finish(self) -> None:
        self.fh.close()
        os.replace(self.tmp, self.final)

    def salvage(self) -> int:
        """After a write error: keep the complete lines that reached the disk; return how
        many were lost."""
        with contextlib.suppress(OSError):
            self.fh.close()
        kept = _complete(self.tmp, self.final)
        return self.lines - kept


def _complete(tmp: Path, final: Path) -> int:
    """Make a spool file of what ``tmp`` holds up to its last full line; return its lines."""
    try:
        data = tmp.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if not whole:
            tmp.unlink()
            return 0
        if len(whole) < len(data):
            os.truncate(tmp, len(whole))
        os.replace(tmp, final)
        return whole.count(b"\n")
    except OSError:
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """Append-only NDJSON files, delivered oldest first; bounded in bytes. What can never
    be delivered (a line that is not JSON, a document the cluster rejects as such) goes to
    ``dead-letter.ndjson`` with its reason, so that it never blocks what comes after it."""

    def __init__(self, directory: Path | None = None, max_bytes: int | None = None) -> None:
        env = os.environ.get("OTSEC_SPOOL_DIR")
        self.dir = Path(directory or env or default_spool_dir(create=False))
        self.max_bytes = (max_bytes if max_bytes is not None else
                          int(os.environ.get("OTSEC_SPOOL_MAX_BYTES", DEFAULT_MAX_BYTES)))
        self.errors = 0  # writes that failed (disk full, permissions): documents lost
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def dead_letter(self) -> Path:
        return self.dir / "dead-letter.ndjson"

    def files(self) -> list[Path]:
        try:
            return sorted(self.dir.glob("spool-*.ndjson")) if self.dir.is_dir() else []
        except OSError:
            return []

    def _all(self) -> list[Path]:
        try:
            return [*self.dir.glob("spool-*.ndjson"), *self.dir.glob("spool-*.tmp")]
        except OSError:
            return []

    def size(self) -> int:
        total = 0
        for f in self._all():
            try:
                total += f.stat().st_size
            except OSError:
                continue
        return total

    def oldest(self) -> float | None:
        """When the oldest spooled file was written (epoch seconds), None when empty."""
        times = []
        for f in self.files():
            try:
                times.append(f.stat().st_mtime)
            except OSError:
                continue
        return min(times) if times else None

    def failed(self, what: str, exc: OSError, losing: bool = True) -> None:
        """Count a failed spool operation; say it once per process and kind."""
        self.errors += 1
        cost = ("documents the search cluster does not take now are lost" if losing else
                "its files wait for a later delivery")
        warn_once(f"{self.dir}:{what}:{exc.errno}", "spool %s: cannot %s (%s): %s; detection "
                  "and the local files go on", self.dir, what, exc.strerror or exc, cost)

    # -- writing ------------------------------------------------------------------------

    def put(self, actions: Iterable[Action]) -> Stored:
        """Write actions to new spool files; shed what is worth less to make room."""
        result = Stored()
        stream = iter(actions)
        first = next(stream, None)
        if first is None:
            return result  # nothing to keep: the disk is not touched
        stream = itertools.chain([first], stream)
        try:
            _make_private(self.dir)
            self.recover()
        except OSError as exc:
            self.failed("create its directory", exc)
            return self._lose(stream, result)
        room = self.max_bytes - self.size()
        file_bytes = min(FILE_BYTES, max(1024, self.max_bytes // FILES_MIN))
        writers: dict[int, _Writer] = {}
        mine: dict[Path, int] = {}  # files this put wrote: their lines
        pending: Action | None = None  # the action being written when writing fails
        try:
            for a in stream:
                pending = a
                kind = worth(a)
                line = (json.dumps(a, separators=(",", ":")) + "\n").encode()
                if len(line) > room:
                    for w in [w for k, w in writers.items() if k > kind]:
                        w.finish()
                        mine[w.final] = w.lines
                        del writers[w.kind]
                    room += self._shed(len(line) - room, kind, result, mine)
                if len(line) > room:
                    result.count(kind)
                    pending = None
                    continue
                w = writers.get(kind)
                if w is not None and w.bytes + len(line) > file_bytes:
                    w.finish()
                    mine[w.final] = w.lines
                    w = None
                if w is None:
                    w = writers[kind] = _Writer(self, kind)
                w.write(line)
                room -= len(line)
                result.stored += 1
                pending = None
            for w in writers.values():
                w.finish()
        except OSError as exc:
            self.failed("write", exc)
            for w in writers.values():
                if w.fh.closed and not w.tmp.exists():
                    continue
                lost = w.salvage()
                result.stored -= lost
                result.lost += lost
                result.count(w.kind, lost)
            self._lose([pending] if pending is not None else [], result)
            self._lose(stream, result)
        return result

    def _lose(self, actions: Iterable[Action], result: Stored) -> Stored:
        for a in actions:
            result.count(worth(a))
            result.lost += 1
        return result

    def _shed(self, need: int, kind: int, result: Stored, mine: dict[Path, int]) -> int:
        """Remove whole files of what is worth less than ``kind``, the worst and oldest
        first, until ``need`` bytes are free; then older files of state, metrics and
        events like it (their newest says more; alerts and incidents never give way to
        others). Return the bytes freed. (A file this put wrote and shed itself was not
        stored after all.)"""
        freed = 0

        def victim(f: Path) -> bool:
            worth_f = _worth_of(f)
            return worth_f > kind or (worth_f == kind != FINDING and f not in mine)

        victims = sorted(filter(victim, self.files()), key=lambda f: (-_worth_of(f), f.name))
        for f in victims:
            if freed >= need:
                break
            try:
                data = f.read_bytes()
                f.unlink()
            except OSError:
                continue
            freed += len(data)
            result.count(_worth_of(f), data.count(b"\n"))
            result.stored -= mine.pop(f, 0)
        return freed

    def recover(self) -> int:
        """Complete the spool files whose writer died (``.tmp``): their full lines are
        shipped like any others; an unfinished rewrite of a file that still exists is
        dropped (the file holds it all). Return the files recovered."""
        done = 0
        try:
            tmps = sorted(self.dir.glob("spool-*.tmp"))
        except OSError:
            return 0
        for tmp in tmps:
            final, pid = _tmp_target(tmp)
            if pid is not None and pid != os.getpid() and _alive(pid):
                continue  # another process is writing it now
            try:
                if final.exists():
                    tmp.unlink()
                    continue
            except OSError:
                continue
            if _complete(tmp, final):
                done += 1
                log.info("spool %s: recovered %s, left unfinished", self.dir, final.name)
        return done

    @contextlib.contextmanager
    def delivering(self) -> Iterator[bool]:
        """Whether this process may deliver the spool's files now: one at a time (a live
        sensor and `otsec ship` would send the same files twice)."""
        try:
            fd = os.open(self.dir / ".delivering", os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            yield True  # no lock to be had: delivering twice only costs duplicates (409)
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def rewrite(self, path: Path, actions: Iterable[Action]) -> None:
        """Replace a spool file by ``actions`` (what of it is still to deliver)."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.rewrite.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for a in actions:
                fh.write((json.dumps(a, separators=(",", ":")) + "\n").encode())
        os.replace(tmp, path)

    def bury(self, reason: str, action: Action | None = None, line: str | None = None) -> bool:
        """Set aside what cannot be delivered, with why (appended, one JSON line each)."""
        entry: dict[str, Any] = {"reason": reason[:1000], "at": time.time()}
        if action is not None:
            entry["action"] = action
        if line is not None:
            entry["line"] = line[:100_000]
        try:
            _make_private(self.dir)
            fd = os.open(self.dead_letter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as fh:
                fh.write((json.dumps(entry, separators=(",", ":")) + "\n").encode())
        except OSError as exc:
            self.failed("keep a dead letter", exc)
            return False
        return True

    def dead_count(self) -> int:
        try:
            with self.dead_letter.open("rb") as fh:
                return sum(1 for _ in fh)
        except OSError:
            return 0

    # -- reading ------------------------------------------------------------------------

    def read(self, path: Path, on_bad: Any = None) -> Iterator[Action]:
        """The actions of one spool file, streamed; lines that are not actions are buried
        (and ``on_bad()`` is called for each)."""
        with path.open(encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    action = json.loads(line)
                    if not isinstance(action, dict) or "_index" not in action:
                        raise ValueError("not a bulk action")
                except ValueError as exc:
                    self.bury(f"{path.name}:{n}: unreadable spool line ({exc})", line=line)
                    if on_bad is not None:
                        on_bad()
                    continue
                yield action


def _worth_of(path: Path) -> int:
    """The worth of a spool file's actions, from its name (older files: the best)."""
    tail = path.name.removesuffix(".ndjson").rsplit("-", 1)[-1]
    if len(tail) == 2 and tail[0] == "p" and tail[1] in "012":
        return int(tail[1])
    return FINDING


def _tmp_target(tmp: Path) -> tuple[Path, int | None]:
    """The file a ``.tmp`` becomes, and the process writing it."""
    name = tmp.name.removesuffix(".tmp")
    if name.endswith(".rewrite"):  # <file>.<pid>.rewrite
        base, pid = name.removesuffix(".rewrite").rsplit(".", 1)
        return tmp.with_name(base), int(pid) if pid.isdigit() else None
    final = name if name.endswith(".ndjson") else name + ".ndjson"  # older: spool-….tmp
    parts = final.split("-")
    pid = parts[2] if len(parts) > 2 else ""
    return tmp.with_name(final), int(pid) if pid.isdigit() else None
