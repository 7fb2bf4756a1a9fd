"""Role guessing from behaviour: who serves the OT protocol, who polls, who programs."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from otsec.protocols import SERVER_ROLES

if TYPE_CHECKING:
    from otsec.inventory.assets import Asset, HostRecord

OT_SERVER_ROLES = {**SERVER_ROLES, "iec104": "rtu", "enip": "plc", "bacnet": "plc",
                   "fins": "plc"}
OT_PROTOCOLS = set(OT_SERVER_ROLES)
HISTORIAN_MAX_RATE = 0.1  # requests per second: a historian reads, and not often
HISTORIAN_MIN_SPAN = 60.0  # seconds of activity before the rate means anything


def _reads_writes(evidence: Counter[str]) -> tuple[int, int]:
    """Read and write requests a host sent, over all protocols."""
    reads = sum(v for k, v in evidence.items() if k.endswith("-read"))
    return reads, sum(v for k, v in evidence.items() if k.endswith("-write"))


def guess_role(
    evidence: Counter[str],
    services: set[tuple[str, int, str]],
    uses: set[tuple[str, int, str]],
    span: float = 0.0,
) -> tuple[str, list[str]]:
    """Return the role and the evidence that led to it (kept for analysts)."""
    served = sorted({proto for _t, _p, proto in services if proto in OT_PROTOCOLS})
    notes = [f"{name}: {count} PDUs" for name, count in sorted(evidence.items())]
    programming = sorted(k for k in evidence if k.endswith("-programming"))
    if programming:
        notes.insert(0, "programs controllers (download/upload/stop/programming functions "
                        "the device accepted)")
        return "engineering_workstation", notes
    answering = sorted(k.split("-")[0] for k in evidence if k.endswith(("-server",
                                                                        "-outstation")))
    if answering or served:
        proto = (answering or served)[0]
        notes.insert(0, f"answers {', '.join(answering or served)} requests")
        return OT_SERVER_ROLES.get(proto, "plc"), notes
    reads, writes = _reads_writes(evidence)
    used = sorted({proto for _t, _p, proto in uses if proto in OT_PROTOCOLS})
    if reads and not writes and span >= HISTORIAN_MIN_SPAN and reads / span <= HISTORIAN_MAX_RATE:
        notes.insert(0, f"only reads, {reads} requests in {span:.0f} s (slow polling)")
        return "historian", notes
    if reads or writes or used:
        notes.insert(0, f"polls {', '.join(used) or 'OT'} servers"
                        + (" and writes" if writes else ""))
        return "hmi", notes
    if services or uses:
        names = sorted({proto for _t, _p, proto in services | uses})
        return "it_host", [f"IT traffic only: {', '.join(names)}"]
    return "unknown", notes


def role_for_rules(host: HostRecord | None, now: float) -> tuple[str | None, float]:
    """The role the evidence so far suggests for a host (None: no such host), and the
    earliest capture time at which the answer could change while the host's evidence
    kinds, services and uses stay as they are (the compiled core keeps the role until then
    or until those change). Only a station that only reads is decided by counts and time:
    a historian may become an HMI with its next read; an HMI that only reads cannot become
    a historian before its reads are slow enough over a long enough span."""
    if host is None:
        return None, math.inf  # its appearance is a change
    role = guess_role(host.evidence, host.services, host.uses,
                      host.last_seen - host.first_seen)[0]
    if role == "historian":
        return role, now
    reads, writes = _reads_writes(host.evidence)
    if role == "hmi" and reads and not writes:
        return role, host.first_seen + max(HISTORIAN_MIN_SPAN, reads / HISTORIAN_MAX_RATE)
    return role, math.inf


#: incident causes no ordinary operator station has; what the asset is flagged with
SUSPECT_CAUSES = {
    "program or mode change": "changed programs or operating modes",
    "loss of availability": "inhibited or flooded devices",
    "malformed traffic": "sent malformed protocol traffic",
}
SCAN_CATEGORIES = {"scan", "discovery"}


def flag_actors(assets: list[Asset], incident_docs: list[dict[str, Any]]) -> None:
    """Mark the assets that acted in incidents an operator station does not cause (scans,
    restarts, program changes); one acting as an HMI that way is not called an HMI."""
    by_ip = {ip: a for a in assets for ip in a.ips}
    for doc in incident_docs:
        inc = doc["otsec"]["incident"]
        asset = by_ip.get(inc["actor"])
        if asset is None or doc["event"]["severity"] < 2:  # low: what stations do daily
            continue
        if inc["actor"] == inc["target"]:  # what befell a device (it stopped answering)
            continue
        flag = SUSPECT_CAUSES.get(inc["cause"])
        if inc["cause"] == "discovery" and SCAN_CATEGORIES & set(doc["rule"]["category"]):
            flag = "scanned devices"
        if "otsec-baseline-rogue-master" in doc["rule"]["id"]:
            flag = "sent commands as a host the baseline does not know"
        if flag is None or flag in asset.flags:
            continue
        asset.flags.append(flag)
        if asset.role == "hmi":
            asset.role = "unknown"
            asset.role_evidence.insert(0, f"not an HMI: {flag} (see its incidents)")
