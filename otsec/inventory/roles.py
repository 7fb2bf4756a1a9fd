"""Role guessing from behaviour: who serves the OT protocol, who polls, who programs."""

from __future__ import annotations

from collections import Counter

OT_SERVER_PROTOCOLS = {"modbus": "plc", "s7comm": "plc", "dnp3": "rtu", "iec104": "rtu",
                       "enip": "plc", "bacnet": "plc", "fins": "plc"}  # fmt: skip
OT_PROTOCOLS = set(OT_SERVER_PROTOCOLS)


def guess_role(
    evidence: Counter[str],
    services: set[tuple[str, int, str]],
    uses: set[tuple[str, int, str]],
) -> tuple[str, list[str]]:
    """Return the role and the evidence that led to it (kept for analysts)."""
    served = sorted({proto for _t, _p, proto in services if proto in OT_PROTOCOLS})
    used = sorted({proto for _t, _p, proto in uses if proto in OT_PROTOCOLS})
    notes: list[str] = []
    for name in ("modbus-server", "modbus-read", "modbus-write", "modbus-programming"):
        if evidence.get(name):
            notes.append(f"{name}: {evidence[name]} PDUs")
    if evidence.get("modbus-programming"):
        notes.insert(0, "sends programming commands (UMAS / programming function codes)")
        return "engineering_workstation", notes
    if served:
        notes.insert(0, f"serves {', '.join(served)}")
        return OT_SERVER_PROTOCOLS[served[0]], notes
    if used:
        notes.insert(0, f"polls {', '.join(used)} servers")
        return "hmi", notes
    if services or uses:
        names = sorted({proto for _t, _p, proto in services | uses})
        return "it_host", [f"IT traffic only: {', '.join(names)}"]
    return "unknown", notes
