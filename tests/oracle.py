"""tshark as the oracle: what Wireshark's dissectors see in a capture."""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections import Counter
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
TSHARK = shutil.which("tshark")
#: a retransmitted segment carries a copy of a PDU already counted, not a new one
NOT_RETRANSMITTED = ("!tcp.analysis.retransmission && !tcp.analysis.fast_retransmission"
                     " && !tcp.analysis.spurious_retransmission")

Key = tuple[int, str, str, object]


def corpus_rows() -> list[dict[str, str]]:
    """One row per distinct capture of the corpus (empty when the corpus is absent)."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with manifest.open() as fh:
        return [r for r in csv.DictReader(fh, delimiter="\t") if r["canonical_copy"] == "self"]


#: link types of corpus captures that otsec does not read (serial, CAN, 802.15.4, ARCNET,
#: private DLT_USER1)
NOT_READ = {"arcnet", "rtac-serial", "socketcan", "user1", "wpan"}


def nothing_to_analyse(row: dict[str, str]) -> bool:
    """An audit of this capture must fail: it holds no packet otsec can read."""
    return row["link_type"] in NOT_READ or row["packets"] == "0"


def tshark_fields(path: Path, display_filter: str, fields: list[str]) -> list[list[str]]:
    cmd = [TSHARK or "tshark", "-r", str(path), "-n", "--enable-heuristic", "dnp3_tcp",
           "--enable-heuristic", "dnp3_udp", "-Y", f"({display_filter}) && {NOT_RETRANSMITTED}",
           "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    return [line.split("\t") for line in proc.stdout.splitlines() if line]


def _addresses(s4: str, s6: str, d4: str, d6: str) -> tuple[str, str]:
    return (s4 or s6).split(",")[-1], (d4 or d6).split(",")[-1]


ADDR = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst"]


def tshark_modbus(path: Path) -> Counter[Key]:
    """(frame, source, destination, function code) for each Modbus PDU tshark dissects."""
    out: Counter[Key] = Counter()
    for frame, s4, s6, d4, d6, fcs in tshark_fields(path, "modbus",
                                                    ["frame.number", *ADDR, "modbus.func_code"]):
        src, dst = _addresses(s4, s6, d4, d6)
        for fc in fcs.split(","):
            if fc:
                out[(int(frame), src, dst, int(fc))] += 1
    return out


def tshark_s7(path: Path) -> Counter[Key]:
    """(frame, source, destination, (rosctr, function) or (7, group, sub)) per S7 PDU."""
    out: Counter[Key] = Counter()
    fields = ["frame.number", *ADDR, "s7comm.header.rosctr", "s7comm.param.func",
              "s7comm.param.userdata.funcgroup", "s7comm.param.userdata.subfunc"]
    for frame, s4, s6, d4, d6, rosctrs, funcs, groups, subs in tshark_fields(path, "s7comm",
                                                                              fields):
        src, dst = _addresses(s4, s6, d4, d6)
        f, g, s = funcs.split(","), groups.split(","), subs.split(",")
        fi = ui = 0
        for ro in rosctrs.split(","):
            rosctr = int(ro)
            if rosctr == 7:
                key: object = (7, _int(g, ui), _int(s, ui))
                ui += 1
            elif rosctr == 2:
                key = (2,)  # an ack carries no parameters
            else:
                key = (rosctr, _int(f, fi))
                fi += 1
            out[(int(frame), src, dst, key)] += 1
    return out


def tshark_dnp3(path: Path) -> Counter[Key]:
    """(frame, source, destination, application function) per DNP3 fragment."""
    out: Counter[Key] = Counter()
    for frame, s4, s6, d4, d6, funcs in tshark_fields(path, "dnp3.al.func",
                                                      ["frame.number", *ADDR, "dnp3.al.func"]):
        src, dst = _addresses(s4, s6, d4, d6)
        for fc in funcs.split(","):
            out[(int(frame), src, dst, int(fc))] += 1
    return out


def _int(values: list[str], i: int) -> int:
    return int(values[i], 0) if i < len(values) and values[i] else -1
