"""Giving up root in the live sensor, and the folders it can still write afterwards.

Root (or CAP_NET_RAW) is needed for one thing: the capture socket. Before opening it the
sensor makes the folders it will write (``--out``, the baseline's folder when learning,
the state directory and its spool when shipping) and asks the kernel whether the user it
will become can write them; it changes the owner and mode of nothing but a folder it has
just made. Once the socket is open the capability bounding set is emptied, root is given
up and no-new-privileges is set: the sensor and every worker forked from it have no way
back. Every file in those folders is opened afterwards, as that user, so a link planted
there reaches only what that user could reach anyway.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import pwd
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

UMASK = 0o027  # what the sensor writes: files 0640, folders 0750
STATE_MODE = 0o750
SPOOL_MODE = 0o700
PARENT_MODE = 0o755  # a missing folder above one of the sensor's: passable, root's
ROOT_STATE = Path("/var/lib/otsec")

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_VERSION_3 = 0x20080522
MAX_LINKS = 40
SECRETS = ("OTSEC_ES_PASSWORD", "OTSEC_ES_API_KEY")  # each may come from NAME_FILE
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class PrivilegeError(Exception):
    """The sensor cannot run as asked (a user or folder mistake): one line, exit 2."""


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user the sensor becomes, with the groups login would give it."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @classmethod
    def named(cls, name: str) -> RunAs:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise PrivilegeError(f"no such user {name!r} to run as (see --user)") from None
        if pw.pw_uid == 0:
            raise PrivilegeError(f"--user {name} is root: name an unprivileged user "
                                 "(or --stay-root)")
        return cls(name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(name, pw.pw_gid)))


def state_directory() -> Path:
    """Where the sensor keeps what is not an output (the spool): OTSEC_STATE_DIR, else the
    unit's StateDirectory, else /var/lib/otsec for root and ~/.local/state/otsec for others."""
    if os.environ.get("OTSEC_STATE_DIR"):
        return Path(os.environ["OTSEC_STATE_DIR"])
    if os.environ.get("STATE_DIRECTORY"):  # set by systemd, colon-separated
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return ROOT_STATE
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "otsec"


def spool_directory(state: Path | None = None) -> Path:
    """The sensor's spool: OTSEC_SPOOL_DIR, else ``spool`` in the state directory."""
    if os.environ.get("OTSEC_SPOOL_DIR"):
        return Path(os.environ["OTSEC_SPOOL_DIR"])
    return (state if state is not None else state_directory()) / "spool"


def prepare(user: str | None, out_dir: Path, saved: Path | None = None,
            spool: bool = False) -> RunAs | None:
    """Make the folders the sensor writes and check them, before anything is opened; set the
    umask for what it writes. Returns the user to become (None: stay as we are).

    ``saved``: a file the sensor rewrites (the baseline, when learning) whose folder it needs;
    ``spool``: documents may be spooled (a cluster is given)."""
    os.umask(UMASK)
    run_as = RunAs.named(user) if user and os.geteuid() == 0 else None
    folders = [(out_dir, "--out", STATE_MODE)]
    if saved is not None:
        folders.append((saved.parent, f"--baseline {saved}: its folder", STATE_MODE))
    if spool:
        spool_dir = spool_directory()
        if not os.environ.get("OTSEC_SPOOL_DIR"):
            folders.append((spool_dir.parent, "the state directory", STATE_MODE))
        folders.append((spool_dir, "the spool", SPOOL_MODE))
        os.environ["OTSEC_SPOOL_DIR"] = str(spool_dir)  # where the spool code looks
    # a folder inside another is made after it (the baseline's folder holding --out)
    for path, what, mode in sorted(folders, key=lambda f: len(Path(os.path.abspath(f[0])).parts)):
        made = make_directory(path, mode, run_as)
        if run_as is not None and not writable_by(run_as, path):
            raise PrivilegeError(_not_writable(path, what, run_as, made))
    return run_as


def _not_writable(path: Path, what: str, run_as: RunAs, made: bool) -> str:
    who = run_as.name
    if made:
        return (f"{what} {path}: user {who} cannot reach it (a folder above it is closed to "
                f"{who}); choose a place {who} can reach, or another --user")
    return (f"{what} {path}: user {who} cannot write there (otsec gives away only a folder it "
            f"makes): name a new folder, or make this one writable by {who} (chown {who} {path})")


def make_directory(path: Path, mode: int, owner: RunAs | None = None) -> bool:
    """Make the folder ``path`` unless it exists (missing parents 0755, root's); True when
    made. As root it walks from / by descriptors: a symbolic link on the way is followed only
    when root owns it (a planted one never is), and only the folder made here is given
    ``mode`` and ``owner``; an existing one is left as it is."""
    if os.geteuid() != 0:
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            if not path.is_dir():
                raise PrivilegeError(f"{path} is not a folder") from None
            return False
        path.chmod(mode)
        return True
    fd, made = _walk(path, mode, owner)
    os.close(fd)
    return made


