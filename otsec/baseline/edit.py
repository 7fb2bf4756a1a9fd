"""Changing a baseline on purpose: approving an alert's finding, and comparing two files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from otsec.baseline.model import (
    AssetEntry,
    Baseline,
    BaselineError,
    EdgeEntry,
    ValueEntry,
    merge_spans,
)


def _ndjson(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read alerts ({exc.strerror})") from None
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise BaselineError(f"{path}:{n}: not a JSON document") from None
    return out


def find_alerts(alerts_file: Path, ids: list[str]) -> list[dict[str, Any]]:
    """The alerts named by their ids (or by a prefix only one of them has)."""
    alerts = _ndjson(alerts_file)
    found = []
    for wanted in ids:
        matches = [a for a in alerts if str(a.get("event", {}).get("id", "")).startswith(wanted)]
        exact = [a for a in matches if a["event"]["id"] == wanted]
        if exact:
            matches = exact
        if not matches:
            raise BaselineError(f"no alert {wanted} in {alerts_file}")
        if len(matches) > 1:
            raise BaselineError(f"{wanted} names {len(matches)} alerts in {alerts_file}; give "
                                "more of the id")
        if matches[0] not in found:
            found.append(matches[0])
    return found


def find_alert(alerts_file: Path, alert_id: str) -> dict[str, Any]:
    return find_alerts(alerts_file, [alert_id])[0]


def approve(base: Baseline, alert: dict[str, Any]) -> list[str]:
    """Apply every addition an alert carries; return what changed, for the user."""
    additions = alert.get("otsec", {}).get("baseline", {}).get("approve") or []
    if not additions:
        raise BaselineError(f"alert {alert['event']['id']} ({alert['rule']['id']}) carries "
                            "nothing a baseline can learn")
    return [_apply(base, a) for a in additions]


def _edge(base: Baseline, item: dict[str, Any]) -> EdgeEntry:
    key = item["edge"]
    entry = base.edges.get(key)
    if entry is None:  # "client -> server transport/port protocol"
        client, _, server, tp, protocol = key.split(" ")
        transport, port = tp.split("/")
        entry = base.edges[key] = EdgeEntry(client, server, transport, int(port), protocol)
    return entry


def _apply(base: Baseline, item: dict[str, Any]) -> str:
    kind = item.get("kind")
    if kind == "asset":
        base.assets.setdefault(item["ip"], AssetEntry())
        return f"asset {item['ip']}"
    if kind == "mac":
        asset = base.assets.setdefault(item["ip"], AssetEntry())
        asset.macs = sorted(set(asset.macs) | {item["mac"]})
        return f"MAC {item['mac']} for {item['ip']}"
    if kind == "identity":
        asset = base.assets.setdefault(item["ip"], AssetEntry())
        for name in ("manufacturer", "model", "firmware"):
            if item.get(name):
                setattr(asset, name, item[name])
        return f"identity of {item['ip']}"
    if kind == "edge":
        _edge(base, item)
        return f"edge {item['edge']}"
    if kind == "function":
        entry = _edge(base, item)
        codes = set(entry.functions.get(item["direction"], [])) | {int(item["code"])}
        entry.functions[item["direction"]] = sorted(codes)
        return f"{item['direction']} function {item['code']} on {item['edge']}"
    if kind == "unit":
        entry = _edge(base, item)
        entry.units = sorted(set(entry.units) | {int(item["unit"])})
        return f"unit {item['unit']} on {item['edge']}"
    if kind == "object":
        entry = _edge(base, item)
        entry.objects = sorted(set(entry.objects) | {int(item["group"])})
        return f"object group {item['group']} on {item['edge']}"
    if kind == "range":
        entry = _edge(base, item)
        table = f"{item['unit']}/{item['table']}"
        start = int(item["start"])
        entry.ranges[table] = merge_spans([*entry.ranges.get(table, []),
                                           [start, start + int(item["count"]) - 1]])
        return f"{table} {start}+{item['count']} on {item['edge']}"
    if kind == "steady":
        entry = _edge(base, item)
        entry.startup_only = [c for c in entry.startup_only if c != int(item["code"])]
        return f"function {item['code']} at any time on {item['edge']}"
    if kind == "value":
        learned = ValueEntry(item["device"], item["protocol"], int(item["unit"]), item["table"],
                             int(item["address"]), item["value"], item["value"],
                             [item["writer"]], 1)
        entry = base.values.setdefault(learned.key, learned)
        if entry is not learned:
            entry.take(learned)
        return (f"{item['value']} written by {item['writer']} into unit {item['unit']} "
                f"{item['table']} {item['address']} of {item['device']}")
    if kind == "forget-cadence":
        entry = _edge(base, item)
        entry.period = None
        return f"no polling cycle expected on {item['edge']}"
    raise BaselineError(f"unknown baseline addition {kind!r}")


def diff(old: Baseline, new: Baseline) -> list[str]:
    """What ``new`` has that ``old`` has not, and the reverse, one line each."""
    out: list[str] = []
    for ip in sorted(set(new.assets) - set(old.assets)):
        out.append(f"+ asset {ip}")
    for ip in sorted(set(old.assets) - set(new.assets)):
        out.append(f"- asset {ip}")
    for ip in sorted(set(old.assets) & set(new.assets)):
        a, b = old.assets[ip], new.assets[ip]
        for name in ("macs", "manufacturer", "model", "firmware", "role"):
            if getattr(a, name) != getattr(b, name):
                out.append(f"~ asset {ip} {name}: {getattr(a, name)} -> {getattr(b, name)}")
    for key in sorted(set(new.edges) - set(old.edges)):
        out.append(f"+ edge {key}")
    for key in sorted(set(old.edges) - set(new.edges)):
        out.append(f"- edge {key}")
    for key in sorted(set(old.edges) & set(new.edges)):
        a, b = old.edges[key], new.edges[key]
        for direction in sorted(set(a.functions) | set(b.functions)):
            added = set(b.functions.get(direction, [])) - set(a.functions.get(direction, []))
            removed = set(a.functions.get(direction, [])) - set(b.functions.get(direction, []))
            if added:
                out.append(f"+ {key} {direction} functions {sorted(added)}")
            if removed:
                out.append(f"- {key} {direction} functions {sorted(removed)}")
        if set(a.objects) != set(b.objects):
            out.append(f"~ {key} object groups {a.objects} -> {b.objects}")
        if set(a.units) != set(b.units):
            out.append(f"~ {key} units {a.units} -> {b.units}")
        if a.ranges != b.ranges:
            out.append(f"~ {key} ranges {a.ranges} -> {b.ranges}")
    for key in sorted(set(new.values) - set(old.values)):
        v = new.values[key]
        out.append(f"+ written {key}: {v.min}..{v.max} by {', '.join(v.writers)}")
    for key in sorted(set(old.values) - set(new.values)):
        out.append(f"- written {key}")
    for key in sorted(set(old.values) & set(new.values)):
        a, b = old.values[key], new.values[key]
        if (a.min, a.max, a.writers) != (b.min, b.max, b.writers):
            out.append(f"~ written {key}: {a.min}..{a.max} by {', '.join(a.writers)} -> "
                       f"{b.min}..{b.max} by {', '.join(b.writers)}")
    return out
