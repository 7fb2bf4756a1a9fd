"""Detection: decides which events are notable and builds alerts from them."""

from __future__ import annotations

from otsec.detect.alerts import Alert, AlertBook, Finding
from otsec.detect.modbus import ModbusDetector, exception_text
from otsec.events import Anomaly, Event, ModbusPdu
from otsec.net.flows import Flow


class Detector:
    """Engine consumer: runs the protocol detectors and keeps the alert book."""

    def __init__(self, window: float = 3600.0) -> None:
        self.book = AlertBook(window=window)
        self.modbus = ModbusDetector()

    @property
    def alerts(self) -> list[Alert]:
        return self.book.alerts

    def on_event(self, event: Event) -> None:
        findings: list[Finding]
        if type(event) is ModbusPdu:
            req = event.request
            if req is not None:
                self.book.settle(req, event.exception_code is None,
                                 exception_text(event.exception_code))
            findings = self.modbus.pdu(event)
        elif type(event) is Anomaly and event.protocol_name == "modbus":
            findings = self.modbus.anomaly(event)
        else:
            return
        for finding in findings:
            self.book.add(finding)

    def on_flow_end(self, flow: Flow) -> None:
        pass

    def on_arp(self, mac: bytes, ip: bytes, ts: float) -> None:
        pass


__all__ = ["Alert", "Detector", "Finding"]
