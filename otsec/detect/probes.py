"""Floods and scans: the core reports each 10-second window of connection attempts that
crossed a line; this turns them into one alert per target (flood) or per source (scan)
whose count is the attempts so far."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from otsec.detect.alerts import Alert, Finding, Notice

if TYPE_CHECKING:
    from otsec.detect import Detector

FLOOD = "otsec-net-connection-flood"
SCAN = "otsec-net-scan"


@dataclass
class _Totals:
    attempts: int = 0
    peers: int = 0  # most sources of a flood, or targets of a scan, in one window
    first: float = 0.0
    last: float = 0.0
    hosts: int = 0
    ports: int = 0


class Probes:
    """Consumes the core's ``flood`` and ``scan`` facts."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector  # its catalogue and site policy, as they are now
        self.totals: dict[tuple[str, str, int], _Totals] = {}
        self.scanners: set[str] = set()

    def on_fact(self, fact: tuple) -> None:
        if fact[0] == "flood":
            _, server, port, flows, sources, first, last = fact
            t = self._totals(("flood", server, port), flows, sources, first, last)
            span = max(t.last - t.first, 0.0)
            action = (f"was flooded with new TCP connections on port {port} (from up to "
                      f"{t.peers:,} sources in 10 s) within {span:.0f} s")
            self._raise(FLOOD, server, port, action, t)
        elif fact[0] == "scan":
            _, source, targets, hosts, ports, first, last = fact
            t = self._totals(("scan", source, 0), targets, targets, first, last)
            t.hosts, t.ports = max(t.hosts, hosts), max(t.ports, ports)
            span = max(t.last - t.first, 0.0)
            self.scanners.add(source)
            action = (f"scanned the network: connections to distinct address and port pairs "
                      f"(up to {t.peers:,} pairs on {t.hosts:,} hosts and {t.ports:,} ports in "
                      f"10 s) within {span:.0f} s")
            self._raise(SCAN, source, None, action, t)

    def _totals(self, key: tuple[str, str, int], attempts: int, peers: int, first: float,
                last: float) -> _Totals:
        t = self.totals.get(key)
        if t is None:
            t = self.totals[key] = _Totals(first=first)
        t.attempts += attempts
        t.peers = max(t.peers, peers)
        t.last = max(t.last, last)
        return t

    def _raise(self, rule_id: str, address: str, port: int | None, action: str,
               t: _Totals) -> None:
        rule = self.detector.catalog.get(rule_id)
        if rule is None:  # a site's rules replaced the catalogue without it
            return
        notice = Notice(from_client=True, ts=t.first, protocol_name="tcp", source_ip=address,
                        destination_ip=address, destination_port=port, transport="tcp")
        alert = self.detector.add(Finding(rule, notice, action, key=(port,), answerable=False))
        if isinstance(alert, Alert):  # the text and count say the totals so far
            alert.action = action
            alert.count = t.attempts
            alert.end = max(alert.end, t.last)
