"""Protecting: compare what flows now with the baseline and report deviations.

Quiet while learning (before ``protect_from``); afterwards every deviation is a finding
whose ``approve`` payload says exactly what `otsec baseline approve` would add.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from otsec.baseline.model import Baseline, edge_key, mid_session, value_key
from otsec.detect.alerts import Finding, Notice
from otsec.detect.catalog import Rule
from otsec.events import Event
from otsec.graph.functions import Use, describe
from otsec.inventory.assets import Asset
from otsec.process import ValueDeviation, number

SILENT_CYCLES = 10  # a learned cycle missed this many times in a row is silence
SILENT_MIN = 30.0  # ... and never less than this many seconds
RATE_WINDOW = 60.0
RATE_FACTOR = 5.0  # "far above": this many times the learned rate
RATE_MIN_REQUESTS = 50  # in one window, before a rate alert means anything


def event_edge(event: Event) -> tuple[str, str, str, str, int]:
    """(edge key, client ip, server ip, transport, server port) in the graph's terms."""
    flow = event.flow
    client = flow.client_side
    ips = flow.ip_texts
    port = flow.ports[1 - client]
    return (edge_key(ips[client], ips[1 - client], flow.transport, port, event.protocol),
            ips[client], ips[1 - client], flow.transport, port)



def baseline_state(deviations: Deviations | None, ts: float) -> str:
    """What an alert at ``ts`` was raised under: no baseline at all, learning, protecting."""
    if deviations is None:
        return "none"
    return "protecting" if deviations.protecting(ts) else "learning"

