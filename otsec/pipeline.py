"""The one place that wires the compiled core to the policy; audit, learn and the live
sensor all run through it.

The core reads packets and writes the per-PDU lines; what crosses into Python goes to the
inventory (identities), the detector (rules, site policy, alerts) and, with a baseline,
the deviations. Hosts and edges are read from the core's counters when a view is wanted.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otsec import _core
from otsec.baseline.learn import learn
from otsec.baseline.model import Baseline
from otsec.core import Facts, edges, host_record, host_records, role_record
from otsec.detect import Detector
from otsec.detect.availability import Availability
from otsec.detect.compiled import boundaries, compile_rules
from otsec.detect.deviations import Deviations
from otsec.detect.probes import Probes
from otsec.detect.ruleset import RuleSet
from otsec.graph.edges import Edge, merged_edges
from otsec.inventory.assets import Asset, Inventory
from otsec.process import ProcessValues, process_values
from otsec.protocols import PORT_NAMES, WELL_KNOWN
from otsec.sensor import LOCAL, Sensor

Progress = Callable[[int], None]  # called with bytes of input consumed so far


def _nothing_analysed(capture: Any, unknown_linktype: int) -> str | None:
    """Why a capture gave nothing to analyse (None when it gave something)."""
    if capture.packets == 0:
        return "no valid record (the file is corrupt)" if capture.corrupt else "no packets"
    if capture.repairs["empty"] >= capture.packets:
        return "no valid record (the file is corrupt)"  # records of no bytes, nothing else
    if unknown_linktype >= capture.packets:
        return "no packet has a link type otsec reads"
    return None


@contextmanager
def gc_paused(freeze: bool = False) -> Iterator[None]:
    """For building many short-lived, acyclic objects at once (a view, its documents):
    the cycle collector would otherwise walk everything alive again and again.
    ``freeze``: what is alive at the end is kept out of later collections (for a run that
    ends soon after; the first collection would otherwise walk all of it once more)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was:
            gc.enable()


@dataclass
class View:
    """What the sensor knows at one moment: assets, edges (by asset and by IP), and the
    process values of the devices' points."""

    assets: list[Asset]
    id_of: dict[str, str]
    edges: list[Edge]
    ip_edges: dict[tuple[str, str, str, int, str], Edge]
    values: ProcessValues


