"""Fuzzing the whole audit: container fields (pcap, pcapng blocks and options, gzip) and the
dissectors behind them (mutated real sessions), through every output file. The number of
examples is bounded for CI (``OTSEC_FUZZ_EXAMPLES`` raises it for a longer campaign); what
a campaign finds is kept as a generator in tests/regressions.py."""

from __future__ import annotations

import gzip
import json
import os
import random
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsec import _core
from otsec.audit import run_audit
from otsec.capture import CaptureError, NothingAnalysed
from tests import pcapgen as g
from tests import regressions

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "pcaps").glob("*.pcap"))
EXAMPLES = int(os.environ.get("OTSEC_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def audit_survives(data: bytes, parent: Path) -> None:
    """The audit ends with its files, or with the one error a broken input deserves."""
    tmp = Path(tempfile.mkdtemp(dir=parent))  # examples share the test's folder
    f = tmp / "in.cap"
    f.write_bytes(data)
    out = tmp / "out"
    try:
        result = run_audit([f], out)
    except (CaptureError, NothingAnalysed):
        assert not (out / "summary.json").exists()
        return
    summary = json.loads((out / "summary.json").read_text())
    assert summary["packets"] >= 1
    for name in ("alerts.ndjson", "events.ndjson", "anomalies.ndjson"):
        for line in (out / name).read_bytes().splitlines():
            json.loads(line)
    json.loads((out / "assets.json").read_text())
    span = result.summary["capture"]
    assert span["start"] is None or span["start"] <= span["end"]  # simple blocks have no time


def frames_of(path: Path) -> list[tuple[float, bytes]]:
    cap, out = _core.Capture(str(path)), []
    while batch := cap.read():
        out += [(ts, data) for ts, _lt, data, _wl in batch]
    return out


option = st.one_of(
    st.tuples(st.just(9), st.binary(min_size=1, max_size=1)),  # if_tsresol
    st.tuples(st.just(14), st.integers(-2**63, 2**63 - 1).map(lambda v: struct.pack("<q", v))),
    st.tuples(st.integers(0, 20), st.binary(max_size=12)),
)
block = st.one_of(
    st.tuples(st.just("idb"), st.sampled_from([1, 101, 113, 276, 0, 147]),
              st.lists(option, max_size=3)),
    st.tuples(st.just("epb"), st.integers(0, 3), st.integers(0, 2**64 - 1),
              st.integers(0, 2000), st.binary(max_size=120)),
    st.tuples(st.just("spb"), st.binary(max_size=120)),
    st.tuples(st.just("raw"), st.binary(max_size=40)),
)


def pcapng_from(blocks: list[tuple], frames: list[bytes]) -> bytes:
    out = [regressions._shb()]
    for b in blocks:
        if b[0] == "idb":
            opts = b"".join(struct.pack("<HH", code, len(v)) + v + b"\0" * (-len(v) % 4)
                            for code, v in b[2])
            out.append(g._block("<", 1, struct.pack("<HHI", b[1], 0, 262144) + opts))
        elif b[0] == "epb":
            data = frames[b[3] % len(frames)] if b[4] == b"" else b[4]
            out.append(g._block("<", 6, struct.pack("<IIIII", b[1], b[2] >> 32,
                                                    b[2] & 0xFFFFFFFF, len(data),
                                                    b[3]) + data))
        elif b[0] == "spb":
            out.append(g._block("<", 3, struct.pack("<I", len(b[1])) + b[1]))
        else:
            out.append(b[1])
    return b"".join(out)


@FUZZ
@given(blocks=st.lists(block, min_size=1, max_size=12), cut=st.integers(0, 64),
       zipped=st.booleans())
def test_pcapng_block_fields(tmp_path: Path, blocks: list[tuple], cut: int,
                             zipped: bool) -> None:
    frames = [f for _, f in frames_of(SAMPLES[0])[:20]]
    data = pcapng_from([("idb", 1, []), *blocks], frames)
    data = data[: len(data) - cut] if cut else data
    audit_survives(gzip.compress(data, mtime=0)[: -cut or None] if zipped else data, tmp_path)


@FUZZ
@given(magic=st.sampled_from([0xA1B2C3D4, 0xA1B23C4D]), big=st.booleans(),
       linktype=st.sampled_from([1, 101, 113, 276, 0, 12, 228, 147, 0x0FFFFFFF]),
       records=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                                  st.integers(0, 300), st.integers(0, 2**32 - 1)),
                        min_size=1, max_size=10))
def test_pcap_record_fields(tmp_path: Path, magic: int, big: bool, linktype: int,
                            records: list[tuple[int, int, int, int]]) -> None:
    o = ">" if big else "<"
    frames = [f for _, f in frames_of(SAMPLES[1])[:20]]
    out = [struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for i, (sec, frac, caplen, wirelen) in enumerate(records):
        data = (frames[i % len(frames)] * 3)[:caplen]
        out.append(struct.pack(o + "IIII", sec, frac, len(data), wirelen) + data)
    audit_survives(b"".join(out), tmp_path)


@FUZZ
@given(sample=st.sampled_from(SAMPLES), seed=st.integers(0, 2**32 - 1),
       edits=st.integers(1, 40))
def test_mutated_sessions_of_every_dissector(tmp_path: Path, sample: Path, seed: int,
                                             edits: int) -> None:
    """Bytes of real Modbus, S7comm and DNP3 sessions changed past the TCP header: the
    dissectors, pairing, rules and documents see every kind of broken PDU."""
    rnd = random.Random(seed)
    frames = frames_of(sample)
    mutated = []
    for ts, data in frames:
        buf = bytearray(data)
        if len(buf) > 54 and rnd.random() < 0.3:
            for _ in range(rnd.randint(1, edits)):
                buf[rnd.randrange(54, len(buf))] = rnd.randrange(256)
        mutated.append((ts, bytes(buf)))
    audit_survives(g.pcap(mutated), tmp_path)


@pytest.mark.parametrize("name", sorted(regressions.CASES))
def test_regressions_are_what_their_generators_make_and_audit_cleanly(
        name: str, tmp_path: Path) -> None:
    kept = regressions.HERE / name
    assert kept.read_bytes() == regressions.CASES[name](), "run python -m tests.regressions"
    audit_survives(kept.read_bytes(), tmp_path)