class Deviations:
    """Engine consumer producing baseline findings (fed to the detector's alert book)."""

    def __init__(self, baseline: Baseline, add: Callable[[Finding], object],
                 catalog: dict[str, Rule], learn_for: float = 0.0,
                 on_protect: Callable[[], None] | None = None, core_fed: bool = False) -> None:
        """``core_fed``: the compiled core watches rates and polling and hands over what is
        new, rates over the learned ones and silence checks (``on_tick``); otherwise every
        record is read here."""
        self.core_fed = core_fed
        self.rate_alerts: dict[str, object] = {}
        self._rate_applied: dict[str, int] = {}
        self.catalog = catalog
        self.baseline = baseline
        self.add = add
        self.learn_for = learn_for
        self.on_protect = on_protect  # folds the learning window into the baseline
        self.protect_from: float | None = None if learn_for else 0.0
        self._protecting = not learn_for
        self.reported: set[tuple[object, ...]] = set()
        self.last_request: dict[str, float] = {}
        self.windows: dict[str, deque[float]] = {}
        self.now = 0.0
        self.next_check = 0.0

    @property
    def protecting_now(self) -> bool:
        return self._protecting

    def protecting(self, ts: float) -> bool:
        if self._protecting:
            return self.protect_from is not None and ts >= self.protect_from
        if self.protect_from is None:
            self.protect_from = ts + self.learn_for  # the window starts with the first PDU
        if ts >= self.protect_from:
            self._protecting = True
            if self.on_protect is not None:
                self.on_protect()
            return True
        return False

    def _once(self, key: tuple[object, ...]) -> bool:
        if key in self.reported:
            return False
        if len(self.reported) > 100_000:
            self.reported.clear()
        self.reported.add(key)
        return True

    # -- consumer interface ---------------------------------------------------------

    def on_arp(self, text: str, address: str, ts: float) -> None:
        """ARP claims: a new address on the segment, or a known one claimed by another MAC."""
        if address == "0.0.0.0" or not self.protecting(ts):
            return
        known = self.baseline.assets.get(address)
        notice = Notice(from_client=True, ts=ts, protocol_name="arp", source_ip=address,
                        destination_ip=address)
        if known is None:
            if self._once(("asset", address)):
                self.add(Finding(self.catalog["otsec-baseline-new-asset"], notice,
                                 f"(new to the baseline) announced itself in ARP from {text}",
                                 key=(address,), answerable=False,
                                 approve={"kind": "asset", "ip": address}))
        elif known.macs and text not in known.macs and self._once(("mac", address, text)):
            self.add(Finding(self.catalog["otsec-baseline-new-mac"], notice,
                             f"was claimed in ARP by MAC {text} (baseline: "
                             f"{', '.join(known.macs)})", key=(address, text),
                             answerable=False,
                             approve={"kind": "mac", "ip": address, "mac": text}))

    def on_event(self, event: Event, rate: int | None = None,
                 request_index: int | None = None,
                 values: list[ValueDeviation] | None = None) -> None:
        """One record; ``rate``: requests in the window when the core found this one over
        the learned rate; ``request_index``: its place among its connection's requests;
        ``values``: what it wrote that the baseline did not see (the core compared)."""
        ts = event.ts
        if ts > self.now and not self.core_fed:
            self.now = ts
            if ts >= self.next_check:
                self.next_check = ts + 5.0
                self.check_silence(ts)
        use = describe(event)
        if use is None:
            return
        key, client, server, transport, port = event_edge(event)
        request = event.direction == "request"
        if request:
            self.last_request[key] = ts
        if not self.protecting(ts):
            return
        base = self.baseline
        flow = event.flow
        sender_ip = flow.ip_texts[flow.sender(event.from_client)]
        for ip in (client, server):
            if ip not in base.assets and self._once(("asset", ip)):
                self.add(Finding(self.catalog["otsec-baseline-new-asset"], event,
                                 f"(new to the baseline) exchanged {event.protocol} with",
                                 key=(ip,), answerable=False, swap=ip != sender_ip,
                                 approve={"kind": "asset", "ip": ip}))
        self._macs(event)
        entry = base.edge(key)
        if entry is None:
            if request and use.command and client not in base.assets and self._once(
                    ("rogue", client, server)):
                self.add(Finding(self.catalog["otsec-baseline-rogue-master"], event,
                                 f"(not in the baseline) sent {use.name} "
                                 f"({event.protocol} {use.code}) to",
                                 approve=_function(key, event, use)))
            if self._once(("edge", key)):
                self.add(Finding(self.catalog["otsec-baseline-new-edge"], event,
                                 f"opened a new {event.protocol} conversation "
                                 f"({transport}/{port}) with", answerable=False,
                                 approve={"kind": "edge", "edge": key, "client": client,
                                          "server": server, "transport": transport,
                                          "port": port, "protocol": event.protocol}))
            return
        direction = event.direction
        known = use.code in entry.functions.get(direction, ())
        # a response only answers what was asked: the request's alert says what was used
        if not known and direction != "response" and self._once(("fn", key, direction,
                                                                 use.code)):
            rule = "otsec-baseline-new-command" if use.command else "otsec-baseline-new-function"
            self.add(Finding(self.catalog[rule], event,
                             f"used {use.name} ({event.protocol} function {use.code}), "
                             "never learned on this path, with",
                             key=(use.code, direction), answerable=request,
                             approve=_function(key, event, use)))
        if known and mid_session(entry, direction, use.code, request_index) and self._once(
                ("mid-session", key, use.code)):
            rule = "otsec-baseline-new-command" if use.command else "otsec-baseline-new-function"
            self.add(Finding(self.catalog[rule], event,
                             f"used {use.name} ({event.protocol} function {use.code}) in the "
                             f"middle of a connection (request {request_index}); it was learned "
                             "only in connections' start-up, with",
                             key=(use.code, "mid-session"), answerable=request,
                             approve={"kind": "steady", "edge": key, "code": use.code}))
        new_unit = use.unit is not None and entry.units and use.unit not in entry.units
        if request and new_unit and self._once(("unit", key, use.unit)):
            self.add(Finding(self.catalog["otsec-baseline-new-unit"], event,
                             f"addressed unit/station {use.unit}, never learned here, on",
                             key=(use.unit,), answerable=request,
                             approve={"kind": "unit", "edge": key, "unit": use.unit}))
        new_groups = [g for g in use.groups if entry.objects and g not in entry.objects]
        for group in new_groups:
            if self._once(("object", key, group)):
                self.add(Finding(self.catalog["otsec-baseline-new-object"], event,
                                 f"requested DNP3 object group {group}, never learned here, from",
                                 key=(group,), answerable=request,
                                 approve={"kind": "object", "edge": key, "group": group}))
        for table, start, count in use.ranges:
            unit = use.unit or 0
            if not base.covers(key, unit, table, start, count) and self._once(
                    ("range", key, unit, table, start, count)):
                self.add(Finding(self.catalog["otsec-baseline-new-range"], event,
                                 "touched {details} outside the learned ranges on",
                                 key=(unit, table), detail=f"{table} {start}-{start + count - 1}",
                                 approve={"kind": "range", "edge": key, "unit": unit,
                                          "table": table, "start": start, "count": count}))
        if values:
            self._values(event, use.unit or 0, client, server, values)
        if request and entry.rate > 0:
            if not self.core_fed:
                self._rate(event, key, entry.rate)
            elif rate is not None:
                self._rate_finding(event, key, entry.rate, rate)

    def _values(self, event: Event, unit: int, writer: str, device: str,
                values: list[ValueDeviation]) -> None:
        """Written values outside the learned range, or from a host that never wrote
        the point while learning."""
        for table, address, value, learned, new_writer in values:
            key = value_key(device, event.protocol, unit, table, address)
            shown = number(value)
            point = f"unit {unit} {table} {address}"
            approve = {"kind": "value", "device": device, "protocol": event.protocol,
                       "unit": unit, "table": table, "address": address, "value": shown,
                       "writer": writer}
            if learned is not None and not learned[0] <= value <= learned[1] and self._once(
                    ("value", key, value)):
                low, high = map(number, learned)
                self.add(Finding(self.catalog["otsec-baseline-value-out-of-range"], event,
                                 f"wrote {shown} into {point} (learned {low}..{high}) on",
                                 key=(key,), detail=f"{point} = {shown}", approve=approve))
            if new_writer and self._once(("writer", key, writer)):
                why = ("a point never written while learning" if learned is None
                       else "a point it never wrote while learning")
                self.add(Finding(self.catalog["otsec-baseline-new-writer"], event,
                                 f"wrote {shown} into {point}, {why}, on",
                                 key=(key,), detail=point, approve=approve))

    def on_tick(self, now: float, last_requests: dict[str, float]) -> None:
        """A silence check the core found due (it kept the last requests)."""
        self.last_request.update(last_requests)
        self.now = max(self.now, now)
        self.check_silence(now)

    def sync_rates(self, repeats: dict[str, int]) -> None:
        """Requests the core counted over the learned rate after the first one."""
        for key, n in repeats.items():
            alert = self.rate_alerts.get(key)
            if alert is not None and not isinstance(alert, str):
                alert.count += n - self._rate_applied.get(key, 0)  # type: ignore[attr-defined]
                self._rate_applied[key] = n

    def _macs(self, event: Event) -> None:
        flow = event.flow
        for side in (0, 1):
            text = flow.mac_texts[side]
            if not text:
                continue
            ip = flow.ip_texts[side]
            known = self.baseline.assets.get(ip)
            if known and known.macs and text not in known.macs and self._once(
                    ("mac", ip, text)):
                self.add(Finding(self.catalog["otsec-baseline-new-mac"], event,
                                 f"answered as {ip} from MAC {text} (baseline: "
                                 f"{', '.join(known.macs)}); peer", key=(ip, text),
                                 answerable=False, swap=flow.sender(event.from_client) != side,
                                 approve={"kind": "mac", "ip": ip, "mac": text}))

    def _rate(self, event: Event, key: str, learned: float) -> None:
        q = self.windows.get(key)
        if q is None:
            q = self.windows[key] = deque()
        q.append(event.ts)
        while q and event.ts - q[0] > RATE_WINDOW:
            q.popleft()
        rate = len(q) / RATE_WINDOW
        if len(q) >= RATE_MIN_REQUESTS and rate > RATE_FACTOR * learned:
            self._rate_finding(event, key, learned, len(q))

    def _rate_finding(self, event: Event, key: str, learned: float, count: int) -> None:
        alert = self.add(Finding(self.catalog["otsec-baseline-rate"], event,
                                 f"sent {count} requests in 60 s (learned {learned * 60:.0f}"
                                 "/min) to", answerable=False))
        self.rate_alerts.setdefault(key, alert)

    # -- time-driven checks ---------------------------------------------------------

    def check_silence(self, now: float) -> None:
        """Learned cyclic edges whose polling stopped while the capture goes on."""
        if not self.protecting(now):
            return
        for key, entry in self.baseline.edges.items():
            if not entry.period:
                continue
            limit = max(SILENT_CYCLES * entry.period, SILENT_MIN)
            last = self.last_request.get(key, self.protect_from or now)
            if now - last > limit and self._once(("silent", key, round(last, 3))):
                self.add(_silent_finding(self.catalog["otsec-baseline-silent-edge"],
                                         entry.client, entry.server, key, entry.period, last,
                                         now))

    def identity_changes(self, observed: dict[str, dict[str, str | None]], at: float) -> None:
        """Compare the identities the audit found with the baseline's (at the end)."""
        for ip, found in observed.items():
            known = self.baseline.assets.get(ip)
            if known is None:
                continue
            changed = {k: (getattr(known, k), v) for k, v in found.items()
                       if v and getattr(known, k) and getattr(known, k) != v}
            if changed and self._once(("identity", ip, tuple(sorted(changed)))):
                what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
                notice = Notice(from_client=True, ts=at, protocol_name="any", source_ip=ip,
                                destination_ip=ip)
                self.add(Finding(self.catalog["otsec-baseline-identity-change"], notice,
                                 f"reports a new identity ({what}):",
                                 key=(ip,), answerable=False,
                                 approve={"kind": "identity", "ip": ip,
                                          **{k: v for k, (_o, v) in changed.items()}}))


    def finish(self, last_ts: float, assets: list[Asset]) -> None:
        """End of the run: a last silence check and the identities the run found."""
        self.check_silence(last_ts)
        if not self.protecting(last_ts):
            return
        observed: dict[str, dict[str, str | None]] = {}
        for a in assets:
            ident = a.identity
            if ident.source in (None, "mac-oui"):
                continue
            for ip in a.ips:
                observed[ip] = {"manufacturer": ident.manufacturer,
                                "model": ident.model_identifier or ident.model_name,
                                "firmware": ident.firmware_version}
        self.identity_changes(observed, last_ts)


def _function(key: str, event: Event, use: Use) -> dict[str, object]:
    return {"kind": "function", "edge": key, "direction": event.direction, "code": use.code}


def _silent_finding(rule: Rule, client: str, server: str, key: str, period: float,
                    last: float, now: float) -> Finding:
    transport, port = key.split(" ")[-2].split("/")
    notice = Notice(from_client=True, ts=now, protocol_name=key.rsplit(" ", 1)[-1],
                    source_ip=client, destination_ip=server, destination_port=int(port),
                    transport=transport)
    return Finding(rule, notice,
                   f"stopped polling (learned every {period:.1f} s, silent "
                   f"{now - last:.0f} s)", answerable=False,
                   approve={"kind": "forget-cadence", "edge": key})
