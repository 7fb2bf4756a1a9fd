"""Write a large Modbus/TCP capture whose process values move: HMIs polling 28 PLCs whose
analog registers change on every read (about 107k points), with setpoints written now and
then (about 6,700 points). The opposite of make_capture.py's steady polling.

    python bench/make_values.py OUT.pcap [--packets 500000]
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from make_capture import PCAP_HEADER, frame, handshakes, record
from make_capture import main as command_line

PLCS = 28
HMIS = 4
#: each PLC's polls: (function code, start, count); 16 blocks of holding and 16 of input
#: registers, 120 registers each
BLOCKS = [(3, 1000 * k, 120) for k in range(16)] + [(4, 1000 * k, 120) for k in range(16)]
#: the setpoints written: holding registers 0-239 of each PLC
SETPOINTS = 240
#: answers kept per block; each read sends the next, so every register moves on every read
VARIANTS = 8


def write(path: Path, packets: int) -> int:
    rnd = random.Random(11)
    answers = {  # (plc, block) -> register data of each variant (a slow wave plus noise)
        (p, b): [b"".join(struct.pack("!H", (2000 + 600 * ((v + r) % VARIANTS) + r * 7
                                             + rnd.randrange(5)) & 0xFFFF)
                          for r in range(count))
                 for v in range(VARIANTS)]
        for p in range(PLCS) for b, (_fc, _start, count) in enumerate(BLOCKS)
    }
    turn = dict.fromkeys(answers, 0)
    conns = []
    for h in range(HMIS):
        for p in range(PLCS):
            conns.append({
                "plc": p, "cmac": bytes([0x00, 0x0C, 0x29, 0, 3, h]),
                "smac": bytes([0x00, 0x80, 0xF4, 0, 4, p]),
                "cip": bytes([10, 3, 0, 100 + h]), "sip": bytes([10, 3, 1, 10 + p]),
                "cport": 41000 + p, "cseq": rnd.randrange(1 << 32),
                "sseq": rnd.randrange(1 << 32), "tid": 0,
            })  # fmt: skip
    ts = 1_700_000_000.0
    n = 0
    m = 0xFFFFFFFF
    with path.open("wb") as fh:
        fh.write(PCAP_HEADER)

        def put(data: bytes) -> None:
            nonlocal n, ts
            ts += 0.0002
            fh.write(record(ts, data))
            n += 1

        handshakes(conns, put)
        while n < packets:
            c = conns[rnd.randrange(len(conns))]
            c["tid"] = (c["tid"] + 1) & 0xFFFF
            if rnd.random() < 0.04:  # an operator changes setpoints
                start = rnd.randrange(SETPOINTS)
                count = min(rnd.choice((1, 1, 2, 4, 8)), SETPOINTS - start)
                values = b"".join(struct.pack("!H", rnd.randrange(100, 5000))
                                  for _ in range(count))
                if count == 1:
                    fc, req, resp = 6, struct.pack("!H", start) + values, b""
                    resp = req
                else:
                    fc = 16
                    req = struct.pack("!HHB", start, count, 2 * count) + values
                    resp = struct.pack("!HH", start, count)
            else:
                b = rnd.randrange(len(BLOCKS))
                fc, start, count = BLOCKS[b]
                key = (c["plc"], b)
                turn[key] = (turn[key] + 1) % VARIANTS
                req = struct.pack("!HH", start, count)
                resp = bytes([2 * count]) + answers[key][turn[key]]
            q = struct.pack("!HHHBB", c["tid"], 0, len(req) + 2, 1, fc) + req
            r = struct.pack("!HHHBB", c["tid"], 0, len(resp) + 2, 1, fc) + resp
            put(frame(c["cmac"], c["smac"], c["cip"], c["sip"], c["cport"], 502, c["cseq"] & m,
                      c["sseq"] & m, 0x18, q))
            c["cseq"] += len(q)
            put(frame(c["smac"], c["cmac"], c["sip"], c["cip"], 502, c["cport"], c["sseq"] & m,
                      c["cseq"] & m, 0x18, r))
            c["sseq"] += len(r)
            if rnd.random() < 0.25:
                put(frame(c["cmac"], c["smac"], c["cip"], c["sip"], c["cport"], 502,
                          c["cseq"] & m, c["sseq"] & m, 0x10, b""))
    return n


if __name__ == "__main__":
    command_line(write, __doc__ or "")
