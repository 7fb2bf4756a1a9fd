"""Capture reading: every format, byte order, resolution and link type; bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otsec import _core
from otsec.capture import CaptureError
from tests import pcapgen as g

IP = g.ipv4_tcp("10.0.0.1", "10.0.0.2", 40000, 502, 1, 1, 0x18, b"hello")


def reader(path: Path) -> tuple[list[tuple[float, int, bytes]], list[str]]:
    """Every packet of a capture as (ts, link type, bytes), and the reader's warnings."""
    cap = _core.Capture(str(path))
    out: list[tuple[float, int, bytes]] = []
    while not cap.finished:
        out += [(ts, lt, data) for ts, lt, data, _w in cap.read()]
    return out, cap.warnings


def read_all(path: Path) -> list[tuple[float, int, bytes]]:
    return reader(path)[0]


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_orders_and_resolutions(tmp_path: Path, big_endian: bool, nanos: bool) -> None:
    pkts = [(1700000000.123456, g.ether(IP)), (1700000001.5, g.ether(IP))]
    f = tmp_path / "a.pcap"
    f.write_bytes(g.pcap(pkts, big_endian=big_endian, nanos=nanos))
    got = read_all(f)
    assert [d for _, _, d in got] == [d for _, d in pkts]
    assert got[0][0] == pytest.approx(1700000000.123456, abs=1e-6)
    assert all(lt == 1 for _, lt, _ in got)


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_several_interfaces_and_link_types(tmp_path: Path, big_endian: bool) -> None:
    pkts = [(0, 10.25, g.ether(IP)), (1, 11.5, IP), (2, 12.0, g.sll(IP))]
    f = tmp_path / "a.pcapng"
    f.write_bytes(g.pcapng(pkts, [1, 101, 113], big_endian=big_endian))
    got = read_all(f)
    assert [(lt, d) for _, lt, d in got] == [(1, pkts[0][2]), (101, IP), (113, pkts[2][2])]
    assert got[1][0] == pytest.approx(11.5)


def test_pcapng_nanosecond_resolution(tmp_path: Path) -> None:
    f = tmp_path / "ns.pcapng"
    f.write_bytes(g.pcapng([(0, 1700000000.000000123, g.ether(IP))], [1], tsresol=9))
    (ts, _, _), = read_all(f)
    assert ts == pytest.approx(1700000000.000000123, abs=1e-6)


def test_gzip_of_either_format(tmp_path: Path) -> None:
    for name, data in (("a.pcap.gz", g.pcap([(1.0, g.ether(IP))])),
                       ("a.pcapng.gz", g.pcapng([(0, 1.0, g.ether(IP))], [1]))):
        f = tmp_path / name
        f.write_bytes(g.gz(data))
        assert [d for _, _, d in read_all(f)] == [g.ether(IP)]


def test_a_gzip_larger_than_the_blocks_read_ahead(tmp_path: Path) -> None:
    """A gzipped capture is decompressed on a thread of its own, blocks ahead: every
    packet comes in order, and a stream cut short gives the packets before the cut and a
    warning, as the plain file read directly does."""
    frames = [(1.0 + i / 1000, g.ether(g.ipv4_tcp("10.0.0.1", "10.0.0.2", 40000, 502, i, 1,
                                                  0x18, i.to_bytes(4, "big") * 200)))
              for i in range(20_000)]  # 16 MB: many blocks
    data = g.pcap(frames)
    (tmp_path / "plain.pcap").write_bytes(data)
    (tmp_path / "whole.pcap.gz").write_bytes(g.gz(data))
    plain = read_all(tmp_path / "plain.pcap")
    assert len(plain) == 20_000
    assert read_all(tmp_path / "whole.pcap.gz") == plain
    zipped = g.gz(data)
    (tmp_path / "cut.pcap.gz").write_bytes(zipped[: len(zipped) * 2 // 3])
    packets, warnings = reader(tmp_path / "cut.pcap.gz")
    assert 5_000 < len(packets) < 20_000
    assert packets == plain[: len(packets)]
    assert warnings


def test_truncated_last_record_warns(tmp_path: Path) -> None:
    data = g.pcap([(1.0, g.ether(IP)), (2.0, g.ether(IP))])
    f = tmp_path / "cut.pcap"
    f.write_bytes(data[:-10])
    packets, warnings = reader(f)
    assert len(packets) == 1
    assert warnings and "truncated" in warnings[0]


def test_not_a_capture(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello, this is not a capture\n")
    with pytest.raises(CaptureError, match="not a pcap"):
        _core.Capture(str(f))
    with pytest.raises(CaptureError, match="cannot open"):
        _core.Capture(str(tmp_path / "missing.pcap"))


@pytest.mark.parametrize(
    ("linktype", "frame", "mac"),
    [
        (1, g.ether(IP), "00-80-F4-00-00-01"),
        (1, g.ether(IP, vlans=[10]), "00-80-F4-00-00-01"),
        (1, g.ether(IP, vlans=[100, 10]), "00-80-F4-00-00-01"),
        (113, g.sll(IP), "00-80-F4-00-00-01"),
        (276, g.sll2(IP), "00-80-F4-00-00-01"),
        (101, IP, None),
        (228, IP, None),
        (0, g.null(IP), None),
        (0, g.null(IP, big_endian=True), None),
        (108, g.null(IP, big_endian=True), None),
    ],
)
def test_link_types_reach_tcp(linktype: int, frame: bytes, mac: str | None) -> None:
    src, dst, proto, sport, dport, smac, vlan, payload = _core.decode(linktype, frame)
    assert smac == mac
    assert (src, dst, proto, sport, dport) == ("10.0.0.1", "10.0.0.2", 6, 40000, 502)
    assert payload == b"hello"
    if linktype == 1 and frame[12:14] == b"\x88\xa8":
        assert vlan == 100  # the outer tag


def test_ipv6_and_ethernet_padding() -> None:
    ip6 = g.ipv6_tcp(b"\x20\x01" + bytes(13) + b"\x01", b"\x20\x01" + bytes(13) + b"\x02", 1, 502,
                     0, 0, 0x18, b"xy")
    src, *_, payload = _core.decode(1, g.ether(ip6, ethertype=0x86DD))
    assert (src, payload) == ("2001::1", b"xy")
    small = g.ipv4_tcp("1.1.1.1", "2.2.2.2", 1, 2, 0, 0, 0x10) + b"\0" * 6  # padded frame
    assert _core.decode(101, small)[-1] == b""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 4e9, allow_nan=False), st.binary(min_size=1, max_size=200)),
                max_size=20), st.booleans(), st.booleans())
def test_pcap_round_trip(tmp_path_factory: pytest.TempPathFactory,
                         pkts: list[tuple[float, bytes]], big_endian: bool, nanos: bool) -> None:
    f = tmp_path_factory.mktemp("rt") / "x.pcap"
    f.write_bytes(g.pcap(pkts, big_endian=big_endian, nanos=nanos))
    assert [d for _, _, d in read_all(f)] == [d for _, d in pkts]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_reader_survives_garbage_after_header(tmp_path_factory: pytest.TempPathFactory,
                                              junk: bytes) -> None:
    f = tmp_path_factory.mktemp("junk") / "x.pcap"
    f.write_bytes(g.pcap([]) + junk)
    reader(f)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 300), st.binary(min_size=0, max_size=120))
def test_link_decoding_never_raises(linktype: int, frame: bytes) -> None:
    _core.decode(linktype, frame)
