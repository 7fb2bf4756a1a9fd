"""The flow table under a flood of spoofed one-packet flows: they end one another, never
the plant's conversations."""

from __future__ import annotations

from pathlib import Path

from otsec.pipeline import Pipeline
from tests import pcapgen as g
from tests.helpers import Conversation, holding_reply, read_holding

T0 = 1_700_000_000.0


def test_unanswered_flows_hold_a_quarter_of_the_table(tmp_path: Path) -> None:
    plant = [Conversation(client=f"10.0.1.{i}", cport=41000 + i) for i in range(40)]
    packets: list[tuple[float, bytes]] = []
    ts = T0
    for round_ in range(10):
        for c in plant:  # each HMI polls its PLC, which answers
            c.send(True, read_holding(round_))
            c.send(False, holding_reply(round_))
        for c in plant:
            packets += [(ts + i * 0.001, f) for i, f in enumerate(c.frames)]
            ts += 0.1
            c.frames.clear()
        for i in range(300):  # and a spoofed flood in between: a SYN each, never answered
            src = f"10.{200 + round_}.{i >> 8}.{i & 0xFF}"
            packets.append((ts, g.ether(g.ipv4_tcp(src, "10.0.0.10", 1024 + i, 502,
                                                   i * 7919, 0, 0x02))))
            ts += 0.0001
    cap = tmp_path / "in.pcap"
    cap.write_bytes(g.pcap(packets))
    pipe = Pipeline(None, events=False, max_flows=100)
    pipe.run([cap])
    flows = pipe.stats()["flows"]
    assert flows["evicted_when_full"] == 0  # no conversation of the plant was cut short
    assert flows["evicted_unanswered"] >= 3000 - 25
    assert flows["peak"] <= 100
    view = pipe.view()
    polled = [e for e in view.ip_edges.values() if e.key[1] == "10.0.0.10"]
    assert len(polled) == 40
    assert all(e.requests == 10 for e in polled)  # one flow each, all ten polls in it


def test_spoofed_sources_are_counted_not_listed(tmp_path: Path) -> None:
    """3,000 sources that each send one request nobody answers: 2,000 of them are listed
    as hosts, the rest counted; a real conversation's hosts are listed whatever came first."""
    from otsec.audit import run_audit

    unanswered = 2_000  # the core's bound on hosts known only from flows nobody answered

    packets = []
    for i in range(3000):
        src = f"10.{100 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}"
        payload = g.mbap(i & 0xFFFF, 1, bytes([3, 0, 0, 0, 1]))
        packets.append((T0 + i * 0.001, g.ether(g.ipv4_tcp(src, "10.0.0.10", 40000 + i % 20000,
                                                          502, 7, 1, 0x18, payload))))
    hmi = Conversation(client="10.0.1.5", cport=41000)
    hmi.send(True, read_holding(1))
    hmi.send(False, holding_reply(1))
    packets += [(T0 + 10 + i * 0.001, f) for i, f in enumerate(hmi.frames)]
    cap = tmp_path / "in.pcap"
    cap.write_bytes(g.pcap(packets))
    result = run_audit([cap], tmp_path / "out", write_events=False)
    ips = {ip for a in result.assets for ip in a.ips}
    assert "10.0.1.5" in ips and "10.0.0.10" in ips
    assert len(ips) <= unanswered + 2  # and the HMI and PLC that talked
    assert result.summary["tracking"]["hosts"] <= unanswered + 2
    assert result.summary["tracking"]["untracked_hosts"] >= 3000 - unanswered
