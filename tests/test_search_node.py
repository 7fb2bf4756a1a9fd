"""The development search node: a real OpenSearch started from Maven Central's jars."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "search-node"
MISSING = next((t for t in ("java", "javac", "mvn") if not shutil.which(t)), None)


@pytest.mark.skipif(MISSING is not None, reason=f"{MISSING} is not installed")
def test_up_is_healthy_and_down_stops(tmp_path: Path) -> None:
    port = 9261 + 20 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    env = dict(os.environ, OTSEC_SEARCH_PORT=str(port))
    up = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, env=env,
                        timeout=600, check=False)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        url = up.stdout.strip().splitlines()[-1]
        assert url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=10) as r:
            assert json.load(r)["status"] in ("green", "yellow")
        again = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, env=env,
                               timeout=60, check=True)
        assert again.stdout.strip().splitlines()[-1] == url  # already running: reused
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, timeout=120, check=False)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3)
