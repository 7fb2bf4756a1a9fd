"""Connection floods and scans are reported as such, with their counts, with or without a
baseline; a scanner is not taken for an HMI."""

from __future__ import annotations

import json
from pathlib import Path

from otsec.audit import run_audit
from tests import pcapgen as g

PLC_MAC, SCANNER_MAC = b"\x00\x80\xf4\x00\x00\x0a", b"\x02\x42\xde\xad\x00\x42"


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int = 1000,
        ack: int = 0, smac: bytes = SCANNER_MAC, dmac: bytes = PLC_MAC) -> bytes:
    return g.ether(g.ipv4_tcp(src, dst, sport, dport, seq, ack, flags), src=smac, dst=dmac)


def audit(tmp: Path, packets: list[tuple[float, bytes]]) -> tuple[dict, list[dict], list[dict]]:
    cap = tmp / "in.pcap"
    cap.write_bytes(g.pcap(packets))
    run_audit([cap], tmp / "out", write_events=False)
    out = tmp / "out"
    alerts = [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()]
    return (json.loads((out / "summary.json").read_text()), alerts,
            json.loads((out / "assets.json").read_text()))


def test_a_spoofed_syn_flood_is_one_alert_with_its_count(tmp_path: Path) -> None:
    packets = []
    for i in range(3000):  # 3000 SYNs from 1500 sources in 6 s, at the PLC's port 502
        src = f"10.200.{(i % 1500) >> 8}.{(i % 1500) & 0xFF}"
        packets.append((1_700_000_000 + i * 0.002, tcp(src, "10.1.0.10", 1024 + i, 502, 0x02)))
    _, alerts, _ = audit(tmp_path, packets)
    (flood,) = [a for a in alerts if a["rule"]["id"] == "otsec-net-connection-flood"]
    assert flood["otsec"]["alert"]["count"] == 3000
    assert flood["destination"]["ip"] == "10.1.0.10" and flood["destination"]["port"] == 502
    assert "from up to 1,500 sources" in flood["message"]
    assert flood["threat"]["technique"]["id"] == ["T0814"]


def test_an_answered_port_scan_is_reported_and_the_scanner_is_not_an_hmi(tmp_path: Path) -> None:
    packets, t = [], 1_700_000_000.0
    for port in range(1, 400):
        t += 0.001
        packets.append((t, tcp("10.1.0.66", "10.1.0.10", 40000, port, 0x02)))
        if port == 502:  # the PLC's Modbus port answers; the scanner resets it
            packets.append((t, tcp("10.1.0.10", "10.1.0.66", 502, 40000, 0x12, 5000, 1001,
                                   PLC_MAC, SCANNER_MAC)))
            packets.append((t, tcp("10.1.0.66", "10.1.0.10", 40000, 502, 0x04, 1001)))
        else:
            packets.append((t, tcp("10.1.0.10", "10.1.0.66", port, 40000, 0x14, 0, 1001,
                                   PLC_MAC, SCANNER_MAC)))
    _, alerts, assets = audit(tmp_path, packets)
    (scan,) = [a for a in alerts if a["rule"]["id"] == "otsec-net-scan"]
    assert scan["source"]["ip"] == "10.1.0.66"
    assert scan["otsec"]["alert"]["count"] == 399
    assert "1 hosts and 399 ports" in scan["message"]
    (scanner,) = [a for a in assets if "10.1.0.66" in a["host"]["ip"]]
    assert scanner["otsec"]["asset"]["role"] == "unknown"
    assert "scanned the network" in scanner["otsec"]["asset"]["role_evidence"][0]


def test_steady_polling_raises_neither(tmp_path: Path) -> None:
    packets = [(1_700_000_000 + i * 0.01, tcp(f"10.1.0.{20 + i % 3}", "10.1.0.10", 30000 + i,
                                               502, 0x02)) for i in range(400)]
    _, alerts, _ = audit(tmp_path, packets)
    assert not [a for a in alerts if a["rule"]["id"].startswith("otsec-net-")]


def test_findings_of_many_hosts_fold_beyond_a_bound_per_rule(tmp_path: Path) -> None:
    from otsec.detect.alerts import MAX_PER_RULE
    from tests.helpers import Conversation

    packets: list[tuple[float, bytes]] = []
    for i in range(MAX_PER_RULE + 300):  # one write from each of 1,300 sources
        c = Conversation(client=f"10.9.{i >> 8}.{i & 0xFF}", cport=40000 + i % 20000)
        c.send(True, g.mbap(1, 1, bytes([6, 0, 1, 0, i & 0xFF])))
        c.send(False, g.mbap(1, 1, bytes([6, 0, 1, 0, i & 0xFF])))
        packets += [(1_700_000_000 + len(packets) * 0.01, f) for f in c.frames]
    _, alerts, _ = audit(tmp_path, packets)
    writes = [a for a in alerts if a["rule"]["id"] == "otsec-modbus-write"]
    assert len(writes) == MAX_PER_RULE + 1
    (rest,) = [a for a in writes if a["otsec"]["alert"]["count"] > 1]
    assert rest["otsec"]["alert"]["count"] == 300
    assert rest["message"].startswith("300 more findings of this rule beyond its first 1,000")
    assert rest["otsec"]["alert"]["accepted"] == 300


def test_a_request_flood_on_one_connection_is_one_alert(tmp_path: Path) -> None:
    from tests.helpers import Conversation, read_holding

    c = Conversation()
    for tid in range(2500):  # 500 requests a second, answered
        c.send(True, read_holding(tid & 0xFFFF))
        c.send(False, g.mbap(tid & 0xFFFF, 1, bytes([3, 4, 0, 1, 0, 2])))
    _, alerts, _ = audit(tmp_path, [(1_700_000_000 + i * 0.001, f)
                                    for i, f in enumerate(c.frames)])
    (flood,) = [a for a in alerts if a["rule"]["id"] == "otsec-net-request-flood"]
    assert flood["source"]["ip"] == "10.0.0.20" and flood["destination"]["ip"] == "10.0.0.10"
    assert flood["otsec"]["alert"]["count"] >= 500  # each request past the line, folded
    assert flood["threat"]["technique"]["id"] == ["T0814"]
