"""The public capture corpus: agreement with tshark, and no capture breaks the audit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from otsec.audit import run_audit
from otsec.capture import NothingAnalysed
from otsec.protocols.dnp3 import Dnp3Pdu
from otsec.protocols.modbus import ModbusPdu
from otsec.protocols.s7comm import S7Pdu
from tests.helpers import run_file
from tests.oracle import (
    CORPUS,
    TSHARK,
    Key,
    corpus_rows,
    nothing_to_analyse,
    tshark_dnp3,
    tshark_modbus,
    tshark_s7,
)

pytestmark = pytest.mark.corpus
ROWS = corpus_rows()
needs_corpus = pytest.mark.skipif(not ROWS, reason=f"corpus not found at {CORPUS}")


def otsec_keys(path: Path, kind: type, key) -> Counter[Key]:
    """The same keys as the oracle's, from otsec's events of one type."""
    _, sink = run_file(path)
    out: Counter[Key] = Counter()
    for ev in sink.events:
        if type(ev) is kind:
            ips = ev.flow.ip_texts
            sender = ev.flow.sender(ev.from_client)
            out[(ev.frame, ips[sender], ips[1 - sender], key(ev))] += 1
    return out


def s7_key(ev: S7Pdu) -> object:
    if ev.rosctr == 7:
        return (7, ev.group, ev.subfunction)
    if ev.rosctr == 2:
        return (2,)
    return (ev.rosctr, -1 if ev.function_code is None else ev.function_code)


CHECKS = {  # protocol: (manifest column, oracle, event type, key)
    "modbus": ("mbtcp_frames", tshark_modbus, ModbusPdu, lambda e: e.function_code & 0x7F),
    "s7comm": ("s7comm_frames", tshark_s7, S7Pdu, s7_key),
    "dnp3": ("dnp3_frames", tshark_dnp3, Dnp3Pdu, lambda e: e.function_code),
}


def agreement(protocol: str) -> tuple[float, int, list[tuple[int, str]]]:
    column, oracle, kind, key = CHECKS[protocol]
    files = [r for r in ROWS if int(r[column] or 0) > 0]
    theirs_total = ours_total = matched = 0
    worst = []
    for row in files:
        path = CORPUS / row["local_path"]
        theirs, ours = oracle(path), otsec_keys(path, kind, key)
        m = sum((theirs & ours).values())
        theirs_total += sum(theirs.values())
        ours_total += sum(ours.values())
        matched += m
        worst.append((m - max(sum(theirs.values()), sum(ours.values())), row["local_path"]))
    return matched / max(theirs_total, ours_total, 1), theirs_total, sorted(worst)[:3]


@needs_corpus
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")
@pytest.mark.parametrize(("protocol", "minimum_pdus"),
                         [("modbus", 30_000), ("s7comm", 30_000), ("dnp3", 1_500)])
def test_dissection_agrees_with_tshark(protocol: str, minimum_pdus: int) -> None:
    """Same frame, source, destination and function per PDU over every corpus capture
    carrying the protocol (S7: rosctr and function, or group and sub-function; DNP3: the
    application function of each fragment)."""
    score, theirs, worst = agreement(protocol)
    print(f"{protocol}: agreement {score:.4%} over {theirs} tshark PDUs; worst {worst}")
    assert theirs > minimum_pdus
    assert score >= 0.995


@needs_corpus
@pytest.mark.parametrize("row", ROWS, ids=[r["local_path"] for r in ROWS])
def test_every_capture_audits_without_error(row: dict[str, str], tmp_path: Path) -> None:
    if nothing_to_analyse(row):
        with pytest.raises(NothingAnalysed, match=r"no packet has a link type|no packets"):
            run_audit([CORPUS / row["local_path"]], tmp_path)
        return
    result = run_audit([CORPUS / row["local_path"]], tmp_path)
    assert result.summary["packets"] == int(row["packets"])
    for name in ("events.ndjson", "alerts.ndjson", "assets.json", "edges.json", "summary.json",
                 "report.html"):
        assert (tmp_path / name).exists()


ROLES = {  # named corpus captures: the roles their hosts must get
    "ITI_ICS-Security-Tools/pcaps/s7/S7-1200-Uploading-OB1-TIAV12.pcap": {
        "192.168.1.191": "plc", "192.168.1.10": "hmi"},  # the TIA Portal laptop is no PLC
    "ITI_ICS-Security-Tools/pcaps/ModbusTCP/mb2.pcap": {
        "141.81.0.10": "hmi", "141.81.0.24": "plc", "141.81.0.146": "plc"},
}


@needs_corpus
@pytest.mark.parametrize("path", sorted(ROLES))
def test_roles_of_named_captures(path: str, tmp_path: Path) -> None:
    if not (CORPUS / path).exists():
        pytest.skip(f"{path} is not in this corpus")
    result = run_audit([CORPUS / path], tmp_path, write_events=False)
    roles = {ip: d["otsec"]["asset"]["role"] for d in result.asset_docs for ip in d["host"]["ip"]}
    for ip, role in ROLES[path].items():
        assert roles[ip] == role, (ip, roles[ip])
