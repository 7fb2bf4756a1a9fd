"""S7comm and S7comm-plus detections: which jobs and userdata requests match which rule."""

from __future__ import annotations

from otsec.detect.alerts import Finding
from otsec.detect.catalog import CATALOG
from otsec.events import MALFORMED, Anomaly, S7Pdu, S7PlusPdu
from otsec.graph.functions import S7_AREAS
from otsec.protocols.s7comm import DOWNLOAD, PI_SERVICE, PLC_STOP, PLUS_FUNCTIONS, UPLOAD, WRITE_VAR

PI_NAMES = {"P_PROGRAM": "start (P_PROGRAM)", "_GARB": "compress memory (_GARB)",
            "_MODU": "copy RAM to ROM (_MODU)", "_DELE": "delete block (_DELE)",
            "_INSE": "insert block (_INSE)"}  # fmt: skip
SECURITY_SUBS = {1: "set password", 2: "clear password"}
CLOCK_SUBS = {2: "set clock", 4: "set clock"}
FORCE_SUBS = {0x08: "modify variable", 0x09: "force", 0x0C: "memory reset"}
PLUS_OBJECT_OPS = frozenset({0x04CA, 0x04D4, 0x056B})


def reason(pdu: S7Pdu) -> str:
    """Why the PLC refused, from the answer's error class/code or item return code."""
    if pdu.error_class or pdu.error_code:
        return f"error class 0x{pdu.error_class or 0:02x} code 0x{pdu.error_code or 0:02x}"
    bad = [rc for rc in pdu.return_codes if rc != 0xFF]
    return f"return code 0x{bad[0]:02x}" if bad else ""


def _block(pdu: S7Pdu) -> str:
    if pdu.block_type is None:
        return ""
    return f"{pdu.block_type}{pdu.block_number if pdu.block_number is not None else ''}"


def _items(pdu: S7Pdu) -> str:
    parts = []
    for i in pdu.items[:4]:
        area = S7_AREAS.get(i.area, f"area 0x{i.area:02x}")
        where = f"DB{i.db}.DBX{i.byte}.{i.bit}" if i.area == 0x84 else f"{area}{i.byte}.{i.bit}"
        parts.append(where)
    more = f" and {len(pdu.items) - 4} more" if len(pdu.items) > 4 else ""
    return ", ".join(parts) + more


class S7Detector:
    def anomaly(self, anomaly: Anomaly) -> list[Finding]:
        if anomaly.kind not in MALFORMED:
            return []
        return [Finding(CATALOG["otsec-s7-malformed"], anomaly,
                        f"sent malformed S7 traffic ({anomaly.kind}: {anomaly.detail}) to",
                        key=(str(anomaly.kind),), answerable=False)]

    def pdu(self, pdu: S7Pdu) -> list[Finding]:
        out: list[Finding] = []
        bad = [a for a in pdu.anomalies if a in MALFORMED]
        if bad:
            out.append(Finding(CATALOG["otsec-s7-malformed"], pdu,
                               f"sent a malformed S7comm PDU ({', '.join(bad)}) to",
                               key=tuple(str(b) for b in bad), answerable=False))
        if pdu.rosctr == 1:
            self._job(pdu, out)
        elif pdu.rosctr == 7 and pdu.userdata_type == 4:
            self._userdata(pdu, out)
        return out

    def _job(self, pdu: S7Pdu, out: list[Finding]) -> None:
        fc = pdu.function_code
        if fc == PLC_STOP:
            out.append(Finding(CATALOG["otsec-s7-plc-stop"], pdu, "sent PLC STOP (0x29) to"))
        elif fc == PI_SERVICE:
            name = PI_NAMES.get(pdu.pi_service or "", pdu.pi_service or "?")
            block = _block(pdu)
            out.append(Finding(CATALOG["otsec-s7-pi-service"], pdu,
                               f"invoked PI service {name}{' on ' + block if block else ''} on",
                               key=(pdu.pi_service,)))
        elif fc in DOWNLOAD:
            # the PLC itself sends the download-block jobs to the station that programs it
            out.append(Finding(CATALOG["otsec-s7-download"], pdu,
                               "downloaded blocks {details} to", detail=_block(pdu),
                               swap=not pdu.from_client, answerable=pdu.from_client))
        elif fc in UPLOAD:
            out.append(Finding(CATALOG["otsec-s7-upload"], pdu,
                               "uploaded blocks {details} from", detail=_block(pdu)))
        elif fc == WRITE_VAR:
            out.append(Finding(CATALOG["otsec-s7-write"], pdu,
                               f"wrote {len(pdu.items)} variable(s) {_items(pdu)} on",
                               key=tuple(sorted({(i.area, i.db) for i in pdu.items}))))

    def _userdata(self, pdu: S7Pdu, out: list[Finding]) -> None:
        group, sub = pdu.group, pdu.subfunction
        if group == 5 and sub in SECURITY_SUBS:
            out.append(Finding(CATALOG["otsec-s7-password"], pdu,
                               f"sent '{SECURITY_SUBS[sub]}' to", key=(sub,)))
        elif group == 7 and sub in CLOCK_SUBS:
            out.append(Finding(CATALOG["otsec-s7-set-clock"], pdu, "set the clock of"))
        elif group == 1 and sub in FORCE_SUBS:
            out.append(Finding(CATALOG["otsec-s7-force"], pdu,
                               f"sent programmer command '{FORCE_SUBS[sub]}' to", key=(sub,)))
        elif group == 4 and sub == 1:
            label = f"0x{pdu.szl_id:04x}" if pdu.szl_id is not None else "?"
            out.append(Finding(CATALOG["otsec-s7-szl-read"], pdu,
                               "read system status lists {details} of", detail=label))
        elif group == 3:
            out.append(Finding(CATALOG["otsec-s7-block-info"], pdu,
                               "listed or described the program blocks of"))

    def plus(self, pdu: S7PlusPdu) -> list[Finding]:
        if pdu.direction != "request" or pdu.function_code not in PLUS_OBJECT_OPS:
            return []
        name = PLUS_FUNCTIONS[pdu.function_code]
        integrity = " (integrity-protected V3 session)" if pdu.integrity else ""
        return [Finding(CATALOG["otsec-s7plus-session"], pdu,
                        "ran S7comm-plus {details}" + integrity + " on", detail=name,
                        answerable=False)]
