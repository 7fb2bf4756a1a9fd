"""Fixtures shared by test modules."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.searchnode import MISSING, node


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """The worker's search node, started once (from a clean slate) for every module."""
    if MISSING is not None:
        pytest.skip(f"{MISSING} is not installed")
    node("down")  # whatever an interrupted run left
    url = node("up")
    try:
        yield url
    finally:
        node("down")


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OTSEC_SPOOL_DIR", str(tmp_path / "spool"))
    return tmp_path / "spool"


@pytest.fixture
def public_tmp() -> Iterator[Callable[[str], Path]]:
    """Folders under /tmp that a sensor which dropped its privileges can still reach and write
    (pytest's own lie under root's private folder), made over to ``nobody`` as an operator
    would; removed after the test, whatever it left there."""
    made: list[Path] = []

    def make(prefix: str) -> Path:
        made.append(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(made[-1], nobody.pw_uid, nobody.pw_gid)
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)
        folder.with_name(f"{folder.name}-rules.yaml").unlink(missing_ok=True)
