"""Elasticsearch / OpenSearch: templates, bulk delivery, and a spool so nothing is lost.

Alerts go to data stream ``logs-otsec.alert-<namespace>`` with ``create`` and their
deterministic ``event.id`` as ``_id`` (a retry answered 409 counts as delivered, so
delivery is exactly-once), incidents likewise to ``logs-otsec.incident-<namespace>``; the
current state of each alert and incident is kept by id in ``otsec-alerts-latest`` /
``otsec-incidents-latest`` (overwritten, versioned by its end: a replayed older state
changes nothing). The current inventory and graph are merged per site into
``otsec-assets-latest`` / ``otsec-edges-latest`` by the cluster (see merge.py). Whatever
the cluster does not take goes to a bounded on-disk spool (spool.py), delivered in order
by the next run or `otsec ship`.
Credentials come from the environment (or files it names), never from the command line.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from otsec.sinks.bulk import Delivery, digest, send
from otsec.sinks.mappings import (
    HEARTBEATS,
    LATEST_ALERTS,
    LATEST_INCIDENTS,
    POLICY,
    component_templates,
    index_templates,
    lifecycle_policy,
)
from otsec.sinks.merge import merge_action
from otsec.sinks.spool import (
    FINDING,
    WORTH_NAMES,
    Action,
    Spool,
    Stored,
    default_spool_dir,
    default_state_dir,
    sensor_spool,
    warn_once,
)
from otsec.timefmt import epoch

__all__ = ["Delivery", "Spool", "default_spool_dir", "default_state_dir", "deliver", "digest",
           "send", "sensor_spool"]

log = logging.getLogger(__name__)
for _noisy in ("opensearch", "elastic_transport.transport"):  # they log every refused request
    logging.getLogger(_noisy).setLevel(logging.ERROR)
REQUEST_TIMEOUT = 30.0  # seconds a request may take before it counts as failed


class SearchError(Exception):
    """The cluster cannot be used (unreachable, refused, misconfigured)."""


class SecretError(SearchError):
    """A secret the environment names cannot be read (a user error)."""


def _secret(name: str) -> str | None:
    value = os.environ.get(name)
    path = os.environ.get(f"{name}_FILE")
    if value is None and path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from None
    return value


def redact(url: str) -> str:
    """The URL as it may be shown: a password in it becomes ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _options(url: str) -> dict[str, Any]:
    """Client options from the environment: auth, CA, fingerprint; TLS verified by default."""
    opts: dict[str, Any] = {"hosts": [url], "request_timeout": REQUEST_TIMEOUT}
    api_key = _secret("OTSEC_ES_API_KEY")
    user, password = os.environ.get("OTSEC_ES_USERNAME"), _secret("OTSEC_ES_PASSWORD")
    if api_key:
        opts["api_key"] = api_key
    elif user and password:
        opts["basic_auth"] = (user, password)
    if ("api_key" in opts or "basic_auth" in opts) and not url.startswith("https"):
        warn_once(f"plain-http:{redact(url)}", "%s: credentials are sent over plain http, "
                  "readable on the network; use https", redact(url), logger=log)
    if url.startswith("https"):
        verify = os.environ.get("OTSEC_ES_VERIFY", "true").lower() not in ("0", "false", "no")
        opts["verify_certs"] = verify
        if os.environ.get("OTSEC_ES_CA_FILE"):
            opts["ca_certs"] = os.environ["OTSEC_ES_CA_FILE"]
        if os.environ.get("OTSEC_ES_FINGERPRINT"):
            opts["ssl_assert_fingerprint"] = os.environ["OTSEC_ES_FINGERPRINT"]
    return opts


def preload() -> None:
    """Import both clients now: a sensor that gives up root may no longer read them."""
    import elasticsearch.helpers  # noqa: F401
    import opensearchpy.helpers  # noqa: F401


def connect(url: str, flavor: str | None = None) -> tuple[Any, str]:
    """The official client for the cluster behind ``url``: asked, unless ``flavor`` is given."""
    opts = _options(url)
    if flavor is None:
        from opensearchpy import OpenSearch
        from opensearchpy.exceptions import OpenSearchException

        probe = _opensearch_client(OpenSearch, opts)
        try:
            info = probe.info()
        except (OpenSearchException, OSError) as exc:
            raise SearchError(f"{redact(url)}: not reachable ({type(exc).__name__})") from None
        flavor = ("opensearch" if info.get("version", {}).get("distribution") == "opensearch"
                  else "elasticsearch")
        if flavor == "opensearch":
            return probe, flavor
    if flavor == "opensearch":
        from opensearchpy import OpenSearch

        return _opensearch_client(OpenSearch, opts), flavor
    from elasticsearch import Elasticsearch

    return Elasticsearch(**opts), "elasticsearch"


