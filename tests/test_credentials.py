"""Secrets for the search cluster: never in argv, never printed, never sent in clear silently."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTRUSION = ROOT / "pcaps" / "modbus-intrusion.pcap"
SECRET = "hunter2-s3cr3t"


def otsec(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otsec", *args], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **env})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_password_in_the_url_is_refused_and_not_echoed(tmp_path: Path) -> None:
    url = f"https://elastic:{SECRET}@127.0.0.1:{closed_port()}"
    for args in (["ship", "--es", url], ["audit", str(INTRUSION), "--es", url, "--out",
                                         str(tmp_path)], ["setup", "--es", url]):
        proc = otsec(*args)
        assert proc.returncode == 2, proc.stderr
        assert SECRET not in proc.stderr + proc.stdout
        assert "elastic:***@" in proc.stderr and "OTSEC_ES_PASSWORD" in proc.stderr


def test_basic_auth_over_plain_http_warns_and_spools(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    proc = otsec("audit", str(INTRUSION), "--es", url, "--out", str(tmp_path / "o"),
                 OTSEC_ES_USERNAME="elastic", OTSEC_ES_PASSWORD=SECRET,
                 OTSEC_SPOOL_DIR=str(tmp_path / "spool"))
    assert proc.returncode == 0, proc.stderr
    assert "credentials are sent over plain http" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    assert list((tmp_path / "spool").glob("spool-*.ndjson"))  # kept for later, not lost


def test_an_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    proc = otsec("ship", "--es", f"http://127.0.0.1:{closed_port()}",
                 OTSEC_ES_USERNAME="elastic", OTSEC_ES_PASSWORD_FILE=str(missing),
                 OTSEC_SPOOL_DIR=str(tmp_path / "spool"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"otsec: error: OTSEC_ES_PASSWORD_FILE: cannot read {missing} "
                                   "(No such file or directory)")
