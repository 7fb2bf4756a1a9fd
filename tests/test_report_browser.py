"""report.html in a real headless browser (Debian's chromium): it renders, scripts run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from otsec.audit import run_audit, run_learn

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_graph_and_tables_in_chromium(tmp_path: Path) -> None:
    base = run_learn([ROOT / "pcaps" / "modbus-normal.pcap"])
    run_audit([ROOT / "pcaps" / "modbus-intrusion.pcap"], tmp_path / "out", baseline=base)
    url = (tmp_path / "out" / "report.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([str(CHROMIUM), *FLAGS, *profile, "--dump-dom", url],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    for marker in ('<svg class="zoom"', 'id="alerts"', 'id="assets"', 'id="edges"',
                   'id="matrix"', 'id="timeline"', "Schneider Electric BMX P34 2020"):
        assert marker in dom, marker
    assert 'class="sortable"' in dom  # the inline script ran and made the headers sortable
    shot = tmp_path / "report.png"
    subprocess.run([str(CHROMIUM), *FLAGS, *profile, "--window-size=1300,1900",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1300, 1900)
    assert len(data) > 50_000  # a page with a graph, a timeline and tables, not a blank one