def _opensearch_client(cls: Any, opts: dict[str, Any]) -> Any:
    os_opts = dict(opts)
    os_opts["timeout"] = os_opts.pop("request_timeout")
    if "basic_auth" in os_opts:
        os_opts["http_auth"] = os_opts.pop("basic_auth")
    if "api_key" in os_opts:
        os_opts["headers"] = {"Authorization": f"ApiKey {os_opts.pop('api_key')}"}
    return cls(**os_opts)


# -- setup --------------------------------------------------------------------------


def setup(client: Any, flavor: str) -> list[str]:
    """Install component and index templates and the lifecycle policy (idempotent)."""
    notes = []
    for name, body in component_templates().items():
        if flavor == "opensearch":
            client.cluster.put_component_template(name=name, body=body)
        else:
            client.cluster.put_component_template(name=name, **body)
        notes.append(f"component template {name}")
    notes.append(_policy(client, flavor))
    for name, body in index_templates(flavor).items():
        if flavor == "opensearch":
            client.indices.put_index_template(name=name, body=body)
        else:
            client.indices.put_index_template(name=name, **body)
        notes.append(f"index template {name}")
    return notes


def _policy(client: Any, flavor: str) -> str:
    body = lifecycle_policy(flavor)
    try:
        if flavor == "elasticsearch":
            client.ilm.put_lifecycle(name=POLICY, **body)
            return f"ILM policy {POLICY}"
        path = f"/_plugins/_ism/policies/{POLICY}"
        try:
            current = client.transport.perform_request("GET", path)
            params = {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]}
        except Exception:
            params = {}
        client.transport.perform_request("PUT", path, body=body, params=params)
        return f"ISM policy {POLICY}"
    except Exception as exc:
        log.warning("lifecycle policy not installed: %s", exc)
        return (f"lifecycle policy {POLICY} NOT installed ({type(exc).__name__}): "
                "indices keep growing")


# -- documents to actions -------------------------------------------------------------


def finding_actions(alerts: Iterable[dict[str, Any]], incidents: Iterable[dict[str, Any]] = (),
                    namespace: str = "default") -> Iterator[Action]:
    """Alerts and incidents as they are now: each created once in its data stream (its
    first state; a retry or a later state is answered 409, a duplicate), and kept
    current by id in ``otsec-alerts-latest`` / ``otsec-incidents-latest``. A live sensor
    sends the ones that changed since its last flush; one incident stays one document."""
    for stream, latest, docs in (("incident", LATEST_INCIDENTS, incidents),
                                 ("alert", LATEST_ALERTS, alerts)):
        for doc in docs:  # incidents first: what an analyst opens first
            yield {"_op_type": "create", "_index": f"logs-otsec.{stream}-{namespace}",
                   "_id": doc["event"]["id"], "_source": doc}
            yield latest_action(latest, doc)


def latest_action(index: str, doc: dict[str, Any]) -> Action:
    """Overwrite the document with this ``event.id`` unless the cluster holds a later
    state of it (versioned by its end time: a replayed spool never rolls it back)."""
    end = doc["event"].get("end") or doc["@timestamp"]
    return {"_op_type": "index", "_index": index, "_id": doc["event"]["id"],
            "version": int(epoch(end) * 1000), "version_type": "external_gte",
            "_source": doc}


def audit_actions(alerts: list[dict[str, Any]], assets: list[dict[str, Any]],
                  edges: list[dict[str, Any]], events: Iterable[dict[str, Any]] = (),
                  namespace: str = "default", incidents: Iterable[dict[str, Any]] = (),
                  metrics: Iterable[dict[str, Any]] = ()) -> Iterator[Action]:
    yield from finding_actions(alerts, incidents, namespace)
    for kind, docs, latest in (("asset", assets, "otsec-assets-latest"),
                               ("edge", edges, "otsec-edges-latest")):
        for doc in docs:
            yield merge_action(latest, doc)
            yield {"_op_type": "create", "_index": f"logs-otsec.{kind}-{namespace}",
                   "_id": digest(doc), "_source": doc}  # history: one per change
    for stream, docs in (("metric", metrics), ("event", events)):
        for doc in docs:
            yield {"_op_type": "create", "_index": f"logs-otsec.{stream}-{namespace}",
                   "_id": digest(doc), "_source": doc}


def changed_findings(docs: Iterable[dict[str, Any]], sent: dict[str, str],
                     key_of: Callable[[dict[str, Any]], str] = lambda d: d["event"]["id"]
                     ) -> list[dict[str, Any]]:
    """The documents that differ from what was shipped last (``sent``: their keys, by
    default event ids, and digests, updated): what a live sensor sends each flush."""
    out = []
    for doc in docs:
        key, value = key_of(doc), digest(doc)
        if sent.get(key) != value:
            sent[key] = value
            out.append(doc)
    return out


