"""File outputs: NDJSON streams and atomically written JSON documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from otsec.atomic import write_json_atomic  # noqa: F401 - re-exported
from otsec.events import Anomaly, Event
from tests.pyengine.documents import anomaly_document, pdu_line
from tests.pyengine.net.flows import Flow


class NdjsonWriter:
    """Buffered writer of one JSON document per line."""

    def __init__(self, path: Path, batch: int = 2048, append: bool = False) -> None:
        self.path = path
        # append: several writer processes share the file; each batch is one write()
        self._fh = open(path, "ab" if append else "wb")  # noqa: SIM115 - closed in close()
        self._buf: list[bytes] = []
        self._batch = batch
        self.count = 0

    def write(self, doc: dict[str, Any]) -> None:
        self.write_line(orjson.dumps(doc))

    def write_line(self, line: bytes) -> None:
        self._buf.append(line)
        self.count += 1
        if len(self._buf) >= self._batch:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._buf.append(b"")
            self._fh.write(b"\n".join(self._buf))
            self._buf.clear()
        self._fh.flush()

    def close(self) -> None:
        self.flush()
        self._fh.close()


class EventFiles:
    """Engine consumer writing events.ndjson (PDUs) and anomalies.ndjson.

    With ``pdus=False`` events.ndjson stays empty: long audits that only want alerts,
    inventory and graph skip the biggest file and a third of the work.
    """

    def __init__(self, out_dir: Path, pdus: bool = True, append: bool = False) -> None:
        self.events = NdjsonWriter(out_dir / "events.ndjson", append=append)
        self.anomalies = NdjsonWriter(out_dir / "anomalies.ndjson", append=append)
        self.pdus = pdus

    def on_event(self, event: Event) -> None:
        if type(event) is Anomaly:
            self.anomalies.write(anomaly_document(event))
        elif self.pdus:
            self.events.write_line(pdu_line(event))

    def on_flow_end(self, flow: Flow) -> None:
        pass

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        pass

    def close(self) -> None:
        self.events.close()
        self.anomalies.close()


def write_ndjson(path: Path, docs: list[dict[str, Any]]) -> None:
    with open(path, "wb") as fh:
        for doc in docs:
            fh.write(orjson.dumps(doc))
            fh.write(b"\n")
