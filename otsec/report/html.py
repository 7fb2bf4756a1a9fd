"""report.html: one self-contained page (inline CSS and SVG) for a person to read."""

from __future__ import annotations

import html
import ipaddress
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otsec.detect.catalog import SEVERITY_NAMES
from otsec.graph.edges import Edge
from otsec.process import number
from otsec.protocols import COLOURS, RECORDS
from otsec.sinks.documents import display_name
from otsec.text import CONTROL_CHARS, MAX_SHOWN, printable
from otsec.timefmt import epoch, iso

if TYPE_CHECKING:
    from otsec.inventory.assets import Asset
    from otsec.summary import AuditResult

ROLE_COLOURS = {
    "plc": "#d9534f", "rtu": "#f0ad4e", "hmi": "#5bc0de", "engineering_workstation": "#9b59b6",
    "historian": "#5cb85c", "it_host": "#999999", "unknown": "#cccccc",
}  # fmt: skip
MAX_NODES = 150  # beyond this the picture shows the OT assets and the busiest others
LABEL_WIDTH = 150  # pixels a node and its label take in a row
MAX_EDGE_ROWS = 300  # rows of the edge tables; edges.json has them all
MAX_ASSET_ROWS = 500  # rows of the inventory; assets.json has them all
ROW_HEIGHT = 70
SEVERITY_COLOURS = {1: "#5bc0de", 2: "#f0ad4e", 3: "#d9534f", 4: "#8b0000"}
CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:14px;width:100%}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.cards{display:flex;gap:1em;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.6em}.sev{color:#fff;padding:1px 6px;border-radius:3px}
svg{border:1px solid #ddd;background:#fcfcfc;max-width:100%}
th.sortable{cursor:pointer}th.sortable:after{content:" \\2195";color:#aaa}
.matrix td{text-align:center}.w{background:#f8d7da}.hot{stroke:#d00;stroke-width:3}
.wide{overflow-x:auto;max-width:100%}td{overflow-wrap:anywhere}
"""
SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (t) {
  t.querySelectorAll('th').forEach(function (th, i) {
    th.classList.add('sortable');
    th.addEventListener('click', function () {
      var rows = Array.from(t.querySelectorAll('tr')).slice(1);
      var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
      rows.sort(function (a, b) {
        var x = a.cells[i].innerText, y = b.cells[i].innerText;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { t.appendChild(r); });
    });
  });
});
document.querySelectorAll('svg.zoom').forEach(function (svg) {
  var vb = svg.viewBox.baseVal, drag = null;
  svg.addEventListener('wheel', function (e) {
    e.preventDefault();
    var k = e.deltaY > 0 ? 1.15 : 1 / 1.15, r = svg.getBoundingClientRect();
    var px = vb.x + (e.clientX - r.left) / r.width * vb.width;
    var py = vb.y + (e.clientY - r.top) / r.height * vb.height;
    vb.x = px - (px - vb.x) * k; vb.y = py - (py - vb.y) * k;
    vb.width *= k; vb.height *= k;
  });
  svg.addEventListener('mousedown', function (e) { drag = [e.clientX, e.clientY]; });
  window.addEventListener('mouseup', function () { drag = null; });
  svg.addEventListener('mousemove', function (e) {
    if (!drag) return;
    var r = svg.getBoundingClientRect();
    vb.x -= (e.clientX - drag[0]) / r.width * vb.width;
    vb.y -= (e.clientY - drag[1]) / r.height * vb.height;
    drag = [e.clientX, e.clientY];
  });
});
"""
PROTOCOL_COLOURS = COLOURS


def _e(value: Any) -> str:
    """Escaped for HTML, controls spelled out, length bounded (names come off the wire).
    A report names the same addresses, rules and times thousands of times: each text is
    escaped once."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    done = _escaped.get(text)
    if done is None:
        # most names and addresses need nothing: one scan to know it
        done = (text if len(text) <= MAX_SHOWN and not _SPECIAL.search(text)
                else html.escape(printable(text)))
        if len(_escaped) >= 65_536:
            _escaped.clear()
        _escaped[text] = done
    return done


_escaped: dict[str, str] = {}


_SPECIAL = re.compile(f"[&<>\"'{CONTROL_CHARS}]")


#: rows of the graph, top to bottom: who programs, who supervises, what controls
LEVELS = {"engineering_workstation": 0, "it_host": 0, "unknown": 0, "hmi": 1, "historian": 1,
          "plc": 2, "rtu": 2}


def _layers(nodes: list[str], roles: dict[str, str], order: dict[str, tuple],
            per_row: int) -> tuple[dict[str, tuple[float, float]], int]:
    """Positions in [-1, 1] and the number of rows: one band per level (controllers,
    supervisory, engineering, IT), in address order so that a subnet stays together,
    wrapped into rows of at most ``per_row`` nodes so that labels keep their room."""
    bands: dict[int, list[str]] = {}
    for n in nodes:
        bands.setdefault(LEVELS.get(roles[n], 0), []).append(n)
    rows: list[list[str]] = []
    for level in sorted(bands):
        band = sorted(bands[level], key=lambda n: order.get(n, (2, n)))
        rows += [band[i:i + per_row] for i in range(0, len(band), per_row)]
    pos: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        y = -1 + 2 * (r + 0.5) / len(rows)
        shift = 0.5 if r % 2 and len(row) == per_row else 0.0
        for i, n in enumerate(row):
            pos[n] = (-1 + 2 * (i + 0.5 + shift / 2) / len(row), y)
    return pos, len(rows)


def _address_order(ip: str) -> tuple:
    """IPv4 in numeric order, then IPv6, then anything else."""
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return (4, tuple(map(int, parts)), ip)
    try:
        return (6, int(ipaddress.IPv6Address(ip)), ip)
    except ValueError:
        return (7, 0, ip)


def _graph_svg(result: AuditResult, width: int = 1100) -> str:
    assets = result.asset_by_id
    keep = _busiest(result, MAX_NODES)
    edges: list[Edge] = [e for e in result.edges if e.client in keep and e.server in keep]
    nodes = sorted(keep | {e.client for e in edges} | {e.server for e in edges})
    if not nodes:
        return "<p>No communication seen.</p>"
    pad = 60
    order = {n: _address_order(assets[n].ips[0]) for n in nodes
             if n in assets and assets[n].ips}
    pos, rows = _layers(nodes, {n: assets[n].role if n in assets else "unknown" for n in nodes},
                        order, per_row=max(1, (width - 4 * pad) // LABEL_WIDTH))
    height = max(360, rows * ROW_HEIGHT + 2 * pad)

    def xy(node: str) -> tuple[float, float]:  # room on the right for the labels
        x, y = pos[node]
        return pad + (x + 1) / 2 * (width - 4 * pad), pad + (y + 1) / 2 * (height - 2 * pad)

    hot = {ip for a in result.alerts if a["event"]["severity"] >= 3
           for ip in (a.get("source", {}).get("ip"),)}
    new_paths = {(a["source"].get("ip"), a["destination"].get("ip")) for a in result.alerts
                 if a["rule"]["id"] == "otsec-baseline-new-edge"}
    ip_of = {a.id: a.ips[0] for a in result.assets if a.ips}
    parts = [f'<svg class="zoom" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg" role="img" '
             'aria-label="communication graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="18" refY="5" markerWidth="6" '
             'markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker>'
             '</defs>']
    for e in edges:
        (x1, y1), (x2, y2) = xy(e.client), xy(e.server)
        colour = PROTOCOL_COLOURS.get(e.protocol, "#888")
        funcs = ", ".join(f"{e.names.get(c, c)}" for (c, d), _n in sorted(e.functions.items())
                          if d == "request")
        parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                     f'stroke="{colour}" stroke-width="{3 if e.writes else 1.5}" '
                     + ('stroke-dasharray="6 4" ' if (ip_of.get(e.client, e.client),
                                                      ip_of.get(e.server, e.server)) in new_paths
                        else "")
                     + 'marker-end="url(#arrow)">'
                     f'<title>{_e(e.protocol)}/{e.port}: {e.pdus} PDUs, {e.writes} writes; '
                     f'{_e(funcs)}</title></line>')
    for node in nodes:
        x, y = xy(node)
        asset = assets.get(node)
        role = asset.role if asset else "unknown"
        label = display_name(asset) if asset else node
        ring = ' class="hot"' if asset and hot & set(asset.ips) else ' stroke="#333"'
        shape = (f'<rect x="{x - 9:.1f}" y="{y - 9:.1f}" width="18" height="18"'
                 if role in ("plc", "rtu") else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9"')
        parts.append(f'{shape} fill="{ROLE_COLOURS[role]}"{ring}>'
                     f'<title>{_e(label)} ({_e(role)})</title></{shape.split()[0][1:]}>'
                     f'<text x="{x + 12:.1f}" y="{y + 4:.1f}" font-size="11">'
                     f'{_e(label if len(label) <= 22 else label[:21] + "…")}</text>')
    parts.append("</svg>")
    legend = " ".join(f'<span class="sev" style="background:{c}">{_e(r)}</span>'
                      for r, c in ROLE_COLOURS.items())
    protocols = " ".join(f'<span style="color:{c}">&#9473; {_e(p)}</span>'
                         for p, c in PROTOCOL_COLOURS.items())
    return ("".join(parts) + f"<p>{legend}<br>{protocols}; squares: controllers; red ring: "
            "source of a high or critical alert; thick: writes; dashed: not in the baseline. "
            "Scroll to zoom, drag to pan.</p>")


def _timeline(result: AuditResult, width: int = 900, height: int = 90) -> str:
    """Alerts on a time axis, one dot per alert, coloured by severity."""
    alerts = result.alerts
    if not alerts:
        return ""
    times = [epoch(a["event"]["start"]) for a in alerts]
    lo, hi = min(times), max(times)
    span = max(hi - lo, 1.0)
    dots = []
    for a, ts in zip(alerts, times, strict=True):
        x = 20 + (ts - lo) / span * (width - 40)
        y = height - 20 - a["event"]["severity"] * 14
        dots.append(f'<circle cx="{x:.1f}" cy="{y}" r="5" '
                    f'fill="{SEVERITY_COLOURS[a["event"]["severity"]]}"><title>'
                    f'{_e(a["event"]["start"])} {_e(a["message"])}</title></circle>')
    axis = (f'<line x1="20" y1="{height - 15}" x2="{width - 20}" y2="{height - 15}" '
            'stroke="#999"/>'
            f'<text x="20" y="{height - 2}" font-size="10">{_e(alerts[0]["event"]["start"])}'
            f'</text><text x="{width - 20}" y="{height - 2}" font-size="10" '
            f'text-anchor="end">{_e(max(a["event"]["start"] for a in alerts))}</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg" id="timeline">{axis}{"".join(dots)}</svg>')


def _host_cells(result: AuditResult, edges: list[Edge]) -> dict[str, str]:
    """Table cells naming the hosts of ``edges`` by name and IP, their asset id (often a
    MAC) in a tooltip."""
    wanted = {e.client for e in edges} | {e.server for e in edges}
    return {a.id: f"<td title='{_e(a.id)}'>{_e(display_name(a))}</td>" for a in result.assets
            if a.id in wanted}


def _host(cells: dict[str, str], asset_id: str) -> str:
    return cells.get(asset_id) or f"<td>{_e(asset_id)}</td>"


def _matrix(shown: list[Edge], hosts: dict[str, str]) -> str:
    """Who asks what: request function codes per edge; writes shaded."""
    edges = [e for e in shown if e.pdus]
    if not edges:
        return "<p>No application traffic.</p>"
    codes = sorted({(e.protocol, c) for e in edges for (c, d) in e.functions if d == "request"})
    column = {key: i for i, key in enumerate(codes)}
    names = {c: n for e in edges for c, n in e.names.items()}
    head = "".join(f"<th>{_e(names.get(c, c))}<br><small>{_e(p)} {c}</small></th>"
                   for p, c in codes)
    rows = []
    for e in edges:
        row = ["<td></td>"] * len(codes)
        writes = WRITE_CODES.get(e.protocol, ())
        for (c, d), n in e.functions.items():
            if d == "request" and n:
                cls = " class='w'" if c in writes else ""
                row[column[(e.protocol, c)]] = f"<td{cls}>{n}</td>"
        rows.append(f"<tr>{_host(hosts, e.client)}{_host(hosts, e.server)}"
                    f"<td>{_e(e.protocol)}</td>{''.join(row)}</tr>")
    return (f"<div class='wide'><table class='sortable matrix' id='matrix'><tr><th>client</th>"
            f"<th>server</th><th>protocol</th>{head}</tr>{''.join(rows)}</table></div>")


def _busiest(result: AuditResult, limit: int) -> set[str]:
    """The nodes worth drawing: OT assets first, then the most connected ones."""
    ranked = sorted(result.assets, key=lambda a: (a.role in ("it_host", "unknown"),
                                                  -len(a.peers), a.id))
    return {a.id for a in ranked[:limit]}


def render(result: AuditResult) -> str:
    s = result.summary
    cards = [("packets", s["packets"]), ("flows", s["flows"]),
             ("PDUs", sum(s["pdus"].values())), ("assets", s["assets"]["total"]),
             ("edges", s["edges"]), ("alerts", s["alerts"]["total"])]
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>otsec audit report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>otsec audit report</h1>",
        f"<p class='sub'>{_e(', '.join(s['files']))}<br>capture {_e(s['capture']['start'])} "
        f"to {_e(s['capture']['end'])} ({s['duration']:.1f} s){_sensor(s)}</p>",
        "<div class='cards'>",
        *(f"<div class='card'><b>{v}</b>{_e(k)}</div>" for k, v in cards),
        "</div>",
        "<h2>Alerts by severity</h2><p>",
        " ".join(f"<span class='sev' style='background:{SEVERITY_COLOURS[i + 1]}'>"
                 f"{name}: {s['alerts'][name]}</span>"
                 for i, name in enumerate(("low", "medium", "high", "critical"))),
        "</p><p>Protocols: " + _e(", ".join(f"{k} {v} PDUs" for k, v in s["pdus"].items())
                                  or "none dissected")
        + "<br>Assets by role: " + _e(", ".join(f"{k} {v}" for k, v in
                                               s["assets"]["by_role"].items()) or "none"),
        "</p><h2>Communication graph</h2>",
        _graph_svg(result),
        "<h2>Alert timeline</h2>",
        _timeline(result) or "<p>No alerts.</p>",
        _changes(result),
        _incidents(result),
        _operations(result),
        "<h2>Alerts</h2>",
    ]
    if result.alerts:
        out.append("<table id='alerts' class='sortable'><tr><th>time</th><th>severity</th>"
                   "<th>rule</th>"
                   "<th>ATT&amp;CK</th><th>count</th><th>message</th></tr>")
        for a in result.alerts:
            ev = a["event"]
            techs = ", ".join(
                f"<a href='{_e(url)}'>{_e(tid)}</a>"
                for tid, url in zip(a["threat"]["technique"]["id"],
                                    a["threat"]["technique"]["reference"], strict=True))
            out.append(
                f"<tr><td>{_e(ev['start'])}</td><td><span class='sev' style='background:"
                f"{SEVERITY_COLOURS[ev['severity']]}'>{_e(a['tags'][-1])}</span></td>"
                f"<td>{_e(a['rule']['name'])}</td><td>{techs}</td>"
                f"<td>{a['otsec']['alert']['count']}</td><td>{_e(a['message'])}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No alerts.</p>")
    out.append("<h2>Asset inventory</h2><table id='assets' class='sortable'><tr><th>asset</th>"
               "<th>role</th>"
               "<th>IP</th><th>MAC</th><th>vendor / model / firmware</th><th>services</th>"
               "<th>first seen</th><th>last seen</th></tr>")
    shown = _shown_assets(result)
    for asset in shown:
        ident = asset.identity
        device = " / ".join(x for x in (ident.manufacturer, ident.model_name or
                                        ident.model_identifier, ident.firmware_version) if x)
        services = ", ".join(f"{p}/{t} {n}" for t, p, n in asset.services)
        out.append(f"<tr><td>{_e(asset.id)}</td><td>{_e(asset.role)}</td>"
                   f"<td>{_e(', '.join(asset.ips))}</td><td>{_e(', '.join(asset.macs))}</td>"
                   f"<td>{_e(device)}</td><td>{_e(services)}</td>"
                   f"<td>{_e(iso(asset.first_seen))}</td><td>{_e(iso(asset.last_seen))}</td></tr>")
    busiest = _busiest_edges(result)
    hosts = _host_cells(result, busiest)
    out.append(f"</table>{_more(len(result.assets) - len(shown), 'asset')}<h2>Who asks what</h2>"
               + _matrix(busiest, hosts) + _more(len(result.edges) - len(busiest)))
    out.append("<h2>Edges</h2><table id='edges' class='sortable'><tr><th>client</th><th>server</th>"
               "<th>protocol</th><th>packets</th><th>PDUs</th><th>functions</th>"
               "<th>writes</th></tr>")
    for e in busiest:
        funcs = ", ".join(f"{code}{'' if d == 'request' else ' (resp)'}×{n}"
                          for (code, d), n in sorted(e.functions.items()))
        out.append(f"<tr>{_host(hosts, e.client)}{_host(hosts, e.server)}"
                   f"<td>{_e(e.protocol)}/{e.transport} {e.port}</td><td>{e.packets}</td>"
                   f"<td>{e.pdus}</td><td>{_e(funcs)}</td><td>{e.writes}</td></tr>")
    out.append(f"</table>{_more(len(result.edges) - len(busiest))}<script>{SCRIPT}</script>"
               "</body></html>")
    return "\n".join(out)


def _shown_assets(result: AuditResult) -> list[Asset]:
    """The assets a person reads: all of a plant's; of a large network, the OT devices
    first, then the hosts with the most traffic."""
    if len(result.assets) <= MAX_ASSET_ROWS:
        return result.assets
    ranked = sorted(result.assets, key=lambda a: (a.role in ("it_host", "unknown"),
                                                  -a.packets, a.id))[:MAX_ASSET_ROWS]
    keep = {id(a) for a in ranked}
    return [a for a in result.assets if id(a) in keep]  # in the inventory's order


def _busiest_edges(result: AuditResult) -> list[Edge]:
    """The edges a person reads: all of a plant's, the busiest of a large network's."""
    if len(result.edges) <= MAX_EDGE_ROWS:
        return result.edges
    return sorted(result.edges, key=lambda e: (-e.pdus, -e.packets, e.key))[:MAX_EDGE_ROWS]


def _more(n: int, what: str = "edge") -> str:
    return (f"<p>{n:,} quieter {what}s are left out here: every {what} is in {what}s.json.</p>"
            if n > 0 else "")


def _operations(result: AuditResult) -> str:
    """How the process network is doing: requests and answers, the slowest devices, the
    polling cycles, devices that stopped answering, and the process values written."""
    ops = result.summary.get("operations")
    if not ops or not (ops["requests"] or ops.get("outages")):
        return ""
    series = _minutes(result.metrics)
    slowest = "".join(
        f"<tr><td>{_e(o['client'])}</td><td>{_e(o['server'])}</td>"
        f"<td>{_e(o['protocol'])}/{o['port']}</td><td>{o['p95_ms']:.1f}</td>"
        f"<td>{_sparkline(series.get(_edge(o), {}).get('p95', []))}</td></tr>"
        for o in ops["slowest"])
    polling = "".join(
        f"<tr><td>{_e(o['client'])}</td><td>{_e(o['server'])}</td>"
        f"<td>{_e(o['protocol'])}/{o['port']}</td><td>{o['period_ms']:.1f}</td>"
        f"<td>{o['jitter_ms']:.1f}</td>"
        f"<td>{_sparkline(series.get(_edge(o), {}).get('period', []))}</td></tr>"
        for o in ops.get("polling", []))
    tcp = ops.get("tcp") or {}
    health = (f" Their TCP connections: {tcp['connections']:,} opened, {tcp['resets']:,} "
              f"reset, {tcp['retransmissions']:,} segments sent again, "
              f"{tcp['zero_windows']:,} zero windows." if tcp else "")
    return (f"<h2>Operations</h2><p>{ops['requests']:,} requests, {ops['responses']:,} "
            f"responses ({ops['exceptions']:,} exceptions), {ops['unanswered']:,} never "
            f"answered.{health} Per edge and minute in metrics.ndjson.</p>"
            "<table id='slowest' class='sortable'><tr><th>client</th><th>server</th>"
            "<th>protocol</th><th>slowest minute's p95 response time (ms)</th><th>p95 per "
            f"minute</th></tr>{slowest}</table>"
            + (("<h3>Polling cycles</h3><table id='polling' class='sortable'><tr><th>client"
                "</th><th>server</th><th>protocol</th><th>period (ms)</th><th>worst "
                "minute's jitter (ms)</th><th>period per minute</th></tr>"
                f"{polling}</table>") if polling else "")
            + _outages(result, ops.get("outages", []))
            + _points(result))


def _edge(o: dict[str, Any]) -> tuple:
    return (o["client"], o["server"], o["port"], o["protocol"])


def _minutes(rows: list[tuple]) -> dict[tuple, dict[str, list[tuple[float, float]]]]:
    """Per edge, the p95 response time and the polling period of each minute (ms)."""
    out: dict[tuple, dict[str, list[tuple[float, float]]]] = {}
    for (client, server, _t, port, proto), start, _counts, times, cycle, *_ in rows:
        edge = out.setdefault((client, server, port, proto), {"p95": [], "period": []})
        if times[1] is not None:
            edge["p95"].append((start, times[1] * 1000))
        if cycle[0] is not None:
            edge["period"].append((start, cycle[0] * 1000))
    return out


def _outages(result: AuditResult, outages: list[dict]) -> str:
    """Devices that stopped answering, each on a timeline of the capture."""
    if not outages:
        return ""
    cap = result.summary["capture"]
    start, end = (epoch(cap["start"]), epoch(cap["end"])) if cap["start"] else (0.0, 1.0)
    span = max(end - start, 1e-9)
    rows = []
    for o in outages:
        a = (epoch(o["since"]) - start) / span * 300
        b = ((epoch(o["back"]) if o["back"] else end) - start) / span * 300
        bar = (f"<svg width='300' height='12' role='img'><rect width='300' height='12' "
               f"fill='#cde8cd'/><rect x='{a:.1f}' width='{max(b - a, 1):.1f}' height='12' "
               "fill='#d62728'/></svg>")
        back = _e(o["back"]) if o["back"] else "not during the capture"
        rows.append(f"<tr><td>{_e(o['device'])}</td><td>{_e(o['protocol'])}</td>"
                    f"<td>{_e(o['since'])}</td><td>{back}</td><td>{o['unanswered']}</td>"
                    f"<td>{bar}</td></tr>")
    return ("<h3>Devices that stopped answering</h3><table id='outages'><tr><th>device</th>"
            "<th>protocol</th><th>unanswered from</th><th>answered again</th><th>requests "
            "unanswered</th><th>capture timeline (red: not answering)</th></tr>"
            + "".join(rows) + "</table>")


def _points(result: AuditResult, limit: int = 200) -> str:
    """Process values: the points written (by whom, in which range), then those that
    changed, each with a bar of its range and its last value."""
    shown = sorted((p for p in result.points if p.writes or p.changes),
                   key=lambda p: (not p.writes, p.device, p.unit, p.table, p.address))
    if not shown:
        return ""
    rows = []
    for p in shown[:limit]:
        low, high, last = ((p.written_min, p.written_max, p.written) if p.writes
                           else (p.min, p.max, p.last))
        read = (f"{number(p.last)} ({number(p.min)}..{number(p.max)}, {p.changes} changes)"
                if p.reads else "")
        written = (f"{number(p.written)} ({number(p.written_min)}..{number(p.written_max)}, "
                   f"{p.writes} writes)" if p.writes else "")
        rows.append(f"<tr><td>{_e(p.device)}</td><td>{_e(p.protocol)}</td>"
                    f"<td>{_e(p.name)}</td><td>{_e(read)}</td><td>{_e(written)}</td>"
                    f"<td>{_e(', '.join(sorted(p.writers)))}</td>"
                    f"<td>{_range_bar(low, high, last)}</td><td>{_sparkline(p.history)}</td>"
                    "</tr>")
    told = max(len(shown), result.points_telling or 0)
    more = _more(told - limit) if told > limit else ""
    return ("<h3>Process values</h3><p>Values as numbers on the wire (registers unsigned "
            "16-bit, coils 0/1, DNP3 outputs by their variation); every point is in "
            "assets.json.</p><table id='points' class='sortable'><tr><th>device</th>"
            "<th>protocol</th><th>point</th><th>read: last (range, changes)</th>"
            "<th>written: last (range, writes)</th><th>writers</th><th>range, last</th>"
            "<th>last values</th></tr>" + "".join(rows) + "</table>" + more)


def _sparkline(history: list[tuple[float, float]], width: int = 120,
               height: int = 20) -> str:
    """Values over their time as a small line, each held until the next (a point's last
    values, or an edge's minutes)."""
    if len(history) < 2:
        return ""
    t0, t1 = history[0][0], history[-1][0]
    lo = min(v for _, v in history)
    hi = max(v for _, v in history)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    points = []
    for i, (t, v) in enumerate(history):
        x = (t - t0) / span_t * (width - 2) + 1
        y = height - 2 - (v - lo) / span_v * (height - 4)
        if i:
            points.append(f"{x:.1f},{points[-1].split(',')[1]}")  # held until it changed
        points.append(f"{x:.1f},{y:.1f}")
    title = f"{len(history)} values, {number(lo)}..{number(hi)}"
    return (f"<svg width='{width}' height='{height}' role='img'><title>{_e(title)}</title>"
            f"<polyline fill='none' stroke='#08519c' stroke-width='1.2' "
            f"points='{' '.join(points)}'/></svg>")


def _range_bar(low: float | None, high: float | None, last: float | None) -> str:
    """A small bar: the range seen, and where the last value lies in it."""
    if low is None or high is None or last is None:
        return ""
    x = 0.0 if high == low else (last - low) / (high - low) * 96
    return (f"<svg width='100' height='10' role='img'><rect y='3' width='100' height='4' "
            f"fill='#c6dbef'/><rect x='{x + 1:.1f}' width='3' height='10' fill='#08519c'/>"
            "</svg>")


def _incidents(result: AuditResult) -> str:
    """Incidents first: one row per actor, target and cause, with its evidence folded."""
    if not result.incident_docs:
        return ""
    rows = []
    for d in sorted(result.incident_docs, key=lambda d: (-d["event"]["severity"],
                                                         d["@timestamp"])):
        inc, ev = d["otsec"]["incident"], d["event"]
        target = "" if inc["target"] == inc["actor"] else f" &rarr; {_e(inc['target'])}"
        evidence = "".join(f"<li>{_e(m)}</li>" for m in inc["evidence"])
        techs = ", ".join(_e(t) for t in d["threat"]["technique"]["id"])
        rows.append(
            f"<tr><td>{_e(ev['start'])}</td><td><span class='sev' style='background:"
            f"{SEVERITY_COLOURS[ev['severity']]}'>{SEVERITY_NAMES[ev['severity']]}</span></td>"
            f"<td>{_e(inc['actor'])}{target}</td><td>{_e(inc['cause'])}</td>"
            f"<td>{techs}</td><td>{inc['alerts']}</td>"
            f"<td><details><summary>{_e(inc['worst'])}</summary><ul>{evidence}</ul>"
            f"</details></td></tr>")
    return ("<h2>Incidents</h2><table id='incidents' class='sortable'><tr><th>start</th>"
            "<th>severity</th><th>actor &rarr; target</th><th>cause</th><th>ATT&amp;CK</th>"
            "<th>alerts</th><th>worst finding (click for all)</th></tr>" + "".join(rows)
            + "</table>")


def _changes(result: AuditResult) -> str:
    """When audited against a baseline: what deviated from it."""
    changed = [a for a in result.alerts if a["rule"]["id"].startswith("otsec-baseline-")]
    if not changed:
        return ""
    items = "".join(f"<li><b>{_e(a['rule']['name'])}</b>: {_e(a['message'])}</li>"
                    for a in changed[:200])
    return f"<h2>What changed since the baseline</h2><ul id='changes'>{items}</ul>"


#: the request codes that change the process, marked in the matrix
WRITE_CODES = {name: r.changes for name, r in RECORDS.items()}


def _sensor(summary: dict[str, Any]) -> str:
    sensor = summary.get("sensor")
    if not sensor:
        return ""
    return f"<br>sensor {_e(sensor['name'])} at site {_e(sensor['site'])}"


def write_report(path: Path, result: AuditResult) -> None:
    """Written aside and renamed (a live sensor rewrites it while people read it)."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(render(result))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