class Pipeline:
    """One capture process: the core, and the consumers of what crosses from it."""

    def __init__(self, out_dir: Path | None = None, *, events: bool = True,
                 ruleset: RuleSet | None = None, baseline: Baseline | None = None,
                 learn_for: float | None = None, sources: Sequence[str] = (),
                 max_flows: int = 200_000, append: bool = False,
                 on_learned: Callable[[Baseline], None] | None = None,
                 sensor: Sensor = LOCAL, threads: bool = True) -> None:
        """``threads``: the core's record side works on a thread of its own while it reads
        (the same results; see ``otsec.monitor.two_cores_each`` for when it pays)."""
        self.sources = list(sources)
        self.sensor = sensor
        self.unreadable: list[dict[str, str]] = []
        #: what reading repaired in damaged captures, over every file (see ``Capture.repairs``)
        self.repaired: dict[str, int] = {}
        if out_dir is not None and not events and not append:
            (out_dir / "events.ndjson").write_bytes(b"")  # the file exists, and is empty
        # Python needs findings, identities and their answers; with a baseline also what
        # is new, rates over the learned ones and silence checks (the core watches)
        self.core = _core.Engine(
            max_flows=max_flows,
            events=str(out_dir / "events.ndjson") if out_dir is not None and events else None,
            anomalies=str(out_dir / "anomalies.ndjson") if out_dir is not None else None,
            append=append, learn_for=learn_for, threads=threads)
        self.core.set_service_names({**PORT_NAMES, **WELL_KNOWN})
        self.core.set_stamp(sensor.fragment())
        self.facts = Facts()
        self.inventory = Inventory()
        self.detector = Detector(ruleset)
        self.probes = Probes(self.detector)
        self.availability = Availability(self.detector)
        self.inventory.scanners = self.probes.scanners
        self._use_rules(self.detector.ruleset)
        self.detector.hosts = self._host
        self.detector.counts_of = self.core.hit_counts
        self.core.set_role_source(self._role_for_rules)
        self.deviations: Deviations | None = None
        if baseline is not None or learn_for is not None:
            base = baseline if baseline is not None else Baseline()

            def learned_so_far() -> None:  # the learning window closes: fold it in
                view = self.view()
                base.merge(learn(view.assets, list(view.ip_edges.values()), self.sources,
                                 view.values.points))
                self._watch(base)
                if on_learned is not None:
                    on_learned(base)

            self.deviations = Deviations(base, self.detector.add, self.detector.catalog,
                                         learn_for=learn_for or 0.0,
                                         on_protect=learned_so_far if learn_for else None,
                                         core_fed=True)
            self.detector.protect_with(base, self.deviations)
            self._watch(base if learn_for is None else Baseline())

    def _watch(self, base: Baseline) -> None:
        """What the core watches for the deviations (learned rates, cyclic edges, the
        functions learned only in connections' start-up, the written points) and what
        rules may ask of the baseline (its functions, its assets' roles)."""
        self.core.watch({k: e.rate for k, e in base.edges.items() if e.rate > 0},
                        [k for k, e in base.edges.items() if e.period],
                        [(k, code) for k, e in base.edges.items() for code in e.startup_only],
                        [((v.device, v.protocol, v.unit, v.table, v.address), v.min, v.max,
                          v.writers) for v in base.values.values()],
                        [(k, direction == "request", code) for k, e in base.edges.items()
                         for direction, codes in e.functions.items() for code in codes])
        self.core.set_roles([(ip, a.role, math.inf) for ip, a in base.assets.items()],
                            lasting=True)

    def reload(self, ruleset: RuleSet) -> None:
        """New rules from the next packet on (in the core too); the alerts raised so far
        stay. What crossed under the old rules is settled first: its hits name them."""
        self.drain()
        self.detector.sync(self.core.hit_counts())  # the core's counters start again
        self._use_rules(ruleset)

    def _use_rules(self, ruleset: RuleSet) -> None:
        specs, compiled = compile_rules(ruleset)
        passthrough = {c.rule.id for c, spec in zip(compiled, specs, strict=True) if spec[3]}
        self.detector.use_core(compiled, passthrough)
        self.core.set_rules(specs, self.detector.book.window, boundaries(ruleset))
        self.detector.reload(ruleset)

    # -- feeding --------------------------------------------------------------------

    def run(self, paths: Sequence[str | Path], progress: Progress | None = None) -> list[str]:
        """Read captures to their end; return the readers' warnings. Inputs that gave
        nothing to analyse are listed in ``unreadable`` (file, reason)."""
        warnings: list[str] = []
        consumed = 0
        for path in paths:
            capture = _core.Capture(str(path))
            unknown = self.core.stats()["unknown_linktype"]
            while self.core.feed(capture, 1):
                self.drain()
                if progress is not None:
                    progress(consumed + capture.position)
            self.drain()
            consumed += capture.size or capture.position
            warnings.extend(capture.warnings)
            for kind, n in capture.repairs.items():
                self.repaired[kind] = self.repaired.get(kind, 0) + n
            reason = _nothing_analysed(capture, self.core.stats()["unknown_linktype"] - unknown)
            if reason:
                self.unreadable.append({"file": str(path), "reason": reason})
                warnings.append(f"{path}: nothing analysed: {reason}")
            if progress is not None:
                progress(consumed)
        return warnings

    def drain(self) -> None:
        """Hand what crossed from the core to the policy, in capture order."""
        inventory, detector, deviations = self.inventory, self.detector, self.deviations
        event = self.facts.event
        self._learning_window_start()
        for fact in self.core.take_facts():
            kind = fact[0]
            if kind == "tick":
                if deviations is not None:
                    deviations.on_tick(fact[1], dict(fact[2]))
                continue
            if kind == "arp":
                if deviations is not None:
                    deviations.on_arp(fact[1], fact[2], fact[3])
                continue
            if kind == "view":
                self.facts.view(fact)
                continue
            if kind in ("flood", "scan"):
                self.probes.on_fact(fact)
                continue
            if kind in ("down", "up"):
                self.availability.on_fact(fact)
                continue
            ev = event(fact)
            inventory.on_event(ev)
            detector.on_event(ev, self.facts.hits, self.facts.request_index)
            if deviations is not None:
                deviations.on_event(ev, self.facts.rate, self.facts.request_index,
                                    self.facts.values)
        self._learning_window()

    def _learning_window_start(self) -> None:
        """The learning window opens at the core's first record (which may not cross)."""
        dev = self.deviations
        if dev is not None and dev.learn_for and dev.protect_from is None:
            first = self.core.first_record
            if first is not None:
                dev.protect_from = first + dev.learn_for

    def _learning_window(self) -> None:
        """The core paused where the learning window closed: protect from there (the
        records around that point need not have crossed)."""
        dev = self.deviations
        if dev is None or not dev.learn_for or dev.protecting_now:
            return
        self._learning_window_start()
        closed = self.core.take_pause()
        if closed is not None:
            dev.protecting(closed)

    def finish(self) -> None:
        """End every flow (what waits behind holes is parsed) and flush the files."""
        self.core.finish()
        self.drain()

    # -- what is known ----------------------------------------------------------------

    def view(self) -> View:
        with gc_paused():
            return self._view()

    def _view(self) -> View:
        ip_edges, values = self.counters()
        assets, id_of = self.inventory.assets()
        return View(assets, id_of, merged_edges(ip_edges, id_of), ip_edges, values)

    def counters(self) -> tuple[dict[tuple[str, str, str, int, str], Edge], ProcessValues]:
        """Bring the policy up to date with the core's counters (repeats of findings,
        rates, hosts and ARP claims into the inventory); the IP edges and process values,
        as new objects (another thread may read them while this one goes on)."""
        self.detector.sync(self.core.hit_counts(list(self.detector.hit_alerts)))
        if self.deviations is not None:
            self.deviations.sync_rates(self.core.rate_repeats())
            self.deviations.last_request.update(self.core.last_requests())
        self.inventory.load(host_records(self.core), self.core.arp())
        return edges(self.core), process_values(self.core)

    def _host(self, ip: str) -> Any:
        row = self.core.host(ip)
        return None if row is None else host_record(row)

    def _role_for_rules(self, ip: str, row: tuple[Any, ...] | None,
                        now: float) -> tuple[str | None, float]:
        """The core asks for a host's role (it hands over the host as it stands)."""
        return self.detector.role(ip, None if row is None else role_record(ip, row), now)

    def stats(self) -> dict[str, Any]:
        return self.core.stats()
