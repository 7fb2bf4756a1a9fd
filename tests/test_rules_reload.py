"""Rules reloaded under traffic, as the live sensor does on SIGHUP: blocks of the ring fed
to a pipeline, the rules swapped between blocks with records still waiting to be drained.
The same rules give the same alerts; a larger or smaller, reordered set goes on finding."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from otsec.detect.ruleset import RuleSet, load
from otsec.pipeline import Pipeline

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
SAMPLES = ["modbus-intrusion.pcap", "s7-intrusion.pcap", "dnp3-intrusion.pcap"]
EXTRA = """\
rules:
  - id: site-modbus-read
    name: Modbus read
    description: a read of holding registers
    severity: low
    category: recon
    techniques: [T0801]
    tactics: [TA0102]
    reference: https://modbus.org/
    protocol: modbus
    match: {direction: request, function_code: 3}
    message: "read registers of"
"""


def frames(path: Path) -> list[tuple[float, bytes]]:
    """The records of a little-endian microsecond pcap."""
    data = path.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4
    out, at = [], 24
    while at + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack_from("<IIII", data, at)
        out.append((sec + usec / 1e6, data[at + 16:at + 16 + incl]))
        at += 16 + incl
    return out


def block(packets: list[tuple[float, bytes]]) -> bytes:
    """A retired TPACKET_V3 block holding ``packets`` (what the kernel gives the sensor)."""
    o = "<" if sys.byteorder == "little" else ">"
    out = bytearray(48)
    struct.pack_into(o + "II", out, 12, len(packets), 48)
    for i, (ts, data) in enumerate(packets):
        size = -(-(64 + len(data)) // 16) * 16
        hdr = bytearray(size)
        nxt = size if i + 1 < len(packets) else 0
        sec = int(ts)
        struct.pack_into(o + "IIIII", hdr, 0, nxt, sec, round((ts - sec) * 1e9), len(data),
                         len(data))
        struct.pack_into(o + "H", hdr, 24, 64)
        hdr[64:64 + len(data)] = data
        out += hdr
    return bytes(out)


def alerts(path: Path, sets: list[RuleSet] | None, per: int = 20) -> list[tuple[str, int]]:
    """Feed ``path`` in blocks of ``per`` packets; with ``sets``, reload the next of them
    after every block (the records of that block not drained yet, as in the monitor)."""
    pipe = Pipeline(None)
    packets = frames(path)
    for n, at in enumerate(range(0, len(packets), per)):
        pipe.core.feed_block(block(packets[at:at + per]))
        if sets:
            pipe.reload(sets[n % len(sets)])
    pipe.finish()
    pipe.detector.sync(pipe.core.hit_counts())
    return sorted((a.rule.id, a.count) for a in pipe.detector.alerts)


@pytest.mark.parametrize("name", SAMPLES)
def test_the_same_rules_reloaded_raise_the_same_alerts(name: str) -> None:
    once = alerts(PCAPS / name, None)
    assert once
    assert alerts(PCAPS / name, [load()], per=5) == once


def test_larger_and_smaller_reordered_sets_go_on_finding(tmp_path: Path) -> None:
    (tmp_path / "extra.yaml").write_text(EXTRA)
    full = load()
    larger = load([tmp_path / "extra.yaml"])
    dropped = "otsec-modbus-write"
    smaller = RuleSet(rules={k: v for k, v in reversed(full.rules.items()) if k != dropped},
                      suppress=full.suppress, maintenance=full.maintenance)
    path = PCAPS / "modbus-intrusion.pcap"
    once = alerts(path, None)
    got = alerts(path, [full, larger, smaller], per=7)
    assert any(rule == "site-modbus-read" for rule, _ in got)
    assert any(rule == dropped for rule, _ in got)
    # the rules in every set find what they found without reloads
    kept = [a for a in got if a[0] not in (dropped, "site-modbus-read")]
    assert kept == [a for a in once if a[0] != dropped]