def heartbeat_actions(doc: dict[str, Any], namespace: str = "default") -> list[Action]:
    """A sensor's heartbeat: kept in its data stream, and as the sensor's newest one in
    ``otsec-sensors-latest`` (versioned by its time: a replayed older one changes nothing)."""
    sensor = doc["otsec"]["sensor"]
    millis = int(epoch(doc["@timestamp"]) * 1000)
    return [{"_op_type": "create", "_index": f"{HEARTBEATS}-{namespace}", "_id": digest(doc),
             "_source": doc},
            {"_op_type": "index", "_index": "otsec-sensors-latest",
             "_id": f"{sensor['site']}:{sensor['name']}", "version": millis,
             "version_type": "external", "_source": doc}]


def find(client: Any, flavor: str, index: str, query: dict[str, Any], size: int = 1000,
         sort: list[Any] | None = None) -> list[dict[str, Any]]:
    """The sources of the documents of ``index`` that match (none when it does not exist)."""
    body: dict[str, Any] = {"size": size, "query": query, **({"sort": sort} if sort else {})}
    try:
        if flavor == "opensearch":
            answer = client.search(index=index, body=body)
        else:
            answer = client.search(index=index, **body)
    except Exception as exc:
        if getattr(exc, "status_code", None) == 404:  # both clients' NotFoundError
            return []
        raise SearchError(f"{index}: search failed ({type(exc).__name__}: {exc})") from None
    return [h["_source"] for h in answer["hits"]["hits"]]


# -- delivery ---------------------------------------------------------------------------

BATCH = 1000  # actions read, sent or spooled at a time: shipping runs in bounded memory


def _batches(actions: Iterable[Action]) -> Iterator[list[Action]]:
    batch: list[Action] = []
    for a in actions:
        batch.append(a)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def deliver(url: str | None, actions: Iterable[Action], spool: Spool,
            flavor: str | None = None) -> Delivery:
    """Ship the spool first (order), then ``actions``; spool whatever does not get through.
    Everything is streamed in batches; nothing holds the whole spool in memory. A spool
    that cannot be read or written costs what it could not keep (counted), never the
    caller."""
    total = Delivery()
    client = None
    if url is not None:
        try:
            client, flavor = connect(url, flavor)
        except SearchError as exc:
            total.errors.append(str(exc))
    kind = flavor or "opensearch"
    if client is not None:
        spool.recover()  # files whose writer died are shipped like the others
    if client is not None and spool.files():
        with spool.delivering() as ours:
            if not ours:
                total.errors.append(f"another otsec process is delivering {spool.dir} now")
            for path in spool.files() if ours else []:
                if client is None:
                    break
                client = _ship_file(client, kind, spool, path, total)
    stream = iter(actions)
    if client is not None:
        for batch in _batches(stream):
            result, failed = send(client, kind, batch, spool)
            _add(total, result)
            if failed:
                stream = itertools.chain(failed, stream)
                break
        else:
            stream = iter(())
    stored = spool.put(stream)
    total.spooled = stored.stored
    total.dropped, total.lost = stored.dropped, stored.lost
    total.dropped_by = {WORTH_NAMES[k]: n for k, n in sorted(stored.shed.items()) if n}
    if total.dropped:
        say_dropped(spool, stored)
    return total


def _ship_file(client: Any, kind: str, spool: Spool, path: Path, total: Delivery) -> Any:
    """Deliver one spool file; the client, or None when the cluster stopped taking."""
    def bad() -> None:
        total.dead_lettered += 1

    try:
        pending = spool.read(path, bad)
        for batch in _batches(pending):
            result, failed = send(client, kind, batch, spool)
            _add(total, result)
            if failed:  # keep the order: nothing newer goes before what is still spooled
                spool.rewrite(path, itertools.chain(failed, pending))
                return None
        path.unlink()
    except OSError as exc:
        spool.failed("read or rewrite its files", exc, losing=False)
        return None
    return client


def say_dropped(spool: Spool, stored: Stored) -> None:
    """One line: the spool is full (or cannot be written), and what it did not keep."""
    what = ", ".join(f"{n} {WORTH_NAMES[k]}" for k, n in sorted(stored.shed.items()) if n)
    if stored.lost:
        why, hint = "could not be written", "see the warning about it"
    else:
        why = f"is full ({spool.size():,} of {spool.max_bytes:,} bytes)"
        hint = ("what is worth least goes first; ship it (otsec ship) or give it room "
                "(OTSEC_SPOOL_MAX_BYTES)")
    level = logging.ERROR if stored.shed.get(FINDING) else logging.WARNING
    log.log(level, "spool %s %s: dropped %s; %s", spool.dir, why, what, hint)


def _add(total: Delivery, part: Delivery) -> None:
    total.delivered += part.delivered
    total.duplicates += part.duplicates
    total.dead_lettered += part.dead_lettered
    total.errors.extend(part.errors[: max(0, 20 - len(total.errors))])
