"""Detection: decides which events are notable and builds alerts from them."""

from __future__ import annotations

from collections.abc import Callable

from otsec.detect import dnp3, modbus, s7comm
from otsec.detect.alerts import Alert, AlertBook, Finding
from otsec.events import Anomaly, Dnp3Pdu, Event, ModbusPdu, S7Pdu, S7PlusPdu
from otsec.net.flows import Flow

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
        for finding in findings:
            self.book.add(finding)

    def on_flow_end(self, flow: Flow) -> None:
        pass

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        pass


__all__ = ["Alert", "Detector", "Finding"]
