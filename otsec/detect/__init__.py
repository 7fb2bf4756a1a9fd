"""Detection: decides which events are notable and builds alerts from them."""

from __future__ import annotations

from collections.abc import Callable

from otsec.baseline.model import Baseline
from otsec.detect import dnp3, modbus, s7comm
from otsec.detect.alerts import Alert, AlertBook, Finding
from otsec.detect.deviations import Deviations, event_edge
from otsec.events import Anomaly, Dnp3Pdu, Event, ModbusPdu, S7Pdu, S7PlusPdu
from otsec.graph.functions import describe
from otsec.net.flows import Flow

#: rule categories a learned function silences (scans and malformed traffic always alert)
CONTEXTUAL = frozenset({"write", "diagnostics", "recon", "programming", "operating-mode",
                        "control", "security", "alarm"})

REASONS: dict[type, Callable[[Event], str]] = {
    ModbusPdu: lambda e: modbus.exception_text(e.exception_code),  # type: ignore[attr-defined]
    S7Pdu: s7comm.reason,  # type: ignore[dict-item]
    Dnp3Pdu: dnp3.reason,  # type: ignore[dict-item]
}


class Detector:
    """Engine consumer: runs the protocol detectors and keeps the alert book."""

    def __init__(self, window: float = 3600.0) -> None:
        self.book = AlertBook(window=window)
        self.modbus = modbus.ModbusDetector()
        self.s7 = s7comm.S7Detector()
        self.dnp3 = dnp3.Dnp3Detector()
        self._pdu: dict[type, Callable[[Event], list[Finding]]] = {
            ModbusPdu: self.modbus.pdu,  # type: ignore[dict-item]
            S7Pdu: self.s7.pdu,  # type: ignore[dict-item]
            S7PlusPdu: self.s7.plus,  # type: ignore[dict-item]
            Dnp3Pdu: self.dnp3.pdu,  # type: ignore[dict-item]
        }
        self._anomaly = {"modbus": self.modbus.anomaly, "s7comm": self.s7.anomaly,
                         "dnp3": self.dnp3.anomaly}
        self.baseline: Baseline | None = None
        self.deviations: Deviations | None = None
        self.suppressed = 0

    def protect_with(self, baseline: Baseline, deviations: Deviations) -> None:
        """Findings about functions the baseline learned on that path stop alerting."""
        self.baseline = baseline
        self.deviations = deviations

    @property
    def alerts(self) -> list[Alert]:
        return self.book.alerts

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is Anomaly:
            check = self._anomaly.get(event.protocol_name)  # type: ignore[attr-defined]
            findings = check(event) if check else []  # type: ignore[arg-type]
        else:
            req = getattr(event, "request", None)
            if req is not None and req.accepted is not None:
                self.book.settle(req, req.accepted, REASONS[kind](event))
            handler = self._pdu.get(kind)
            findings = handler(event) if handler else []
            if findings:
                findings = self._in_context(event, findings)
        for finding in findings:
            self.book.add(finding)

    def _in_context(self, event: Event, findings: list[Finding]) -> list[Finding]:
        """Attach what approving would learn; drop what the baseline already learned."""
        use = describe(event)
        if use is None:
            return findings
        key = event_edge(event)[0]
        payload = {"kind": "function", "edge": key, "direction": event.direction,
                   "code": use.code}
        learned = (self.baseline is not None and self.deviations is not None
                   and self.deviations.protecting(event.ts)
                   and self.baseline.knows_function(key, event.direction, use.code))
        kept = []
        for f in findings:
            if f.rule.category in CONTEXTUAL and not f.swap:
                if learned:
                    self.suppressed += 1
                    continue
                if f.approve is None:
                    f.approve = payload
            kept.append(f)
        return kept

    def on_flow_end(self, flow: Flow) -> None:
        pass

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        pass


__all__ = ["Alert", "Detector", "Finding"]
