"""Damaged captures (tests/damaged.py): otsec reads at least every packet tshark reads from
each (up to tshark's own error), repairs what it can and says so; mutated headers never
make the reader refuse a file whose records are intact."""

from __future__ import annotations

import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otsec import _core
from tests import damaged as d
from tests import pcapgen as g
from tests.oracle import CORPUS

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
MAX_TS = 253_402_300_799.0


def tshark_packets(path: Path) -> int:
    """Packets tshark prints before it ends (or fails on the file)."""
    out = subprocess.run([TSHARK or "tshark", "-r", str(path), "-T", "fields", "-e",
                          "frame.number"], capture_output=True, text=True, check=False)
    return len(out.stdout.split())


def ours(path: Path) -> tuple[int, list[float], _core.Capture]:
    """Packets the engine takes from a capture, their times, and the capture."""
    cap = _core.Capture(str(path))
    times: list[float] = []
    while not cap.finished:
        times += [ts for ts, _lt, _data, _w in cap.read()]
    return cap.packets, times, cap


def compare(source: Path, tmp: Path) -> list[str]:
    """Every damaged copy of ``source`` where otsec reads fewer packets than tshark."""
    files = []
    for name, data in d.damaged(source.read_bytes()):
        f = tmp / f"{source.stem}-{name.replace(':', '-').replace('^', '')}"
        f.write_bytes(data)
        files.append((name, f))
    with ThreadPoolExecutor(2) as pool:
        theirs = list(pool.map(lambda nf: tshark_packets(nf[1]), files))
    short = []
    for (name, f), expected in zip(files, theirs, strict=True):
        got, times, _ = ours(f)
        if got < expected or not all(0 <= t <= MAX_TS for t in times):
            short.append(f"{name}: otsec {got}, tshark {expected}")
    return short


@needs_tshark
def test_damaged_samples_give_every_packet_tshark_reads(tmp_path: Path) -> None:
    assert len(list(d.damaged(g.pcap([(1.0, b"x" * 60)] * 20)))) >= 45
    assert compare(ROOT / "pcaps" / "modbus-intrusion.pcap", tmp_path) == []


CORPUS_FILES = ["nDPI/tests/cfgs/default/pcap/dnp3.pcap",  # pcapng, despite its name
                "ITI_ICS-Security-Tools/pcaps/IEC61850/m-send-req.mms.pcap"]  # big-endian


@pytest.mark.corpus
@needs_tshark
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_damaged_corpus_captures_give_every_packet_tshark_reads(tmp_path: Path,
                                                                name: str) -> None:
    source = CORPUS / name
    if not source.exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    assert compare(source, tmp_path) == []


def intact() -> tuple[bytes, list[float]]:
    frames = [(1_700_000_000 + i * 0.25, g.ether(g.ipv4_tcp(
        "10.0.0.1", "10.0.0.2", 40000, 502, i, 0, 0x18, b"x" * i))) for i in range(1, 9)]
    return g.pcap(frames), [t for t, _ in frames]


def test_repairs_keep_the_times_and_are_counted(tmp_path: Path) -> None:
    pcap, times = intact()
    ng = d.to_pcapng(pcap)
    cases = {
        "tsresol-0": (d.PCAPNG["tsresol-0"](ng, None), {"interfaces": 1}),  # type: ignore[arg-type]
        "tsoffset": (d.PCAPNG["tsoffset-huge"](ng, None), {"interfaces": 1}),  # type: ignore[arg-type]
    }
    for name, (data, repairs) in cases.items():
        f = tmp_path / f"{name}.pcapng"
        f.write_bytes(data)
        n, got, cap = ours(f)
        assert n == len(times) and got == pytest.approx(times, abs=1e-6), name
        assert {k: v for k, v in cap.repairs.items() if v} == repairs, name
        assert any("interface 0: its timestamp options give impossible times" in w
                   for w in cap.warnings), name
    # one record's time impossible: it takes the time before it
    o, blocks = d.pcapng_blocks(ng)
    body = bytearray(blocks[4].body)
    struct.pack_into("<I", body, 4, 0xFFFFFFFF)
    blocks[4] = d.Block(6, bytes(body))
    f = tmp_path / "one.pcapng"
    f.write_bytes(d.pcapng_bytes(o, blocks))
    n, got, cap = ours(f)
    assert got == pytest.approx([*times[:2], times[1], *times[3:]], abs=1e-6)
    assert cap.repairs["times"] == 1
    assert cap.warnings == [f"{f}: 1 records with an impossible time were given the last "
                            "possible time before them"]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_mutated_pcap_headers_never_refuse_intact_records(tmp_path_factory: pytest.TempPathFactory,
                                                          header: bytes) -> None:
    pcap, times = intact()
    f = tmp_path_factory.mktemp("h") / "x.pcap"
    f.write_bytes(pcap[:4] + header + pcap[24:])
    n, got, cap = ours(f)
    assert (n, got, cap.corrupt) == (len(times), pytest.approx(times, abs=1e-6), False)


@settings(max_examples=300, deadline=None)
@given(shb=st.binary(min_size=12, max_size=12), idb=st.binary(min_size=8, max_size=8),
       tsresol=st.binary(min_size=1, max_size=1), tsoffset=st.binary(min_size=8, max_size=8),
       options=st.lists(st.sampled_from([9, 14]), max_size=2, unique=True))
def test_mutated_pcapng_headers_never_refuse_intact_records(
        tmp_path_factory: pytest.TempPathFactory, shb: bytes, idb: bytes, tsresol: bytes,
        tsoffset: bytes, options: list[int]) -> None:
    """Any version, section length, link type, snap length and timestamp options: every
    record is read, at a possible time."""
    pcap, times = intact()
    o, blocks = d.pcapng_blocks(d.to_pcapng(pcap))
    blocks[0] = d.Block(blocks[0].btype, blocks[0].body[:4] + shb)  # after the byte order
    values = {9: tsresol, 14: tsoffset}
    blocks[1] = d.with_idb_options(o, d.Block(1, idb), {c: values[c] for c in options})
    f = tmp_path_factory.mktemp("h") / "x.pcapng"
    f.write_bytes(d.pcapng_bytes(o, blocks))
    n, got, cap = ours(f)
    assert (n, cap.corrupt) == (len(times), False)
    assert all(0 <= t <= MAX_TS for t in got)
    assert got == sorted(got)  # one interface, one unit: the order stands
