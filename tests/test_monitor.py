"""The live sensor's choices that need no network namespace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otsec.detect.ruleset import load
from otsec.monitor import MonitorOptions, start_pipeline


@pytest.mark.parametrize("workers", [1, 2])
def test_the_record_thread_only_with_cores_to_spare(tmp_path: Path, workers: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A capture process runs the core's record side on a second thread only when the
    machine has more than two cores for each process."""
    opts = MonitorOptions(iface="lo", out_dir=tmp_path, workers=workers)
    for cores, threads in ((2 * workers, False), (2 * workers + 1, True)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert start_pipeline(opts, load([])).core.threads is threads
