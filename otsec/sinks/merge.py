"""One -latest document per asset or edge and site, however many sensors see it.

Each sensor's document goes to the cluster as a scripted upsert (merge.painless): the
cluster keeps every sensor's newest part and rebuilds the union from them, so the merge
needs no service of its own, works the same on Elasticsearch and OpenSearch, and a retry
or a replay changes nothing.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from otsec.sensor import DEFAULT_SITE
from otsec.sinks.documents import local_id

SCRIPT = resources.files("otsec.sinks").joinpath("merge.painless").read_text(encoding="utf-8")
# how a field of two sensors' documents combines (by field name; the rest: lists are
# united, other values are those of the sensor with the best evidence)
RULES = {
    "packets": "sum", "bytes": "sum", "pdus": "sum", "writes": "sum",
    "first_seen": "min",
    "last_seen": "max", "@timestamp": "max", "last_seen_timestamp": "max", "count": "max",
}  # fmt: skip
# how strong a sensor's identification of a device is (its identity wins the merge)
EVIDENCE = {"modbus-fc43": 3, "modbus-fc17": 2, "mac-oui": 1}


def evidence(doc: dict[str, Any]) -> int:
    """The strength of what a document says about a device's identity."""
    asset = doc.get("otsec", {}).get("asset", {})
    source = asset.get("identification_source") or ""
    strength = 3 if source.startswith("s7comm-szl") else EVIDENCE.get(source, 0)
    device = doc.get("device", {})
    return strength * 10 + len(device) + bool(asset.get("firmware_version"))


def merge_action(index: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The bulk action that folds one sensor's document into its site's -latest one."""
    site = doc.get("labels", {}).get("site", DEFAULT_SITE)
    sensor = doc.get("observer", {}).get("name", "")
    return {
        "_op_type": "update", "_index": index, "_id": f"{site}:{local_id(doc)}",
        "retry_on_conflict": 10,  # two sensors updating one device at once
        "_source": {"scripted_upsert": True, "upsert": {},
                    "script": {"lang": "painless", "source": SCRIPT,
                               "params": {"sensor": sensor, "rank": evidence(doc),
                                          "doc": doc, "rules": RULES}}},
    }
