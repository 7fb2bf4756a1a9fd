#!/usr/bin/env python3
"""Throughput and memory of ``otsec audit`` against tshark's full dissection, on the same
files in the same run.

    python bench/run.py [--repeat 3] [--memory] [--against REV] [--only NAME]

Captures (built under bench/out/ when missing): the 500k-packet Modbus/TCP benchmark, a
500k-packet mixed plant capture made from the real-stack samples (Modbus, S7comm, DNP3),
the mixed capture gzipped (both tools decompress it as they read), a 500k-packet Modbus
capture whose register values move on every read (make_values.py) and 500k packets of 100
plants under attack (make_plants.py: thousands of alerts and incidents).
Prints seconds, packets/s and the ratio tshark time / otsec time (higher is better), also
for an audit with a site rule on roles (bench/site-rules.yaml). ``--memory`` adds peak RSS
on 10M packets of steady polling and on a flood of 1M one-shot flows from 200k spoofed
sources. ``--against REV`` also times the otsec of another git
revision (built once into bench/out/) on the same files in the same run: what a change
costs or gains, measured side by side (the machine's load varies from day to day).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_RULES = HERE / "site-rules.yaml"  # a rule on roles (see the file)
sys.path.insert(0, str(HERE))

from make_capture import PCAP_HEADER, frame, record  # noqa: E402
from make_capture import write as write_modbus  # noqa: E402
from make_mixed import write as write_mixed  # noqa: E402
from make_plants import write as write_plants  # noqa: E402
from make_values import write as write_values  # noqa: E402


def best_of(cmd: list[str], repeat: int, fresh_out: bool = False,
            build: Path | None = None) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs, and the largest peak RSS (KiB) seen.
    ``fresh_out``: ``--out`` is appended, a new empty folder for every run (as an audit
    usually has; removing the previous run's files is not part of the timing). ``build``:
    run the otsec installed there instead (see ``build_revision``)."""
    times, peak = [], 0
    env = dict(os.environ, PYTHONPATH=str(build)) if build else None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            run = [*cmd, "--out", out] if fresh_out else cmd
            start = time.perf_counter()
            proc = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=env, cwd=build)
            _, status, usage = os.wait4(proc.pid, 0)
            times.append(time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"bench: {' '.join(cmd)} failed")
        peak = max(peak, usage.ru_maxrss)
    return min(times), peak


def write_flood(path: Path, flows: int = 1_000_000, sources: int = 200_000) -> int:
    """One-shot TCP flows (a SYN each) from spoofed sources to one PLC's port 502."""
    rnd = random.Random(3)
    smac, dmac = bytes([0, 0x0C, 0x29, 9, 9, 9]), bytes([0, 0x80, 0xF4, 0, 2, 1])
    plc = bytes([10, 1, 0, 10])
    ts = 1_700_000_000.0
    with path.open("wb") as fh:
        fh.write(PCAP_HEADER)
        for i in range(flows):
            s = rnd.randrange(sources)
            src = bytes([10, 200 + (s >> 16), (s >> 8) & 0xFF, s & 0xFF])
            data = frame(smac, dmac, src, plc, 1024 + (i % 60000), 502, rnd.randrange(1 << 32),
                         0, 0x02, b"")
            ts += 0.00005
            fh.write(record(ts, data))
    return flows


def write_gzipped(plain: Path, path: Path) -> None:
    """``plain`` (made first), gzipped at the default level."""
    with plain.open("rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)


def mixed(out: Path, packets: int) -> Path:
    """The mixed capture (made when missing)."""
    path = out / "mixed-500k.pcap"
    if not path.exists():
        write_mixed(path, packets)
    return path


def build_revision(rev: str, out: Path) -> tuple[str, Path]:
    """otsec as of a git revision, built into ``out`` once (its wheel, unpacked)."""
    root = HERE.parent
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    pkg = out / f"build-{sha[:12]}"
    if (pkg / "otsec").is_dir():
        return sha[:12], pkg
    with tempfile.TemporaryDirectory() as tmp:
        tree, wheels = Path(tmp) / "tree", Path(tmp) / "wheels"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), sha],
                       check=True, capture_output=True)
        try:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(wheels), str(tree)], check=True)
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)
        (wheel,) = wheels.glob("otsec-*.whl")
        with zipfile.ZipFile(wheel) as z:
            z.extractall(pkg)
    compiled(pkg / "otsec")
    return sha[:12], pkg


