"""Helpers that ask tshark (the oracle) what a capture holds, and run otsec the same way."""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from otsec.capture.files import CaptureReader
from otsec.engine import Engine
from otsec.events import Event, ModbusPdu

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
TSHARK = shutil.which("tshark")


def corpus_rows() -> list[dict[str, str]]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with manifest.open() as fh:
        return [r for r in csv.DictReader(fh, delimiter="\t") if r["canonical_copy"] == "self"]


def tshark_fields(path: Path, display_filter: str, fields: list[str]) -> list[list[str]]:
    cmd = [TSHARK or "tshark", "-r", str(path), "-n", "-Y", display_filter, "-T", "fields",
           "-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    return [line.split("\t") for line in proc.stdout.splitlines() if line]


def tshark_modbus(path: Path) -> Counter[tuple[int, str, str, int]]:
    """(frame, src, dst, function code) per Modbus PDU, as tshark dissects them."""
    out: Counter[tuple[int, str, str, int]] = Counter()
    rows = tshark_fields(path, "modbus", ["frame.number", "ip.src", "ipv6.src", "ip.dst",
                                          "ipv6.dst", "modbus.func_code"])
    for frame, s4, s6, d4, d6, fcs in rows:
        src = (s4 or s6).split(",")[-1]
        dst = (d4 or d6).split(",")[-1]
        for fc in fcs.split(","):
            if fc:
                out[(int(frame), src, dst, int(fc))] += 1
    return out


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def on_flow_end(self, flow: object) -> None:
        pass

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        pass


def otsec_events(path: Path) -> list[Event]:
    sink = Collect()
    engine = Engine([sink])
    with CaptureReader(path) as reader:
        for pkt in reader:
            engine.packet(*pkt)
    engine.finish()
    return sink.events


def otsec_modbus(path: Path) -> Counter[tuple[int, str, str, int]]:
    out: Counter[tuple[int, str, str, int]] = Counter()
    for ev in otsec_events(path):
        if isinstance(ev, ModbusPdu):
            ips = ev.flow.ip_texts
            sender = ev.flow.sender(ev.from_client)
            out[(ev.frame, ips[sender], ips[1 - sender], ev.function_code & 0x7F)] += 1
    return out
