"""An outstation killed after serving: its port answers the master's SYNs with resets for
the rest of the capture, so no request can be left unanswered. Refused connections of a
client it served are an outage like unanswered requests; it ends when the port serves
again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from otsec.audit import run_audit
from otsec.timefmt import epoch
from tests import pcapgen as g
from tests.helpers import Conversation, holding_reply, read_holding
from tests.test_dnp3 import app, fragment

T0 = 1_700_000_000.0
MASTER, OUTSTATION = "10.0.0.20", "10.0.0.10"
UNRESPONSIVE = "otsec-net-device-unresponsive"
Frames = list[tuple[float, bytes]]


def dnp3_polls(c: Conversation, t: float, n: int) -> Frames:
    out = []
    for i in range(n):
        seq = i & 0x0F
        c.send(True, fragment(10, 1, app(1, bytes([60, 1, 6]), control=0xC0 | seq), seq=2 * i))
        c.send(False, fragment(1, 10, app(0x81, b"", control=0xC0 | seq, iin=b"\0\0"),
                               seq=2 * i + 1))
        out += [(t + i, c.frames[-2]), (t + i + 0.01, c.frames[-1])]
    return out


def modbus_polls(c: Conversation, t: float, n: int) -> Frames:
    out = []
    for i in range(n):
        c.send(True, read_holding(i + 1))
        c.send(False, holding_reply(i + 1))
        out += [(t + i, c.frames[-2]), (t + i + 0.01, c.frames[-1])]
    return out


PROTOCOLS: dict[str, tuple[int, Callable[[Conversation, float, int], Frames]]] = {
    "dnp3": (20000, dnp3_polls), "modbus": (502, modbus_polls)}


def session(port: int, polls: Callable[[Conversation, float, int], Frames], t: float,
            cport: int, n: int = 20) -> Frames:
    """A connection opened by the master, polled once a second, all answered."""
    c = Conversation(MASTER, OUTSTATION, cport=cport, sport=port)
    return [(t, c.frames[0]), (t + 0.001, c.frames[1]), *polls(c, t + 0.5, n)]


def refused(port: int, t: float, cport: int, ack: bool = True) -> Frames:
    """A SYN of the master answered by a reset: nothing listens on the port."""
    c = Conversation(MASTER, OUTSTATION, cport=cport, sport=port, handshake=False)
    syn = c._f(True, 0x02, b"", seq=c.cseq - 1)
    rst = c._f(False, 0x14 if ack else 0x04, b"", seq=0 if ack else c.sseq)
    return [(t, syn), (t + 0.0005, rst)]


def audit(tmp_path: Path, frames: Frames) -> tuple[list[dict], dict]:
    path = tmp_path / "cap.pcap"
    path.write_bytes(g.pcap(sorted(frames, key=lambda f: f[0])))
    result = run_audit([path], tmp_path / "out", write_events=False)
    return ([a for a in result.alerts if a["rule"]["id"] == UNRESPONSIVE],
            result.summary["operations"])


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_a_killed_outstation_refusing_connections_is_down(tmp_path: Path,
                                                          protocol: str) -> None:
    port, polls = PROTOCOLS[protocol]
    frames = session(port, polls, T0, 40000)
    killed = T0 + 25  # its kernel resets the open connection, then every new one
    c = Conversation(MASTER, OUTSTATION, cport=40000, sport=port, handshake=False)
    frames.append((killed, c.frame(False, 0x14)))
    retries = [killed + 5 + 5 * i for i in range(12)]
    for i, t in enumerate(retries):
        frames += refused(port, t, 41000 + i, ack=i % 2 == 0)
    (down,), ops = audit(tmp_path, frames)
    assert down["source"]["ip"] == OUTSTATION
    assert abs(epoch(down["event"]["start"]) - (retries[2] + 0.0005)) < 0.01  # the third
    assert "3 connections refused" in down["message"]  # when it was found
    (outage,) = ops["outages"]
    assert (outage["device"], outage["protocol"], outage["back"]) == (OUTSTATION, protocol, None)
    assert abs(epoch(outage["since"]) - (retries[0] + 0.0005)) < 0.01
    assert outage["refused"] == 3 and ops["devices_down"] == 1


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_the_outage_ends_when_the_port_serves_again(tmp_path: Path, protocol: str) -> None:
    port, polls = PROTOCOLS[protocol]
    frames = session(port, polls, T0, 40000)
    for i in range(4):
        frames += refused(port, T0 + 30 + 5 * i, 41000 + i)
    back = T0 + 60
    frames += session(port, polls, back, 42000, n=5)
    (down,), ops = audit(tmp_path, frames)
    assert "answered again after" in down["message"]
    (outage,) = ops["outages"]
    assert abs(epoch(outage["back"]) - (back + 0.51)) < 0.01
    assert outage["refused"] == 4 and ops["devices_down"] == 0


def test_a_reset_or_two_or_a_stranger_refused_is_no_outage(tmp_path: Path) -> None:
    port, polls = PROTOCOLS["modbus"]
    frames = session(port, polls, T0, 40000)
    frames += refused(port, T0 + 30, 41000) + refused(port, T0 + 35, 41001)
    frames += session(port, polls, T0 + 40, 42000, n=5)
    for i in range(10):  # a scanner the port never served
        c = Conversation("10.0.0.66", OUTSTATION, cport=50000 + i, sport=port,
                         handshake=False)
        frames += [(T0 + 50 + i, c._f(True, 0x02, b"", seq=c.cseq - 1)),
                   (T0 + 50.001 + i, c._f(False, 0x14, b"", seq=0))]
    for i in range(10):  # the master at a port that never served it
        frames += refused(503, T0 + 70 + i, 43000 + i)
    alerts, ops = audit(tmp_path, frames)
    assert alerts == [] and ops["outages"] == []
