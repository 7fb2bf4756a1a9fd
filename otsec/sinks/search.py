"""Elasticsearch / OpenSearch: templates, bulk delivery, and a spool so nothing is lost.

Alerts go to data stream ``logs-otsec.alert-<namespace>`` with ``create`` and their
deterministic ``event.id`` as ``_id`` (a retry answered 409 counts as delivered, so
delivery is exactly-once); the current inventory and graph are merged per site into
``otsec-assets-latest`` / ``otsec-edges-latest`` by the cluster (see merge.py). Whatever
the cluster does not take goes to a bounded on-disk spool, delivered in order by the next
run or `otsec ship`.
Credentials come from the environment (or files it names), never from the command line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from otsec.sinks.mappings import (
    HEARTBEATS,
    POLICY,
    component_templates,
    index_templates,
    lifecycle_policy,
)
from otsec.sinks.merge import merge_action
from otsec.timefmt import epoch

log = logging.getLogger(__name__)
for _noisy in ("opensearch", "elastic_transport.transport"):  # they log every refused request
    logging.getLogger(_noisy).setLevel(logging.ERROR)
SPOOL_MAX_BYTES = int(os.environ.get("OTSEC_SPOOL_MAX_BYTES", str(1 << 30)))


class SearchError(Exception):
    """The cluster cannot be used (unreachable, refused, misconfigured)."""


class SecretError(SearchError):
    """A secret the environment names cannot be read (a user error)."""


Action = dict[str, Any]  # {"_op_type", "_index", "_id"?, "_source"}


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
    opts: dict[str, Any] = {"hosts": [url], "request_timeout": 30}
    api_key = _secret("OTSEC_ES_API_KEY")
    user, password = os.environ.get("OTSEC_ES_USERNAME"), _secret("OTSEC_ES_PASSWORD")
    if api_key:
        opts["api_key"] = api_key
    elif user and password:
        opts["basic_auth"] = (user, password)
    if ("api_key" in opts or "basic_auth" in opts) and not url.startswith("https"):
        log.warning("%s: credentials are sent over plain http, readable on the network; "
                    "use https", redact(url))
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


def digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def audit_actions(alerts: list[dict[str, Any]], assets: list[dict[str, Any]],
                  edges: list[dict[str, Any]], events: Iterable[dict[str, Any]] = (),
                  namespace: str = "default", incidents: Iterable[dict[str, Any]] = (),
                  metrics: Iterable[dict[str, Any]] = ()) -> Iterator[Action]:
    for doc in incidents:  # first: what an analyst opens first (one per change of it)
        yield {"_op_type": "create", "_index": f"logs-otsec.incident-{namespace}",
               "_id": digest(doc), "_source": doc}
    for doc in alerts:
        yield {"_op_type": "create", "_index": f"logs-otsec.alert-{namespace}",
               "_id": doc["event"]["id"], "_source": doc}
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


# -- delivery and the spool -----------------------------------------------------------

BATCH = 1000  # actions read, sent or spooled at a time: shipping runs in bounded memory


@dataclass
class Delivery:
    delivered: int = 0
    duplicates: int = 0  # 409 on create: delivered before
    spooled: int = 0
    dropped: int = 0  # spool full
    dead_lettered: int = 0  # unreadable spool lines and documents the cluster rejected
    errors: list[str] = field(default_factory=list)


class Spool:
    """Append-only NDJSON files, delivered oldest first; bounded in bytes. What can never
    be delivered (a line that is not JSON, a document the cluster rejects as such) goes to
    ``dead-letter.ndjson`` with its reason, so that it never blocks what comes after it."""

    def __init__(self, directory: Path | None = None, max_bytes: int = SPOOL_MAX_BYTES) -> None:
        default = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
        self.dir = directory or Path(os.environ.get("OTSEC_SPOOL_DIR", default / "otsec" /
                                                    "spool"))
        self.max_bytes = max_bytes

    @property
    def dead_letter(self) -> Path:
        return self.dir / "dead-letter.ndjson"

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("spool-*.ndjson")) if self.dir.is_dir() else []

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files())

    def oldest(self) -> float | None:
        """When the oldest spooled file was written (epoch seconds), None when empty."""
        files = self.files()
        return min(f.stat().st_mtime for f in files) if files else None

    def put(self, actions: Iterable[Action]) -> tuple[int, int]:
        """Write actions to a new spool file; return (spooled, dropped for lack of room)."""
        room = self.max_bytes - self.size()
        stored = dropped = 0
        tmp = name = None
        fh = None
        try:
            for a in actions:
                line = json.dumps(a, separators=(",", ":")) + "\n"
                if room < len(line):
                    dropped += 1
                    continue
                if fh is None:
                    self.dir.mkdir(parents=True, exist_ok=True)
                    name = self.dir / (f"spool-{time.time_ns():020d}-{os.getpid()}-"
                                       f"{digest({'n': line})[:8]}.ndjson")
                    tmp = name.with_suffix(".tmp")
                    fh = tmp.open("w", encoding="utf-8")
                room -= len(line)
                stored += 1
                fh.write(line)
        finally:
            if fh is not None:
                fh.close()
        if tmp is not None and name is not None:
            os.replace(tmp, name)
        return stored, dropped

    def bury(self, reason: str, action: Action | None = None, line: str | None = None) -> None:
        """Set aside what cannot be delivered, with why (appended, one JSON line each)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"reason": reason[:1000], "at": time.time()}
        if action is not None:
            entry["action"] = action
        if line is not None:
            entry["line"] = line[:100_000]
        with self.dead_letter.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def dead_count(self) -> int:
        if not self.dead_letter.exists():
            return 0
        with self.dead_letter.open("rb") as fh:
            return sum(1 for _ in fh)

    def read(self, path: Path, result: Delivery) -> Iterator[Action]:
        """The actions of one spool file, streamed; lines that are not actions are buried."""
        with path.open(encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    action = json.loads(line)
                    if not isinstance(action, dict) or "_index" not in action:
                        raise ValueError("not a bulk action")
                except ValueError as exc:
                    self.bury(f"{path.name}:{n}: unreadable spool line ({exc})", line=line)
                    result.dead_lettered += 1
                    continue
                yield action


def _batches(actions: Iterable[Action]) -> Iterator[list[Action]]:
    batch: list[Action] = []
    for a in actions:
        batch.append(a)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _rejected(status: Any) -> bool:
    """The cluster refuses this document as it is (mapping, parsing, size): sending it again
    cannot succeed. Throttling, server errors and refusals of the whole request (auth,
    blocks) are retried later instead."""
    return status in (400, 413)


def send(client: Any, flavor: str, actions: list[Action], spool: Spool | None = None
         ) -> tuple[Delivery, list[Action]]:
    """Bulk with retries and backoff on 429/5xx; returns the result and what is still to
    be delivered. Documents the cluster rejects go to the spool's dead letters."""
    if flavor == "opensearch":
        from opensearchpy import helpers
    else:
        from elasticsearch import helpers  # type: ignore[no-redef]
    result = Delivery()
    failed: list[Action] = []
    try:
        for (ok, item), action in zip(helpers.streaming_bulk(
                client, actions, chunk_size=500, max_retries=5, initial_backoff=1,
                max_backoff=30, raise_on_error=False, raise_on_exception=False), actions,
                strict=False):
            info = next(iter(item.values()))
            status = info.get("status")
            if ok:
                result.delivered += 1
            elif status == 409 and (action.get("_op_type") == "create" or
                                    action.get("version_type") == "external"):
                result.duplicates += 1  # there, or newer there (an update's 409 is a
                # conflict: retried later)
            elif _rejected(status) and spool is not None:
                spool.bury(f"rejected by the cluster ({status}): {info.get('error')}", action)
                result.dead_lettered += 1
            else:
                failed.append(action)
                if len(result.errors) < 5:
                    result.errors.append(str(info.get("error"))[:300])
    except Exception as exc:
        done = result.delivered + result.duplicates + result.dead_lettered + len(failed)
        failed.extend(actions[done:])
        result.errors.append(f"{type(exc).__name__}: {exc}"[:300])
    return result, failed


def deliver(url: str | None, actions: Iterable[Action], spool: Spool,
            flavor: str | None = None) -> Delivery:
    """Ship the spool first (order), then ``actions``; spool whatever does not get through.
    Everything is streamed in batches; nothing holds the whole spool in memory."""
    total = Delivery()
    client = None
    if url is not None:
        try:
            client, flavor = connect(url, flavor)
        except SearchError as exc:
            total.errors.append(str(exc))
    kind = flavor or "opensearch"
    for path in spool.files():
        if client is None:
            break
        pending = spool.read(path, total)
        for batch in _batches(pending):
            result, failed = send(client, kind, batch, spool)
            _add(total, result)
            if failed:  # keep the order: nothing newer goes before what is still spooled
                _rewrite(path, itertools.chain(failed, pending))
                client = None
                break
        else:
            path.unlink()
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
    total.spooled, total.dropped = spool.put(stream)
    return total


def _rewrite(path: Path, actions: Iterable[Action]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for a in actions:
            fh.write(json.dumps(a, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def _add(total: Delivery, part: Delivery) -> None:
    total.delivered += part.delivered
    total.duplicates += part.duplicates
    total.dead_lettered += part.dead_lettered
    total.errors.extend(part.errors)
