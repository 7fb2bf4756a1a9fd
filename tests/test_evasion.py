"""Evasion by cutting and wrapping: sessions written with scapy, cut into TCP segments of
any size, sent in IPv4 or IPv6 fragments, or carried in MPLS, GRE, ERSPAN, VXLAN and NSH,
give `otsec audit` the same PDUs and alerts as the plain session; overlapping data that
differs is kept first and raised as an alert. tshark confirms the captures hold those PDUs.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otsec.protocols import capture_filter
from tests import pcapgen as g
from tests.oracle import TSHARK, tshark_modbus
from tests.test_dnp3 import app, fragment

scapy = pytest.importorskip("scapy.all")
from scapy.all import (  # noqa: E402
    GRE,
    IP,
    TCP,
    UDP,
    Ether,
    IPv6,
    IPv6ExtHdrFragment,
    Raw,
    fragment6,
    wrpcap,
)
from scapy.all import fragment as ip_fragment  # noqa: E402
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III  # noqa: E402
from scapy.contrib.mpls import MPLS  # noqa: E402
from scapy.contrib.nsh import NSH  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

MAC_C, MAC_S = "00:0c:29:00:00:14", "00:80:f4:00:00:0a"
Exchange = tuple[bytes, bytes]  # (request, answer)


def modbus_writes() -> list[Exchange]:
    out = []
    for tid in range(1, 5):
        pdu = bytes([6]) + struct.pack("!HH", 10 + tid, 100 + tid)
        out.append((g.mbap(tid, 1, pdu), g.mbap(tid, 1, pdu)))
    return out


def tpkt(body: bytes) -> bytes:
    return struct.pack("!BBH", 3, 0, 4 + len(body)) + body


def s7(rosctr: int, ref: int, params: bytes) -> bytes:
    head = struct.pack("!BBHHHH", 0x32, rosctr, 0, ref, len(params), 0)
    return tpkt(bytes([2, 0xF0, 0x80]) + head + (b"\0\0" if rosctr == 3 else b"") + params)


def s7_stop() -> list[Exchange]:
    cr = tpkt(bytes([17, 0xE0, 0, 0, 0, 1, 0, 0xC1, 2, 1, 0, 0xC2, 2, 1, 2, 0xC0, 1, 10]))
    cc = tpkt(bytes([17, 0xD0, 0, 1, 0, 1, 0, 0xC0, 1, 10, 0xC1, 2, 1, 0, 0xC2, 2, 1, 2]))
    setup = bytes([0xF0, 0, 0, 1, 0, 1, 1, 0xE0])
    stop = bytes([0x29, 0, 0, 0, 0, 0, 9]) + b"P_PROGRAM"
    return [(cr, cc), (s7(1, 1, setup), s7(3, 1, setup)), (s7(1, 2, stop), s7(3, 2, b"\x29"))]


def dnp3_restart() -> list[Exchange]:
    return [(fragment(10, 1, app(1, bytes([60, 1, 6]))), fragment(1, 10, app(129, iin=b"\0\0"))),
            (fragment(10, 1, app(13, control=0xC1), seq=1),
             fragment(1, 10, app(129, control=0xC1, iin=b"\0\0"), seq=1))]


#: (protocol, server port, exchanges, third octet of its hosts' addresses)
SESSIONS = [("modbus", 502, modbus_writes(), 1), ("s7comm", 102, s7_stop(), 2),
            ("dnp3", 20000, dnp3_restart(), 3)]


def session(port: int, exchanges: list[Exchange], net: int, sizes: list[int],
            v6: bool = False) -> list[Any]:
    """A TCP connection (handshake, then each exchange), each side's bytes cut in
    segments of ``sizes`` bytes, taken in turn."""
    if v6:
        c_ip, s_ip = IPv6(src=f"fd00::{net}:20", dst=f"fd00::{net}:10"), \
            IPv6(src=f"fd00::{net}:10", dst=f"fd00::{net}:20")
    else:
        c_ip, s_ip = IP(src=f"10.0.{net}.20", dst=f"10.0.{net}.10"), \
            IP(src=f"10.0.{net}.10", dst=f"10.0.{net}.20")
    cport, seq = 40000 + net, {True: 1000, False: 5000}

    def pkt(client: bool, flags: str, data: bytes = b"") -> Any:
        ip, (sp, dp) = (c_ip, (cport, port)) if client else (s_ip, (port, cport))
        eth = Ether(src=MAC_C, dst=MAC_S) if client else Ether(src=MAC_S, dst=MAC_C)
        tcp = TCP(sport=sp, dport=dp, flags=flags, seq=seq[client], ack=seq[not client])
        return eth / ip.copy() / tcp / Raw(data) if data else eth / ip.copy() / tcp

    seq[True] -= 1
    out = [pkt(True, "S")]
    seq[True] += 1
    seq[False] -= 1
    out.append(pkt(False, "SA"))
    seq[False] += 1
    n = 0
    for request, answer in exchanges:
        for client, data in ((True, request), (False, answer)):
            pos = 0
            while pos < len(data):
                size = sizes[n % len(sizes)]
                n += 1
                out.append(pkt(client, "PA", data[pos:pos + size]))
                seq[client] += len(data[pos:pos + size])
                pos += size
    return out


def fragmented(packets: list[Any], size: int, reverse: bool = False) -> list[Any]:
    """Each IP packet longer than ``size`` bytes of payload in fragments of ``size``."""
    out = []
    for p in packets:
        if IP in p and len(p[IP].payload) > size:
            pieces = ip_fragment(p, fragsize=size)
        elif IPv6 in p and len(p[IPv6].payload) > size:
            whole = IPv6(src=p[IPv6].src, dst=p[IPv6].dst) / IPv6ExtHdrFragment(id=len(out)) / \
                p[IPv6].payload
            pieces = [Ether(src=p.src, dst=p.dst) / q for q in fragment6(whole, size + 48)]
        else:
            pieces = [p]
        out += reversed(pieces) if reverse else pieces
    return out


def wrapped(packets: list[Any], outer: Callable[[Any], Any]) -> list[Any]:
    return [outer(p) for p in packets]


def tunnel(p: Any) -> Any:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / \
        IP(src="192.0.2.1", dst="192.0.2.2")


OUTER = {
    "mpls": lambda p: Ether(src=p.src, dst=p.dst, type=0x8847) / MPLS(label=16, s=0) /
    MPLS(label=17, s=1) / p[IP],
    "gre": lambda p: tunnel(p) / GRE(proto=0x0800) / p[IP],
    "gre-ethernet": lambda p: tunnel(p) / GRE(proto=0x6558, key_present=1, key=7) / p,
    "erspan-2": lambda p: tunnel(p) / GRE(seqnum_present=1, sequence_number=5, proto=0x88BE) /
    ERSPAN_II(session_id=3) / p,
    "erspan-3": lambda p: tunnel(p) / GRE(seqnum_present=1, sequence_number=5, proto=0x22EB) /
    ERSPAN_III(session_id=3) / p,
    "vxlan": lambda p: tunnel(p) / UDP(sport=49152, dport=4789) / VXLAN(vni=42) / p,
    "nsh": lambda p: Ether(src=p.src, dst=p.dst, type=0x894F) / NSH(mdtype=2, nextproto=1) /
    p[IP],
    "ip-in-ip": lambda p: tunnel(p) / p[IP],
}


def capture(variant: str, path: Path) -> Path:
    """All three sessions, cut or wrapped as ``variant`` says, one after the other."""
    sizes = {"seg1": [1], "seg3": [3], "seg6": [6], "first-bytes": [1, 2, 3, 4, 5, 6, 7, 8, 9],
             "seg-mixed": [2, 300, 1, 5]}.get(variant, [1 << 16])
    packets = []
    for _name, port, exchanges, net in SESSIONS:
        s = session(port, exchanges, net, sizes, v6=variant.startswith("ipv6"))
        if variant == "ipv4-fragments":
            s = fragmented(s, 8, reverse=True)
        elif variant == "ipv4-fragments-16":
            s = fragmented(s, 16)
        elif variant == "ipv6-fragments":
            s = fragmented(s, 8)
        elif variant in OUTER:
            s = wrapped(s, OUTER[variant])
        packets += s
    for i, p in enumerate(packets):
        p.time = 1_700_000_000 + i * 0.01
    wrpcap(str(path), packets)
    return path


def audit(pcap: Path, out: Path) -> tuple[dict, list[dict], list[dict]]:
    proc = subprocess.run([sys.executable, "-m", "otsec", "audit", str(pcap), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    events = [json.loads(x) for x in (out / "events.ndjson").read_text().splitlines()]
    alerts = [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()]
    return summary, events, alerts


def pdus(events: list[dict]) -> Counter:
    """(protocol, direction, function code) of every PDU."""
    return Counter((e["network"]["protocol"], e["otsec"]["direction"],
                    e["otsec"][e["network"]["protocol"]].get("function_code")) for e in events)


def raised(alerts: list[dict], v6: bool = False) -> Counter:
    return Counter((a["rule"]["id"], None if v6 else a["source"]["ip"]) for a in alerts)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict], list[dict]]:
    tmp = tmp_path_factory.mktemp("plain")
    return audit(capture("plain", tmp / "plain.pcap"), tmp / "out")


def test_the_plain_sessions_raise_their_alerts(plain: tuple) -> None:
    summary, _, alerts = plain
    assert summary["pdus"] == {"modbus": 8, "s7comm": 4, "dnp3": 4}
    rules = {a["rule"]["id"] for a in alerts}
    assert {"otsec-modbus-write", "otsec-s7-plc-stop", "otsec-dnp3-restart"} <= rules, rules
    assert not summary["anomalies"]


@pytest.mark.parametrize("variant", [
    "seg1", "seg3", "seg6", "first-bytes", "seg-mixed", "ipv4-fragments", "ipv4-fragments-16",
    "ipv6-fragments", *OUTER])
def test_cut_or_wrapped_sessions_give_the_same_pdus_and_alerts(
        variant: str, plain: tuple, tmp_path: Path) -> None:
    summary, events, alerts = audit(capture(variant, tmp_path / f"{variant}.pcap"),
                                    tmp_path / "out")
    v6 = variant.startswith("ipv6")
    assert pdus(events) == pdus(plain[1])
    assert raised(alerts, v6) == raised(plain[2], v6)
    assert not summary["anomalies"], summary["anomalies"]
    if "fragments" in variant:
        assert summary["defrag"]["reassembled"] > 0
        assert summary["defrag"]["in_progress"] == 0


@pytest.mark.skipif(not TSHARK, reason="tshark not installed")
@pytest.mark.parametrize("variant", ["ipv4-fragments", "ipv6-fragments", "mpls", "gre",
                                     "erspan-2", "vxlan"])
def test_tshark_sees_the_same_modbus_pdus(variant: str, tmp_path: Path) -> None:
    pcap = capture(variant, tmp_path / f"{variant}.pcap")
    _, events, _ = audit(pcap, tmp_path / "out")
    ours = sorted(e["otsec"]["modbus"]["function_code"] for e in events
                  if e["network"]["protocol"] == "modbus")
    theirs = sorted(int(key[3]) for key in tshark_modbus(pcap).elements())
    assert ours == theirs == [6] * 8


def write_with_forgery(forged_first: bool) -> list[Any]:
    """A Modbus write of 100 to register 11; its segment is sent again with 999 in it
    (the insertion of an evasion: a copy the device never accepts)."""
    real = g.mbap(1, 1, bytes([6]) + struct.pack("!HH", 11, 100))
    fake = g.mbap(1, 1, bytes([6]) + struct.pack("!HH", 11, 999))
    s = session(502, [(real, real)], 1, [1 << 16])
    hs, (req, resp) = s[:2], s[2:]
    forged = req.copy()
    forged[Raw].load = fake
    return [*hs, forged, req, resp] if forged_first else [*hs, req, forged, resp]


def test_overlapping_tcp_data_that_differs_is_kept_first_and_raised(tmp_path: Path) -> None:
    packets = write_with_forgery(forged_first=True)
    for i, p in enumerate(packets):
        p.time = 1_700_000_000 + i * 0.01
    wrpcap(str(tmp_path / "o.pcap"), packets)
    summary, events, alerts = audit(tmp_path / "o.pcap", tmp_path / "out")
    (conflict,) = [a for a in alerts if a["rule"]["id"] == "otsec-net-tcp-overlap-conflict"]
    assert conflict["source"]["ip"] == "10.0.1.20" and conflict["event"]["severity"] >= 3
    assert "T0830" in json.dumps(conflict["threat"])
    assert summary["anomalies"] == {"modbus.tcp_overlap_conflict": 1}
    assert summary["reassembly"]["overlap_conflicts"] == 1
    # the copy seen first is what was dissected; the conflict says the device may have
    # kept the other
    assert [e["otsec"]["modbus"]["function_code"] for e in events] == [6, 6]
    (write,) = [a for a in alerts if a["rule"]["id"] == "otsec-modbus-write"]
    assert "= 999" in write["message"]


def test_a_plain_retransmission_raises_nothing(tmp_path: Path) -> None:
    hs_req_resp = session(502, modbus_writes()[:1], 1, [1 << 16])
    packets = [*hs_req_resp[:3], hs_req_resp[2].copy(), hs_req_resp[3]]
    for i, p in enumerate(packets):
        p.time = 1_700_000_000 + i * 0.01
    wrpcap(str(tmp_path / "r.pcap"), packets)
    summary, _, alerts = audit(tmp_path / "r.pcap", tmp_path / "out")
    assert summary["reassembly"]["overlap_conflicts"] == 0
    assert not [a for a in alerts if "overlap" in a["rule"]["id"]]


def test_overlapping_fragments_that_differ_are_kept_first_and_raised(tmp_path: Path) -> None:
    real = g.mbap(1, 1, bytes([6]) + struct.pack("!HH", 11, 100))
    s = session(502, [(real, real)], 1, [1 << 16])
    req = s[2]
    pieces = ip_fragment(req, fragsize=8)
    forged = req.copy()
    forged[Raw].load = g.mbap(1, 1, bytes([6]) + struct.pack("!HH", 11, 999))
    forged_pieces = ip_fragment(forged, fragsize=8)
    # the real fragment holding the value, a forged copy of it, then the rest
    packets = [*s[:2], pieces[-1], forged_pieces[-1], *pieces[:-1], s[3]]
    for i, p in enumerate(packets):
        p.time = 1_700_000_000 + i * 0.01
    wrpcap(str(tmp_path / "f.pcap"), packets)
    summary, events, alerts = audit(tmp_path / "f.pcap", tmp_path / "out")
    rules = [a["rule"]["id"] for a in alerts]
    assert "otsec-net-ip-fragment-overlap-conflict" in rules
    assert summary["defrag"]["overlap_conflicts"] == 1
    assert len(events) == 2


@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump not installed")
@pytest.mark.parametrize("variant", ["ipv4-fragments", "ipv6-fragments", *OUTER])
def test_the_live_sensors_filter_keeps_fragments_and_tunnels(variant: str, tmp_path: Path) -> None:
    pcap = capture(variant, tmp_path / f"{variant}.pcap")

    def count(*expression: str) -> int:
        proc = subprocess.run(["tcpdump", "-nr", str(pcap), *expression], capture_output=True,
                              text=True, timeout=60, check=True)
        return len(proc.stdout.splitlines())

    assert count(capture_filter()) == count() > 0