def read_file(path: Path) -> bytes:
    """A file's bytes; as root without following a link the sensor's user could have left
    (the folders on the way walked as make_directory walks them, the file itself opened
    O_NOFOLLOW): a baseline kept in the state directory."""
    if os.geteuid() != 0:
        return path.read_bytes()
    try:
        folder, _made = _walk(path.parent, 0, None, create=False)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent)) from None
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _walk(path: Path, mode: int, owner: RunAs | None,
          create: bool = True) -> tuple[int, bool]:
    """A descriptor of the folder ``path`` (made where missing, with ``create``) and whether
    its last part was made here."""
    parts = deque(PurePosixPath(os.path.abspath(path)).parts[1:])
    fd = os.open("/", _DIR)
    made, links = False, 0
    try:
        while parts:
            name = parts.popleft()
            made = False
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o700, dir_fd=fd)  # private until its mode and owner are set
                made = True
            else:
                if stat.S_ISLNK(st.st_mode):
                    if st.st_uid != 0:
                        raise PrivilegeError(f"{path}: {name} is a symbolic link owned by uid "
                                             f"{st.st_uid}; root does not follow it")
                    links += 1
                    if links > MAX_LINKS:
                        raise PrivilegeError(f"{path}: too many symbolic links")
                    target = PurePosixPath(os.readlink(name, dir_fd=fd))
                    if target.is_absolute():
                        os.close(fd)
                        fd = os.open("/", _DIR)
                    parts.extendleft(reversed(target.parts[1:] if target.is_absolute()
                                              else target.parts))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise PrivilegeError(f"{path}: {name} is not a folder")
            child = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            if made:
                _settle(fd, path, mode if not parts else PARENT_MODE,
                        owner if not parts else None)
        return fd, made
    except BaseException:
        os.close(fd)
        raise


def _settle(fd: int, path: Path, mode: int, owner: RunAs | None) -> None:
    """Mode and owner of a folder just made (through its descriptor: nothing followed)."""
    st = os.fstat(fd)
    if st.st_uid != 0 or os.listdir(fd):  # another one was put in its place meanwhile
        raise PrivilegeError(f"{path}: changed while otsec was making it")
    os.fchmod(fd, mode)
    if owner is not None:
        os.fchown(fd, owner.uid, owner.gid)


def writable_by(run_as: RunAs, path: Path) -> bool:
    """Whether ``run_as`` can make files in the folder ``path`` (and reach it from /), as
    the kernel answers for that user: the real ids are switched for the question, the
    saved uid stays root to switch back."""
    ids, gids, groups = os.getresuid(), os.getresgid(), os.getgroups()
    os.setgroups(list(run_as.groups))
    try:
        os.setresgid(run_as.gid, run_as.gid, -1)
        try:
            os.setresuid(run_as.uid, run_as.uid, -1)
            try:
                return os.access(path, os.W_OK | os.X_OK)
            finally:
                os.setresuid(*ids)
        finally:
            os.setresgid(*gids)
    finally:
        os.setgroups(groups)


def before_dropping(search: bool, processes: bool = False) -> None:
    """Load what is read lazily from disk while the files are still readable (the Python
    installation may be root's only): the search clients and the cluster's secrets, the
    vendor table and what starting worker processes imports."""
    from otsec.inventory.oui import mac_vendor

    if processes:
        import multiprocessing.connection
        import multiprocessing.popen_fork
        import multiprocessing.queues
        import multiprocessing.reduction
        import multiprocessing.synchronize  # noqa: F401
    if search:
        from otsec.sinks.search import preload

        preload()
        read_secrets()
    mac_vendor("00-1B-1B-00-00-00")


def read_secrets() -> None:
    """A secret named by a file (``OTSEC_ES_PASSWORD_FILE``, root's only as it should be) is
    read now into this process's environment, where the search code looks first: the user
    the sensor becomes cannot read the file (it never reaches /proc/PID/environ)."""
    for name in SECRETS:
        path = os.environ.get(f"{name}_FILE")
        if path and name not in os.environ:
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise PrivilegeError(f"{name}_FILE: cannot read {path} ({exc.strerror})"
                                     ) from None
            os.environ[name] = value
            del os.environ[f"{name}_FILE"]


def drop_privileges(run_as: RunAs | None) -> None:
    """Once the capture sockets are open (they stay usable): as root, empty the capability
    bounding set and become ``run_as`` for good; as a user with capabilities (the systemd
    unit), give them all up. Then no-new-privileges: no exec can give any back. Root
    staying root (``run_as`` None, --stay-root) keeps everything."""
    if run_as is not None:
        _empty_bounding_set()
        os.setgroups(list(run_as.groups))
        os.setresgid(run_as.gid, run_as.gid, run_as.gid)
        os.setresuid(run_as.uid, run_as.uid, run_as.uid)
        try:
            os.setresuid(0, 0, 0)
        except PermissionError:
            pass
        else:
            raise RuntimeError("root could be regained after dropping it")
        log.info("dropped root: running as %s (uid %d)", run_as.name, run_as.uid)
    elif os.geteuid() == 0:
        return
    _clear_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, *args: int) -> None:
    values = [ctypes.c_ulong(a) for a in (*args, 0, 0, 0, 0)[:4]]
    if _libc().prctl(ctypes.c_int(option), *values) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _last_capability() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 63  # every one the bounding set can hold; the kernel refuses past its last


def _empty_bounding_set() -> None:
    """Drop every capability from the bounding set (needs CAP_SETPCAP: while root)."""
    for cap in range(_last_capability() + 1):
        try:
            _prctl(PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # past the kernel's last one
                break
            raise


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _clear_capabilities() -> None:
    """No ambient, effective, permitted or inheritable capability left (a user started with
    CAP_NET_RAW needs it no more once the socket is open)."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc().capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
