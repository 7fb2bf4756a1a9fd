"""Giving up root: the folders the sensor makes and checks before it opens anything, what it
never touches, and the credentials it keeps (the running sensor's are checked in
test_monitor_netns.py)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otsec import privileges
from otsec.privileges import PrivilegeError, RunAs, prepare

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (it gives root up)")
OpenTmp = Callable[[str], Path]


@pytest.fixture
def open_tmp() -> Iterator[OpenTmp]:
    """Root's folders under /tmp that any user can pass through (0755), as /etc or a work
    folder; removed after the test."""
    made: list[Path] = []

    def make(prefix: str) -> Path:
        made.append(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))
        made[-1].chmod(0o755)
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _umask_and_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """prepare() sets the umask and OTSEC_SPOOL_DIR for the sensor's process: put them back."""
    for name in ("OTSEC_STATE_DIR", "OTSEC_SPOOL_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    mask = os.umask(0o022)
    yield
    os.umask(mask)
    os.environ.pop("OTSEC_SPOOL_DIR", None)


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def secret_file(folder: Path, name: str = "otsec.env") -> Path:
    path = folder / name
    path.write_text("OTSEC_ES_PASSWORD=hunter2\n")
    path.chmod(0o600)
    return path


NOBODY = pwd.getpwnam("nobody")


def test_a_folder_the_sensor_makes_is_the_users_and_nothing_above_it(open_tmp: OpenTmp) -> None:
    base = open_tmp("otsec-priv-")
    out = base / "plant" / "out"
    assert prepare("nobody", out) == RunAs.named("nobody")
    assert owner_mode(out) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o750)
    assert owner_mode(out.parent) == (0, 0, 0o755)  # made to reach it: root's, passable
    assert owner_mode(base) == (0, 0, 0o755)
    assert os.umask(0o022) == privileges.UMASK  # what the sensor writes: 0640, folders 0750


def test_the_folder_of_a_baseline_being_learned_is_made_before_an_out_inside_it(
        open_tmp: OpenTmp) -> None:
    """--out /var/lib/otsec/out --baseline /var/lib/otsec/baseline.json --learn-for 7d."""
    state = open_tmp("otsec-priv-") / "otsec"
    prepare("nobody", state / "out", saved=state / "baseline.json")
    assert owner_mode(state) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o750)
    assert owner_mode(state / "out") == (NOBODY.pw_uid, NOBODY.pw_gid, 0o750)


def test_an_existing_folder_is_never_taken_over(open_tmp: OpenTmp) -> None:
    """A work folder of root's as --out: refused with what to do, owner and modes as they were."""
    work = open_tmp("otsec-work-")
    notes = secret_file(work, "notes.txt")
    with pytest.raises(PrivilegeError, match=r"--out .*nobody cannot write there"):
        prepare("nobody", work)
    assert owner_mode(work) == (0, 0, 0o755)
    assert owner_mode(notes) == (0, 0, 0o600)
    # made over to the user by an operator, it is used as it is
    os.chown(work, NOBODY.pw_uid, NOBODY.pw_gid)
    prepare("nobody", work)
    assert owner_mode(work) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o755)
    assert owner_mode(notes) == (0, 0, 0o600)


def test_a_baseline_next_to_the_secrets_is_read_never_written(open_tmp: OpenTmp) -> None:
    """--baseline /etc/otsec/plant.json: protecting needs no write there; learning into it is
    refused (never a chown of /etc/otsec or of the secrets beside the baseline)."""
    etc = open_tmp("otsec-etc-")
    env = secret_file(etc)
    plant = etc / "plant.json"
    plant.write_text("{}")
    out = open_tmp("otsec-out-") / "out"
    prepare("nobody", out)  # protecting: the baseline's folder is not the sensor's business
    with pytest.raises(PrivilegeError, match=r"--baseline .*plant.json: its folder"):
        prepare("nobody", out, saved=plant)  # learning: it would be rewritten there
    assert owner_mode(etc) == (0, 0, 0o755)
    assert owner_mode(env) == (0, 0, 0o600)
    assert env.read_text() == "OTSEC_ES_PASSWORD=hunter2\n"


def test_a_link_planted_in_the_users_folder_is_never_followed(open_tmp: OpenTmp,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """The state directory is the user's: a spool link it left to root's folder stops the
    start and leaves root's folder as it was."""
    base = open_tmp("otsec-priv-")
    state = base / "state"
    state.mkdir()
    os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)
    private = base / "private"
    private.mkdir(mode=0o700)
    (state / "spool").symlink_to(private)
    os.lchown(state / "spool", NOBODY.pw_uid, NOBODY.pw_gid)
    monkeypatch.setenv("OTSEC_STATE_DIR", str(state))
    with pytest.raises(PrivilegeError, match="symbolic link owned by uid"):
        prepare("nobody", base / "out", spool=True)
    assert owner_mode(private) == (0, 0, 0o700)
    # a link of root's own (an operator's) is followed
    (base / "data").symlink_to(base / "real")
    (base / "real").mkdir()
    assert privileges.make_directory(base / "data" / "out", 0o750)
    assert (base / "real" / "out").is_dir()


def test_the_spool_is_made_in_the_state_directory(open_tmp: OpenTmp,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    state = open_tmp("otsec-priv-") / "state"
    monkeypatch.setenv("OTSEC_STATE_DIR", str(state))
    prepare("nobody", state.parent / "out", spool=True)
    assert privileges.spool_directory() == state / "spool"
    assert os.environ["OTSEC_SPOOL_DIR"] == str(state / "spool")
    assert owner_mode(state) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o750)
    assert owner_mode(state / "spool") == (NOBODY.pw_uid, NOBODY.pw_gid, 0o700)


