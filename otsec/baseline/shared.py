"""A site's baseline kept in the search cluster, so that all its sensors protect with one.

One document per site in ``otsec-baselines`` (``_id`` = the site) holds the current
version; each published version also stays as ``<site>@<version>``. Publishing is
optimistic: if another sensor published in between, nothing is overwritten and the user
is told to publish again (with ``--merge`` their baseline is folded into the newer one).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from otsec.baseline.model import Baseline, BaselineError
from otsec.sensor import Sensor
from otsec.sinks.documents import ECS_VERSION
from otsec.timefmt import iso

INDEX = "otsec-baselines"


@dataclass
class Published:
    site: str
    version: int
    by: str  # the sensor that published it
    at: str
    baseline: Baseline
    seq: tuple[int, int] | None = None  # (seq_no, primary_term) of the current document


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status_code", None)


def fetch(client: Any, site: str, version: int | None = None) -> Published | None:
    """The site's current baseline (or one of its versions); None when there is none."""
    doc_id = site if version is None else f"{site}@{version}"
    try:
        got = client.get(index=INDEX, id=doc_id)
    except Exception as exc:
        if _status(exc) == 404:
            return None
        raise
    b = got["_source"]["otsec"]["baseline"]
    base = Baseline.from_json(json.loads(b["content"]), f"{INDEX}/{doc_id}")
    return Published(site, b["version"], b["published_by"], got["_source"]["@timestamp"],
                     base, (got["_seq_no"], got["_primary_term"]))


def publish(client: Any, flavor: str, base: Baseline, sensor: Sensor,
            merge: bool = False) -> tuple[int, Baseline]:
    """Make ``base`` the site's baseline; returns its version number and what it holds."""
    current = fetch(client, sensor.site)
    if merge and current is not None:
        current.baseline.merge(base)
        base = current.baseline
    version = current.version + 1 if current else 1
    doc = sensor.stamp({
        "@timestamp": iso(time.time()),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "state", "dataset": "otsec.baseline", "module": "otsec"},
        "otsec": {"baseline": {
            "site": sensor.site, "version": version, "published_by": sensor.name,
            "assets": len(base.assets), "edges": len(base.edges), "values": len(base.values),
            "content": json.dumps(base.to_json(), separators=(",", ":")),
        }},
    })
    guard: dict[str, Any] = ({"if_seq_no": current.seq[0], "if_primary_term": current.seq[1]}
                             if current and current.seq else {"op_type": "create"})
    try:
        _put(client, flavor, sensor.site, doc, guard)
    except Exception as exc:
        if _status(exc) == 409:
            raise BaselineError(f"site {sensor.site}: another baseline was published "
                                "meanwhile; publish again (--merge folds yours into it)"
                                ) from None
        raise
    _put(client, flavor, f"{sensor.site}@{version}", doc, {"op_type": "create"})
    return version, base


def _put(client: Any, flavor: str, doc_id: str, doc: dict[str, Any],
         guard: dict[str, Any]) -> None:
    body = {"body": doc} if flavor == "opensearch" else {"document": doc}
    client.index(index=INDEX, id=doc_id, refresh="wait_for", **body, **guard)
