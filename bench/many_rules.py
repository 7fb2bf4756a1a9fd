#!/usr/bin/env python3
"""What a large generated site ruleset costs an audit: ``otsec audit`` of the sample captures
in pcaps/ with the built-in rules, then with N generated rules (default 10,000), best of
``--repeat`` runs each; then the parts, in this process: loading the rules, and matching
them (reading a mixed plant capture of ``--packets`` packets with the rules loaded).

    python bench/many_rules.py [--rules 10000] [--repeat 3] [--packets 200000] [--keep FILE]

The rules are what sites generate from their tag lists: one rule per register, coil, data
block, SZL or DNP3 address worth watching, so they differ by the values they test for
equality (unit id, address, szl_id, link address), a few by a range; most of them name
points the samples' traffic touches.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PCAPS = sorted((HERE.parent / "pcaps").glob("*.pcap"))
sys.path.insert(0, str(HERE))

HEAD = """  - id: {id}
    name: {name}
    description: generated from the site's tag list
    severity: {severity}
    category: {category}
    techniques: [{technique}]
    reference: https://example.invalid/tags
    protocol: {protocol}
    match: {match}
    message: "{message}"
"""


def rule(i: int) -> str:
    """The i-th generated rule (a mix of the kinds sites write, by the thousand)."""
    kind = i % 10
    if kind < 4:  # a Modbus write to one register of one unit
        unit, address = 1 + i % 7, i // 7 % 2000
        return HEAD.format(id=f"site-mb-write-{i}", name=f"Setpoint {address} written",
                           severity="high", category="write", technique="T0836",
                           protocol="modbus", message="wrote a watched register of",
                           match=f"{{direction: request, function_code: [6, 16], "
                                 f"unit_id: {unit}, address: {address}}}")
    if kind < 6:  # a Modbus read of one block
        address = i // 3 % 3000
        return HEAD.format(id=f"site-mb-read-{i}", name=f"Block {address} read",
                           severity="low", category="recon", technique="T0801",
                           protocol="modbus", message="read a watched block of",
                           match=f"{{direction: request, function_code: 3, address: {address}}}")
    if kind == 6:  # an S7 SZL read of one list
        szl = (i * 7) % 0x1000
        return HEAD.format(id=f"site-s7-szl-{i}", name=f"SZL {szl:#x} read",
                           severity="low", category="recon", technique="T0888",
                           protocol="s7comm", message="read a watched SZL of",
                           match=f"{{rosctr: 7, group: 4, szl_id: {szl}}}")
    if kind == 7:  # a DNP3 control to one outstation address
        address = i % 4000
        return HEAD.format(id=f"site-dnp3-operate-{i}", name=f"Outstation {address} operated",
                           severity="high", category="control", technique="T0855",
                           protocol="dnp3", message="operated a watched outstation,",
                           match=f"{{function_code: [3, 4, 5], destination_address: {address}}}")
    if kind == 8:  # a Modbus unit answering with an exception
        return HEAD.format(id=f"site-mb-exception-{i}", name="Exception from a unit",
                           severity="low", category="diagnostics", technique="T0801",
                           protocol="modbus", message="answered with an exception to",
                           match=f"{{direction: response, unit_id: {i % 250}, "
                                 f"exception_code: {{exists: true}}}}")
    low = i % 5000  # a range of registers
    return HEAD.format(id=f"site-mb-range-{i}", name="Write into a watched range",
                       severity="medium", category="write", technique="T0836",
                       protocol="modbus", message="wrote into a watched range of",
                       match=f"{{direction: request, function_code: 6, "
                             f"address: {{between: [{low}, {low + 3}]}}}}")


def write_rules(path: Path, n: int) -> None:
    path.write_text("rules:\n" + "".join(rule(i) for i in range(n)))


def audit_time(extra: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "otsec", "audit", *map(str, PCAPS),
                            "--out", out, *extra], check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ))
            best = min(best, time.perf_counter() - start)
    return best


def parts(rules: Path, packets: int, repeat: int) -> tuple[float, float, float, int]:
    """Seconds to load ``rules``; to read a mixed capture with the built-in rules and with
    them; the packets read."""
    from make_mixed import write as write_mixed

    from otsec.detect.ruleset import load
    from otsec.pipeline import Pipeline

    def best(f: object) -> float:
        times = []
        for _ in range(repeat):
            gc.collect()
            start = time.perf_counter()
            f()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    loading = best(lambda: load([rules]))
    builtin, many = load(), load([rules])
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "mixed.pcap"
        n = write_mixed(cap, packets)

        def read(ruleset: object) -> None:
            pipe = Pipeline(None, ruleset=ruleset)  # type: ignore[arg-type]
            pipe.run([cap])
            pipe.finish()

        return loading, best(lambda: read(builtin)), best(lambda: read(many)), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--keep", type=Path, help="write the generated rules there")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rules = args.keep or Path(tmp) / "site-rules.yaml"
        write_rules(rules, args.rules)
        builtin = audit_time([], args.repeat)
        many = audit_time(["--rules", str(rules)], args.repeat)
        loading, read_builtin, read_many, n = parts(rules, args.packets, args.repeat)
    print(f"audit of {len(PCAPS)} sample captures, best of {args.repeat}:")
    print(f"  built-in rules        {builtin:7.2f} s")
    print(f"  + {args.rules:,} generated rules {many:7.2f} s  ({many / builtin:.2f}x)")
    print(f"loading the {args.rules:,} rules: {loading:.2f} s")
    print(f"reading a mixed capture of {n:,} packets (rules loaded):")
    print(f"  built-in rules        {read_builtin:7.2f} s")
    print(f"  + {args.rules:,} generated rules {read_many:7.2f} s  "
          f"({read_many / read_builtin:.2f}x)")


if __name__ == "__main__":
    main()
