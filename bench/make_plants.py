"""Write a large capture of many plants under attack, from the real-stack samples: each of
100 plants has its own addresses (10.<plant>.<protocol>.x, its own MACs), its normal
Modbus, S7comm and DNP3 traffic looped over time (each loop from new client ports) and
the three intrusions twice, from two attackers (.66 at a third of the time, .67 at two
thirds); the plants run side by side, interleaved.

    python bench/make_plants.py OUT.pcap [--packets 500000] [--plants 100]
"""

from __future__ import annotations

import heapq
import math
from pathlib import Path

from make_capture import PCAP_HEADER, record
from make_capture import main as command_line
from make_mixed import SAMPLES, frames

SERVER_PORTS = (502, 102, 20000)
#: seconds between loops of a plant's normal traffic (the samples last about 21 s)
LOOP = 22.0
#: the intrusions' attacker (10.77.0.66); the second run comes from the next address
ATTACKER = 66


def readdress(frame: bytes, plant: int, proto: int, loop: int, second: bool = False) -> bytes:
    """Move one frame into its plant: IPv4 10.77.0.y becomes 10.<plant>.<proto>.y, MACs
    carry the plant and protocol, client ports move by ``loop``; ``second``: the attacker
    is another host (.67, another MAC)."""
    data = bytearray(frame)

    def mac(off: int) -> None:  # its last two bytes
        if any(data[off:off + 6]) and data[off] != 0xFF:
            data[off + 4], data[off + 5] = plant, (data[off + 5] & 0x0F) | (proto << 4)
            if second and data[off + 1] == 0x42:  # the attacker's locally administered MAC
                data[off + 3] ^= 1

    def ip(off: int) -> None:
        if data[off] == 10:
            data[off + 1], data[off + 2] = plant, proto
            if second and data[off + 3] == ATTACKER:
                data[off + 3] += 1

    mac(0)
    mac(6)
    if frame[12:14] == b"\x08\x06" and len(frame) >= 42:  # ARP: its addresses too
        mac(22)
        mac(32)
        ip(28)
        ip(38)
        return bytes(data)
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return bytes(data)
    ip(26)
    ip(30)
    ihl = (data[14] & 0x0F) * 4
    if data[23] in (6, 17) and len(data) >= 14 + ihl + 4:
        for off in (14 + ihl, 16 + ihl):
            port = int.from_bytes(data[off:off + 2], "big")
            if port not in SERVER_PORTS:
                data[off:off + 2] = (port + 11 * loop & 0xFFFF).to_bytes(2, "big")
    return bytes(data)


def write(out: Path, packets: int, plants: int = 100) -> int:
    names = ("modbus", "s7", "dnp3")
    normal = [frames(SAMPLES / f"{n}-normal.pcap") for n in names]
    intrusion = [frames(SAMPLES / f"{n}-intrusion.pcap") for n in names]
    per_plant = packets / plants
    attack = 2 * sum(len(s) for s in intrusion)
    loops = max(1, math.ceil((per_plant - attack) / sum(len(s) for s in normal)))
    streams = []
    for plant in range(plants):
        base = 1_700_000_000 + plant * 0.37
        for proto in range(len(names)):
            for loop in range(loops):
                sample = normal[proto]
                t0 = sample[0][0]
                streams.append([(base + loop * LOOP + proto * 0.011 + ts - t0, plant, proto,
                                 loop, False, f) for ts, f in sample])
            sample = intrusion[proto]
            t0 = sample[0][0]
            for second in (False, True):
                start = base + loops * LOOP * (2 if second else 1) / 3 + proto * 0.013
                streams.append([(start + ts - t0, plant, proto, loops + second, second, f)
                                for ts, f in sample])
    n = 0
    with out.open("wb") as fh:
        fh.write(PCAP_HEADER)
        for ts, plant, proto, loop, second, frame in heapq.merge(*streams,
                                                                   key=lambda x: x[0]):
            fh.write(record(ts, readdress(frame, plant, proto + 1, loop, second)))
            n += 1
            if n >= packets:
                break
    return n


if __name__ == "__main__":
    command_line(write, __doc__ or "")