def test_where_the_state_directory_is(monkeypatch: pytest.MonkeyPatch) -> None:
    assert privileges.state_directory() == Path("/var/lib/otsec")  # root's default
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/otsec-a:/var/lib/otsec-b")  # systemd's
    assert privileges.state_directory() == Path("/var/lib/otsec-a")
    monkeypatch.setenv("OTSEC_STATE_DIR", "/srv/otsec")
    assert privileges.spool_directory() == Path("/srv/otsec/spool")
    monkeypatch.setenv("OTSEC_SPOOL_DIR", "/srv/spool")
    assert privileges.spool_directory() == Path("/srv/spool")


def test_asking_as_the_user_gives_root_back(open_tmp: OpenTmp) -> None:
    before = os.getresuid(), os.getresgid(), os.getgroups()
    nobody = RunAs.named("nobody")
    folder = open_tmp("otsec-priv-")
    assert not privileges.writable_by(nobody, folder)
    os.chown(folder, NOBODY.pw_uid, NOBODY.pw_gid)
    assert privileges.writable_by(nobody, folder)
    assert (os.getresuid(), os.getresgid(), os.getgroups()) == before


def test_user_mistakes_are_one_line_and_exit_2(open_tmp: OpenTmp) -> None:
    """Refused before the capture socket is opened: no network needed to see it."""
    etc = open_tmp("otsec-etc-")
    env = secret_file(etc)
    (etc / "plant.json").write_text('{"version": 1}')
    for args, says in ((["--user", "no-such-user-here"], "no such user"),
                       (["--user", "root"], "is root"),
                       (["--out", str(etc)], "--out"),
                       (["--out", str(open_tmp("o-") / "o"), "--baseline",
                         str(etc / "plant.json"), "--learn-for", "1h"], "--baseline")):
        proc = subprocess.run([sys.executable, "-m", "otsec", "monitor", "-i", "lo", *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and says in proc.stderr
    assert owner_mode(etc) == (0, 0, 0o755)
    assert owner_mode(env) == (0, 0, 0o600)


STATUS = """
import sys
from otsec import privileges
privileges.drop_privileges({run_as})
print(open("/proc/self/status").read())
"""


def credentials(code: str) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          check=True)
    return dict(line.split(":\t", 1) for line in proc.stdout.splitlines() if ":\t" in line)


def test_root_given_up_leaves_no_capability_and_no_way_back() -> None:
    status = credentials(STATUS.format(run_as="privileges.RunAs.named('nobody')"))
    assert status["Uid"].split() == [str(NOBODY.pw_uid)] * 4
    assert status["Gid"].split() == [str(NOBODY.pw_gid)] * 4
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[name], 16) == 0, name
    assert status["NoNewPrivs"].strip() == "1"


def test_capabilities_alone_are_cleared_too() -> None:
    """A user started with CAP_NET_RAW (the systemd unit) keeps none once the socket is open
    (the same calls, here on root's own sets)."""
    status = credentials("from otsec import privileges\nprivileges._clear_capabilities()\n"
                         "privileges._prctl(privileges.PR_SET_NO_NEW_PRIVS, 1)\n"
                         "print(open('/proc/self/status').read())")
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"


def test_a_root_only_secret_file_is_read_before_root_is_given_up(open_tmp: OpenTmp) -> None:
    """The user the sensor becomes has the password it cannot read, and no other process
    sees it in the sensor's /proc/PID/environ."""
    etc = open_tmp("otsec-etc-")
    (etc / "es-password").write_text("hunter2\n")
    (etc / "es-password").chmod(0o600)
    code = ("import sys\n"
            "from otsec import privileges\n"
            "privileges.before_dropping(search=True)\n"
            "privileges.drop_privileges(privileges.RunAs.named('nobody'))\n"
            "from otsec.sinks.search import _options\n"
            "print(_options('https://es.invalid:9200')['basic_auth'][1], flush=True)\n"
            "sys.stdin.readline()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OTSEC_ES_USERNAME": "u",
                                 "OTSEC_ES_PASSWORD_FILE": str(etc / "es-password")})
    try:
        said = proc.stdout.readline() if proc.stdout else ""
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    finally:
        _out, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert said.strip() == "hunter2"
    assert b"hunter2" not in environ and b"OTSEC_ES_PASSWORD_FILE" in environ


def test_a_baseline_link_left_in_the_users_folder_is_not_read_as_root(open_tmp: OpenTmp
                                                                       ) -> None:
    """--baseline in the state directory, where the user the sensor runs as could leave a
    link to a root-only baseline: root refuses to follow it (exit 2, before any socket)."""
    from otsec.baseline.model import Baseline

    vault = open_tmp("otsec-vault-")
    vault.chmod(0o700)
    Baseline().save(vault / "root-only.json")
    state = open_tmp("otsec-state-")
    os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)
    inner = state / "site"
    for link, target in ((state / "baseline.json", vault / "root-only.json"), (inner, vault)):
        link.symlink_to(target)
        os.lchown(link, NOBODY.pw_uid, NOBODY.pw_gid)
    for baseline, says in ((state / "baseline.json", "symbolic links"),
                           (inner / "root-only.json", "symbolic link owned by uid")):
        proc = subprocess.run([sys.executable, "-m", "otsec", "monitor", "-i", "lo", "--out",
                               str(state / "out"), "--baseline", str(baseline)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert says in proc.stderr and proc.stderr.count("\n") == 1
    # the sensor's own baseline file is read as ever
    (state / "baseline.json").unlink()
    Baseline().save(state / "baseline.json")
    assert privileges.read_file(state / "baseline.json") == \
        (vault / "root-only.json").read_bytes()
