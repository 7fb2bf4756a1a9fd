"""The public capture corpus: agreement with tshark, and no capture breaks the audit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from otsec.audit import run_audit
from otsec.events import ModbusPdu
from tests.helpers import run_file
from tests.oracle import CORPUS, TSHARK, corpus_rows, tshark_modbus

pytestmark = pytest.mark.corpus
ROWS = corpus_rows()
needs_corpus = pytest.mark.skipif(not ROWS, reason=f"corpus not found at {CORPUS}")


def otsec_modbus(path: Path) -> Counter[tuple[int, str, str, int]]:
    _, sink = run_file(path)
    out: Counter[tuple[int, str, str, int]] = Counter()
    for ev in sink.events:
        if isinstance(ev, ModbusPdu):
            ips = ev.flow.ip_texts
            sender = ev.flow.sender(ev.from_client)
            out[(ev.frame, ips[sender], ips[1 - sender], ev.function_code & 0x7F)] += 1
    return out


@needs_corpus
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")
def test_modbus_agrees_with_tshark() -> None:
    """Same frame, source, destination and function code per PDU, over every Modbus capture."""
    files = [r for r in ROWS if int(r["mbtcp_frames"] or 0) > 0]
    assert len(files) >= 15
    theirs_total = ours_total = matched = 0
    worst = []
    for row in files:
        path = CORPUS / row["local_path"]
        theirs, ours = tshark_modbus(path), otsec_modbus(path)
        m = sum((theirs & ours).values())
        theirs_total += sum(theirs.values())
        ours_total += sum(ours.values())
        matched += m
        worst.append((m - max(sum(theirs.values()), sum(ours.values())), row["local_path"]))
    agreement = matched / max(theirs_total, ours_total)
    print(f"modbus agreement {agreement:.4%} over {theirs_total} tshark PDUs; "
          f"worst files {sorted(worst)[:3]}")
    assert theirs_total > 30_000
    assert agreement >= 0.995


@needs_corpus
@pytest.mark.parametrize("row", ROWS, ids=[r["local_path"] for r in ROWS])
def test_every_capture_audits_without_error(row: dict[str, str], tmp_path: Path) -> None:
    result = run_audit([CORPUS / row["local_path"]], tmp_path)
    assert result.summary["packets"] == int(row["packets"])
    for name in ("events.ndjson", "alerts.ndjson", "assets.json", "edges.json", "summary.json",
                 "report.html"):
        assert (tmp_path / name).exists()
