"""Several capture processes on one interface (AF_PACKET fanout by flow hash), one view.

The kernel hashes each flow, both directions alike, to one worker, so every worker sees
whole conversations and nothing is counted twice. Workers send snapshots of what they
hold (hosts, edges, counters, the documents of the alerts that changed); the parent
merges them into the same files a single process writes.
"""

from __future__ import annotations

import copy
import ctypes
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
from typing import Any

from otsec.graph.edges import merged_edges
from otsec.inventory.assets import HostRecord, Inventory


def merge_host(into: HostRecord, other: HostRecord) -> None:
    into.first_seen = min(into.first_seen, other.first_seen)
    into.last_seen = max(into.last_seen, other.last_seen)
    into.packets += other.packets
    into.bytes += other.bytes
    into.macs.update(other.macs)
    into.evidence.update(other.evidence)
    for name in ("services", "uses", "peers", "protocols", "vlans", "dnp3_addresses"):
        getattr(into, name).update(getattr(other, name))
    for name in vars(into.identity):
        if getattr(into.identity, name) is None:
            setattr(into.identity, name, getattr(other.identity, name))


def sum_stats(items: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The core's counters of several processes as one (times: the widest span)."""
    total: dict[str, Any] = {}
    for item in items:
        if item is None:
            continue
        for key, value in item.items():
            mine = total.get(key)
            if mine is None:
                total[key] = dict(value) if isinstance(value, dict) else value
            elif key == "first_ts":
                total[key] = min(mine, value) if value is not None else mine
            elif key == "last_ts":
                total[key] = max(mine, value) if value is not None else mine
            elif isinstance(value, dict):
                for k, v in value.items():
                    mine[k] = mine.get(k, 0) + v
            elif value is not None:
                total[key] = mine + value
    return total


def merge(snapshots: list[dict[str, Any]], keep: bool = False, owned: bool = False) -> Any:
    """One inventory, graph and set of counters from every worker's snapshot
    (with ``keep``, also the merged inventory and IP-keyed edges, to save them).
    ``owned``: two snapshots, a past run's (kept) and one used once: the hosts of the
    latter are merged into, those of the former taken last, so neither is copied."""
    inventory = Inventory()
    order = [snapshots[1], snapshots[0]] if owned else snapshots
    for snap in order:
        for ip, host in snap["hosts"].items():
            mine = inventory.hosts.get(ip)
            if mine is None:  # snapshots stay untouched (the kept one is never merged into)
                inventory.hosts[ip] = host if owned else copy.deepcopy(host)
            else:
                merge_host(mine, host)
        for ip, macs in snap["arp"].items():
            inventory.arp.setdefault(ip, set()).update(macs)
    assets, id_of = inventory.assets()
    all_edges = {(i, key): e for i, snap in enumerate(snapshots)
                 for key, e in snap["edges"].items()}
    view = {"assets": assets, "edges": merged_edges(all_edges, id_of),
            "stats": sum_stats([s["stats"] for s in snapshots]),
            "drops": sum(s["drops"] for s in snapshots)}
    if not keep:
        return view
    identity = {ip: ip for ip in inventory.hosts}  # keep the IP-keyed graph for the state file
    return view, inventory, {e.key: e for e in merged_edges(all_edges, identity)}


def spawn(index: int, group: int, results: Any, stop: Any, target: Any,
          args: tuple[Any, ...]) -> Any:
    """Fork the worker ``index`` (again, when one died: it takes over what its
    predecessor held open, inherited from this process)."""
    p = mp.get_context("fork").Process(
        target=_guarded, args=(target, index, group, results, stop, *args), daemon=True)
    p.start()
    return p


class Reload:
    """Set in a worker process by the SIGHUP its parent forwards (each process its own)."""

    wanted = False


def die_with_parent() -> None:
    """A worker never outlives its parent (killed, it cannot stop its workers itself).
    Called again after a change of user, which clears it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before that took effect
        os._exit(1)


def _guarded(target: Any, *args: Any) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, lambda *_: setattr(Reload, "wanted", True))
    target(*args)


def receive(results: Any, timeout: float) -> list[tuple[str, int, Any]]:
    """The workers' messages (kind, worker, payload) that arrive within ``timeout``."""
    out = []
    end = time.monotonic() + timeout
    while True:
        remaining = end - time.monotonic()
        try:
            out.append(results.get(timeout=max(remaining, 0.0)) if remaining > 0
                       else results.get_nowait())
        except queue_mod.Empty:
            return out
