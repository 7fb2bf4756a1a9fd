"""DNP3 detections: dangerous application functions, broadcasts and unsupported sweeps."""

from __future__ import annotations

from otsec.detect.alerts import Finding
from otsec.detect.catalog import CATALOG
from otsec.detect.window import Threshold
from otsec.events import MALFORMED, Anomaly, Dnp3Pdu
from otsec.protocols.dnp3 import FUNCTION_NAMES

STARTUP_REQUESTS = 4  # a master's first requests on a connection (integrity poll, FC 21/20/2)
IIN2_ERRORS = 0x0007  # function not supported, object unknown, parameter error
CONTROL_GROUPS = frozenset({12, 41})
IIN_GROUP = 80


def reason(pdu: Dnp3Pdu) -> str:
    iin = pdu.iin or 0
    bits = [name for bit, name in ((1, "function not supported"), (2, "object unknown"),
                                   (4, "parameter error")) if iin & bit]
    return ", ".join(bits)


class Dnp3Detector:
    def __init__(self) -> None:
        self.sweep = Threshold(3)
        self.requests: dict[int, int] = {}  # id(flow) -> requests seen (start-up context)

    def anomaly(self, anomaly: Anomaly) -> list[Finding]:
        if anomaly.kind not in MALFORMED:
            return []
        return [Finding(CATALOG["otsec-dnp3-malformed"], anomaly,
                        f"sent malformed DNP3 ({anomaly.kind}: {anomaly.detail}) to",
                        key=(str(anomaly.kind),), answerable=False)]

    def pdu(self, pdu: Dnp3Pdu) -> list[Finding]:
        out: list[Finding] = []
        bad = [a for a in pdu.anomalies if a in MALFORMED]
        if bad:
            out.append(Finding(CATALOG["otsec-dnp3-malformed"], pdu,
                               f"sent a malformed DNP3 fragment ({', '.join(bad)}) to",
                               key=tuple(str(b) for b in bad), answerable=False))
        fc = pdu.function_code
        if fc >= 0x80:
            req = pdu.request
            routine = req is not None and req.function_code in (20, 21)  # no unsolicited support
            if pdu.iin and pdu.iin & IIN2_ERRORS and pdu.flow is not None and not routine:
                master = pdu.flow.ip_texts[pdu.flow.sender(not pdu.from_client)]
                if self.sweep.hit(master, pdu.ts):
                    out.append(Finding(CATALOG["otsec-dnp3-unsupported-sweep"], pdu,
                                       f"drew repeated '{reason(pdu)}' responses from",
                                       answerable=False, swap=True))
            return out
        target = f"outstation {pdu.destination_address}"
        name = FUNCTION_NAMES.get(fc, f"function {fc}")
        if pdu.destination_address >= 0xFFFD:
            out.append(Finding(CATALOG["otsec-dnp3-broadcast"], pdu,
                               f"broadcast '{name}' (FC {fc}) to", target="broadcast",
                               answerable=False))
        rank = self._count(pdu)
        groups = {o.group for o in pdu.objects}
        rule = None
        if fc in (13, 14):
            rule = "otsec-dnp3-restart"
        elif fc in (16, 17, 18):
            rule = "otsec-dnp3-application"
        elif fc == 21 and rank > STARTUP_REQUESTS:
            rule = "otsec-dnp3-disable-unsolicited"
        elif fc == 2 and groups - {IIN_GROUP}:
            rule = "otsec-dnp3-write"
        elif fc in (3, 4, 5, 6) and groups & CONTROL_GROUPS:
            rule = "otsec-dnp3-control"
        elif 7 <= fc <= 12:
            rule = "otsec-dnp3-freeze"
        elif 25 <= fc <= 31 or fc in (15, 19):
            rule = "otsec-dnp3-file-config"
        if rule is not None:
            objects = ", ".join(f"g{o.group}v{o.variation}" for o in pdu.objects[:4])
            on = f" on {objects}" if objects else ""
            out.append(Finding(CATALOG[rule], pdu, f"sent '{name}' (FC {fc}){on} to",
                               key=(fc,), target=target,
                               answerable=fc not in (6, 8, 10, 12)))  # "no ack" variants
        return out

    def _count(self, pdu: Dnp3Pdu) -> int:
        key = id(pdu.flow)
        if len(self.requests) > 50_000:
            self.requests.clear()
        self.requests[key] = n = self.requests.get(key, 0) + 1
        return n
