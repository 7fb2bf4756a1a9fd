"""tshark as the oracle: what Wireshark's dissectors see in a capture."""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections import Counter
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
TSHARK = shutil.which("tshark")


def corpus_rows() -> list[dict[str, str]]:
    """One row per distinct capture of the corpus (empty when the corpus is absent)."""
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
    """(frame, source, destination, function code) for each Modbus PDU tshark dissects."""
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
