"""The terminal summary printed after an audit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from otsec.detect.catalog import SEVERITY_NAMES
from otsec.text import printable, shown

if TYPE_CHECKING:
    from otsec.summary import AuditResult

SEVERITY_STYLE = {1: "cyan", 2: "yellow", 3: "red", 4: "bold white on red"}


def print_summary(result: AuditResult, console: Console, max_alerts: int = 20) -> None:
    s = result.summary
    table = Table(title="otsec audit", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    if "sensor" in s:
        table.add_row("sensor", f"{printable(s['sensor']['name'])} (site "
                      f"{printable(s['sensor']['site'])})")
    table.add_row("packets", f"{s['packets']:,}")
    table.add_row("flows", f"{s['flows']:,}")
    for proto, n in s["pdus"].items():
        table.add_row(f"{proto} PDUs", f"{n:,}")
    framing, in_pdus = sum(s["anomalies"].values()), sum(s.get("pdu_anomalies", {}).values())
    table.add_row("parse anomalies", f"{framing + in_pdus:,}"
                  + (f" ({in_pdus:,} in parsed PDUs)" if in_pdus else ""))
    table.add_row("assets", ", ".join(f"{k} {v}" for k, v in s["assets"]["by_role"].items())
                  or "0")
    table.add_row("edges", f"{s['edges']:,}")
    for what in ("incidents", "alerts"):
        if what in s:
            table.add_row(what, " / ".join(f"{k} {s[what][k]}"
                                           for k in ("critical", "high", "medium", "low")))
    ops = s.get("operations")
    if ops and ops["requests"]:
        slowest = ops["slowest"][0] if ops["slowest"] else None
        table.add_row("requests", f"{ops['requests']:,}, {ops['unanswered']:,} unanswered, "
                      f"{ops['exceptions']:,} exceptions")
        tcp = ops.get("tcp")
        if tcp and any(tcp.values()):
            table.add_row("TCP", f"{tcp['connections']:,} connections, {tcp['resets']:,} "
                          f"resets, {tcp['retransmissions']:,} retransmissions, "
                          f"{tcp['zero_windows']:,} zero windows")
        if slowest:
            table.add_row("slowest answers", shown(f"{slowest['server']}: p95 "
                                                   f"{slowest['p95_ms']:.1f} ms"))
    if ops and ops.get("outages"):
        table.add_row("stopped answering", shown(", ".join(
            f"{o['device']} ({o['protocol']}, "
            + (f"{o['seconds']:.0f} s" if o["back"] else "still at the end") + ")"
            for o in ops["outages"][:5])))
    if ops and ops.get("points", {}).get("total"):
        p = ops["points"]
        table.add_row("process values", f"{p['total']:,} points, {p['written']:,} written, "
                      f"{p['changing']:,} changing")
    table.add_row("capture span", f"{s['duration']:.1f} s")
    table.add_row("processing", f"{s['processing_seconds']:.2f} s "
                  f"({s['packets_per_second']:,} packets/s)")
    console.print(table)
    if result.incident_docs:
        incidents = Table(title="incidents: the alerts of one actor, target and cause "
                                "(most severe first)")
        incidents.add_column("severity")
        incidents.add_column("who, what, the worst finding", ratio=2, min_width=30)
        incidents.add_column("rules", ratio=1, min_width=26, overflow="fold")
        ranked = sorted(result.incident_docs, key=lambda d: -d["event"]["severity"])
        for d in ranked[:max_alerts]:
            inc, sev = d["otsec"]["incident"], d["event"]["severity"]
            target = "" if inc["target"] == inc["actor"] else f" -> {inc['target']}"
            what = Text(printable(inc["actor"] + target) + "\n", style="bold")
            what.append(printable(inc["cause"]) + "\n", style="italic")
            what.append(printable(inc["worst"]))
            incidents.add_row(Text(SEVERITY_NAMES[sev], style=SEVERITY_STYLE[sev]), what,
                              Text("\n".join(printable(r) for r in sorted(set(d["rule"]["id"])))))
        more = f"{len(ranked) - max_alerts} more incidents; " if len(ranked) > max_alerts \
            else ""
        incidents.caption = f"{more}{len(result.alerts)} alerts in alerts.ndjson"
        console.print(incidents)
    for w in result.warnings:
        console.print(Text("warning: ", style="yellow") + shown(w, 4096))
    console.print(shown(f"outputs in {result.out_dir}/", 4096))
