"""Devices that stop answering: the core finds each outage (requests left unanswered for
10 s by a device that answered before, or 3 connections refused to a client it served)
and its end; this raises one alert per device and
protocol, keeps the outages for the operations view, and says in the alert when the
device answered again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otsec.detect.alerts import Alert, Finding, Notice
from otsec.timefmt import iso

if TYPE_CHECKING:
    from otsec.detect import Detector

UNRESPONSIVE = "otsec-net-device-unresponsive"


@dataclass
class Outage:
    device: str
    protocol: str
    since: float  # the first request left unanswered
    found: float  # when it was called down
    requests: int  # left unanswered (so far, or in all)
    back: float | None = None  # when it answered again
    refused: int = 0  # connections refused (so far, or in all)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "protocol": self.protocol, "since": iso(self.since),
                "found": iso(self.found), "back": iso(self.back) if self.back else None,
                "seconds": round(self.back - self.since, 3) if self.back else None,
                "unanswered": self.requests, "refused": self.refused}


class Availability:
    """Consumes the core's ``down`` and ``up`` facts."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.outages: list[Outage] = []
        self._open: dict[tuple[str, str], tuple[Outage, Alert | None]] = {}

    def on_fact(self, fact: tuple[Any, ...]) -> None:
        kind, device, protocol, since, at, requests, refused = fact
        if kind == "down":
            outage = Outage(device, protocol, since, at, requests, refused=refused)
            self.outages.append(outage)
            self._open[(device, protocol)] = (outage, self._raise(outage))
            return
        outage, alert = self._open.pop((device, protocol), (None, None))
        if outage is None:
            return
        outage.back, outage.requests, outage.refused = at, requests, refused
        if alert is not None:
            alert.action = _action(outage)
            alert.end = max(alert.end, at)

    def _raise(self, outage: Outage) -> Alert | None:
        rule = self.detector.catalog.get(UNRESPONSIVE)
        if rule is None:  # a site's rules replaced the catalogue without it
            return None
        notice = Notice(from_client=False, ts=outage.found, protocol_name=outage.protocol,
                        source_ip=outage.device, destination_ip=outage.device)
        alert = self.detector.add(Finding(rule, notice, _action(outage), key=(outage.protocol,),
                                          answerable=False))
        return alert if isinstance(alert, Alert) else None


def _action(o: Outage) -> str:
    lost = [f"{o.requests} requests unanswered"] if o.requests or not o.refused else []
    if o.refused:
        lost.append(f"{o.refused} connections refused")
    text = f"stopped answering {o.protocol} ({', '.join(lost)} from {iso(o.since)})"
    if o.back is not None:
        text += f"; answered again after {o.back - o.since:.0f} s"
    return text
