"""The output folder: a run's files appear together or not at all, never mixed with an
earlier run's, all with the same mode; an unusable --out is one line, not a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"


def otsec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otsec", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 KB tmpfs (root only): the second audit runs out of space half way."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_keeps_the_previous_complete_set(small_disk: Path) -> None:
    out = small_disk / "out"
    assert otsec("audit", str(PCAPS / "dnp3-normal.pcap"), "--out", str(out)).returncode == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    proc = otsec("audit", *(str(p) for p in sorted(PCAPS.glob("*.pcap"))), "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], proc.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # no staging left either


def test_a_rerun_never_mixes_with_the_previous_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert otsec("audit", str(PCAPS / "modbus-normal.pcap"), "--learn-for", "10s",
                 "--out", str(out)).returncode == 0
    assert (out / "baseline.json").exists()
    assert otsec("audit", str(PCAPS / "s7-normal.pcap"), "--out", str(out)).returncode == 0
    assert not (out / "baseline.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == [str(PCAPS / "s7-normal.pcap")]
    protocols = {json.loads(x)["network"]["protocol"]
                 for x in (out / "events.ndjson").read_text().splitlines()}
    assert protocols == {"s7comm"}
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_every_output_file_has_the_same_mode(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert otsec("audit", str(PCAPS / "modbus-intrusion.pcap"), "--out", str(out)).returncode == 0
    modes = {f.name: f.stat().st_mode & 0o777 for f in out.iterdir()}
    assert len(set(modes.values())) == 1, modes


@pytest.mark.parametrize("where", ["file", "/dev/full"])
def test_an_unusable_out_is_one_line(tmp_path: Path, where: str) -> None:
    if where == "file":
        (tmp_path / "f").write_text("x")
        target = str(tmp_path / "f" / "out")
    else:
        target = where
    proc = otsec("audit", str(PCAPS / "modbus-normal.pcap"), "--out", target)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("otsec: error: ") and target in lines[0]
    assert "Traceback" not in proc.stderr and "Error:" not in lines[0]
