"""Fixtures shared by test modules."""

from __future__ import annotations

from collections.abc import Iterator
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
