"""A real OpenSearch node for the tests that ship (scripts/search-node; skipped without
Java): one per test worker, shared by its modules, with small helpers to read it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "search-node"
# a port per test worker, so parallel workers never share a node
PORT = str(9262 + 20 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0))
URL = f"http://127.0.0.1:{PORT}"
MISSING = next((t for t in ("java", "javac", "mvn") if not shutil.which(t)), None)
needs_node = pytest.mark.skipif(MISSING is not None, reason=f"{MISSING} is not installed")


def node(command: str) -> str:
    env = dict(os.environ, OTSEC_SEARCH_PORT=PORT)
    proc = subprocess.run([str(SCRIPT), command], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def get(path: str) -> dict:
    return _call(urllib.request.Request(f"{URL}{path}"))


def _call(req: urllib.request.Request) -> dict:
    """One request; an index created a moment ago may answer 503 until its shard has
    started (a heartbeat stream that a live sensor is creating, say): asked again then."""
    for attempt in range(40):
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 39:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def refresh(index: str) -> None:
    """Make what was written searchable."""
    _call(urllib.request.Request(f"{URL}/{index}/_refresh", method="POST"))


def count(index: str) -> int:
    refresh(index)
    return get(f"/{index}/_count")["count"]


def search(index: str, query: dict, size: int = 100) -> list[dict]:
    refresh(index)
    req = urllib.request.Request(f"{URL}/{index}/_search", data=json.dumps(
        {"query": query, "size": size}).encode(), headers={"Content-Type": "application/json"})
    return [h["_source"] for h in _call(req)["hits"]["hits"]]