def compiled(package: Path) -> None:
    """Byte-compile a package as ``pip install`` does: with PYTHONDONTWRITEBYTECODE set (or
    a tree changed since its last run) every run would otherwise compile the modules again
    and time the compiler."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True,
                   stdout=subprocess.DEVNULL)


def line(name: str, seconds: float, packets: int, tshark: float | None = None,
         rss: int | None = None) -> str:
    text = f"{name:<40}: {seconds:6.2f} s {packets / seconds:>11,.0f} packets/s"
    if tshark is not None:
        text += f"  tshark/otsec {tshark / seconds:4.2f}x"
    if rss is not None:
        text += f"  peak RSS {rss / 1024:,.0f} MB"
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory", action="store_true", help="also the 10M and flood runs")
    ap.add_argument("--against", metavar="REV", help="also time this git revision's otsec")
    ap.add_argument("--only", metavar="NAME", action="append",
                    help="only the captures whose file name contains NAME (repeatable)")
    args = ap.parse_args()
    if not shutil.which("tshark"):
        print("bench: tshark is missing (apt-get install tshark)", file=sys.stderr)
        return 2
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    captures = {"modbus-500k.pcap": write_modbus, "mixed-500k.pcap": write_mixed,
                "mixed-500k.pcap.gz": lambda p, n: write_gzipped(mixed(out, n), p),
                "modbus-values-500k.pcap": write_values, "plants-500k.pcap": write_plants}
    if args.only:
        captures = {k: v for k, v in captures.items() if any(o in k for o in args.only)}
    audit = [sys.executable, "-m", "otsec", "audit", "--format", "json"]
    spec = importlib.util.find_spec("otsec")  # the otsec that ``-m otsec`` runs
    if spec is not None and spec.origin is not None:
        compiled(Path(spec.origin).parent)
    other = build_revision(args.against, out) if args.against else None
    for name, make in captures.items():
        cap = out / name
        if not cap.exists():
            make(cap, 500_000)
        packets = 500_000
        tshark, _ = best_of(["tshark", "-q", "-z", "io,phs", "-r", str(cap)], args.repeat)
        full, rss = best_of([*audit, str(cap)], args.repeat, fresh_out=True)
        lean, _ = best_of([*audit, str(cap), "--no-events"], args.repeat, fresh_out=True)
        ruled, _ = best_of([*audit, str(cap), "--no-events", "--rules", str(SITE_RULES)],
                           args.repeat, fresh_out=True)
        print(f"{cap.name} ({cap.stat().st_size / 1e6:.1f} MB)")
        print(line("  tshark -q -z io,phs", tshark, packets))
        print(line("  otsec audit", full, packets, tshark, rss))
        print(line("  otsec audit --no-events", lean, packets, tshark))
        print(line("  otsec audit --no-events + role rule", ruled, packets, tshark))
        if other is not None:
            rev, build = other
            full, rss = best_of([*audit, str(cap)], args.repeat, True, build)
            lean, _ = best_of([*audit, str(cap), "--no-events"], args.repeat, True, build)
            print(line(f"  otsec@{rev} audit", full, packets, tshark, rss))
            print(line(f"  otsec@{rev} audit --no-events", lean, packets, tshark))
    if args.memory:
        steady = out / "modbus-10m.pcap"
        if not steady.exists():
            write_modbus(steady, 10_000_000)
        flood = out / "flood-1m.pcap"
        if not flood.exists():
            write_flood(flood)
        for cap, packets in ((steady, 10_000_000), (flood, 1_000_000)):
            seconds, rss = best_of([*audit, str(cap), "--no-events"], 1, fresh_out=True)
            print(f"{cap.name}")
            print(line("  otsec audit --no-events", seconds, packets, rss=rss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
