"""report.html in a real headless browser (Debian's chromium): it renders, scripts run."""

from __future__ import annotations

import json
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


def many_assets(path: Path, plcs: int = 48) -> Path:
    """One HMI polling and writing 48 PLCs, and 3 engineering stations: a 52-asset plant."""
    from tests import pcapgen as g
    from tests.helpers import Conversation

    frames: list[tuple[float, bytes]] = []
    for i in range(plcs):
        c = Conversation(client="10.5.0.20", server=f"10.5.{1 + i // 250}.{1 + i % 250}",
                         cport=30000 + i)
        c.send(True, g.mbap(1, 1, bytes([3, 0, 0, 0, 2])))
        c.send(False, g.mbap(1, 1, bytes([3, 4, 0, 1, 0, 2])))
        c.send(True, g.mbap(2, 1, bytes([6, 0, 5, 0, 9])))
        c.send(False, g.mbap(2, 1, bytes([6, 0, 5, 0, 9])))
        frames += [(1_700_000_000 + len(frames) * 0.01, f) for f in c.frames]
    path.write_bytes(g.pcap(frames))
    return path


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_fifty_asset_report_fits_a_laptop_screen(tmp_path: Path) -> None:
    import itertools
    import re

    result = run_audit([many_assets(tmp_path / "plant.pcap")], tmp_path / "out")
    assert result.summary["assets"]["total"] >= 49
    page = (tmp_path / "out" / "report.html").read_text()
    svg = page[page.index('<svg class="zoom"'):]
    rows: dict[str, list[float]] = {}
    for x, y in re.findall(r'<text x="([\d.]+)" y="([\d.]+)" font-size="11">', svg):
        rows.setdefault(y, []).append(float(x))
    assert sum(len(r) for r in rows.values()) >= 49
    for xs in rows.values():  # labels of one row keep their room (at most 22 characters)
        xs.sort()
        assert all(b - a >= 140 for a, b in itertools.pairwise(xs)), xs
    edges = page[page.index("id='edges'"):]
    assert "10.5.0.20" in edges and "title='" in edges  # hosts by address, ids in tooltips
    probe = tmp_path / "probe.html"
    probe.write_text(page + "<script>document.body.setAttribute('data-width', "
                            "document.documentElement.scrollWidth)</script>")
    dom = subprocess.run([str(CHROMIUM), *FLAGS, "--user-data-dir=" + str(tmp_path / "p"),
                          "--window-size=1300,1900", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    width = int(re.search(r'data-width="(\d+)"', dom).group(1))
    assert width <= 1300, width  # no horizontal scrolling of the page


def test_a_large_network_shows_its_busiest_edges_and_its_devices_first(tmp_path: Path
                                                                        ) -> None:
    result = run_audit([many_assets(tmp_path / "big.pcap", plcs=520)], tmp_path / "out",
                       write_events=False)
    assert len(result.edges) > 300 and len(result.assets) > 500
    page = (tmp_path / "out" / "report.html").read_text()

    def table(tid: str) -> str:
        rest = page[page.index(f"id='{tid}'"):]
        return rest[:rest.index("</table>")]

    assert table("edges").count("<tr>") == 1 + 300  # header and 300 rows
    assert f"{len(result.edges) - 300:,} quieter edges are left out here" in page
    assert table("assets").count("<tr>") == 1 + 500  # header and 500 rows
    assert "<td>hmi</td>" in table("assets")  # the poller is a device: it stays
    assert f"{len(result.assets) - 500:,} quieter assets are left out here" in page
    assert len(json.loads((tmp_path / "out" / "assets.json").read_text())) == len(result.assets)
