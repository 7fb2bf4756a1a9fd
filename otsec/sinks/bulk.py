"""Bulk requests with retries, each answer matched to its action by id.

The bulk API answers one item per action, but a retry sends only what failed, and a
proxy or a client helper may hand the items back in another order: pairing answers with
actions by position then credits one document with another's fate. Here every action
carries an ``_id`` (a digest of its document when it has none) and each answer goes to
the action with its operation and id; an action that gets no answer is tried again. So
each document ends delivered, retried, spooled, or set aside with its own error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from otsec.sinks.spool import Action, Spool

log = logging.getLogger(__name__)

CHUNK = 500  # actions per request
CHUNK_BYTES = 10 << 20  # bytes per request


@dataclass
class Retries:
    """How often and how patiently throttled or failed items are sent again."""

    attempts: int = 6  # sends of one item, the first included
    backoff: float = 1.0  # seconds before the first retry, doubling each time
    max_backoff: float = 30.0


RETRIES = Retries()


@dataclass
class Delivery:
    delivered: int = 0
    duplicates: int = 0  # 409 on create: delivered before
    spooled: int = 0
    dropped: int = 0  # spool full or not writable (shed or turned away)
    dropped_by: dict[str, int] = field(default_factory=dict)  # what kind of documents
    lost: int = 0  # of dropped: not spooled because the spool could not be written
    dead_lettered: int = 0  # unreadable spool lines and documents the cluster rejected
    errors: list[str] = field(default_factory=list)


def digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def with_id(action: Action) -> Action:
    """The action with an ``_id``: its own, else a digest of its document (the same
    document twice is one document, and its answer can be found)."""
    if action.get("_id"):
        return action
    return {**action, "_id": digest(action.get("_source", {}))}


_META = ("_index", "_id", "version", "version_type", "retry_on_conflict", "routing",
         "pipeline", "if_seq_no", "if_primary_term")


def _lines(action: Action) -> bytes:
    """The two NDJSON lines of one action."""
    op = action.get("_op_type", "index")
    meta = {k: action[k] for k in _META if k in action}
    head = json.dumps({op: meta}, separators=(",", ":"))
    body = json.dumps(action.get("_source", {}), separators=(",", ":"))
    return f"{head}\n{body}\n".encode()


def _chunks(actions: list[Action]) -> Iterator[list[tuple[Action, bytes]]]:
    chunk: list[tuple[Action, bytes]] = []
    size = 0
    for a in actions:
        data = _lines(a)
        if chunk and (len(chunk) >= CHUNK or size + len(data) > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((a, data))
        size += len(data)
    if chunk:
        yield chunk


def _request(client: Any, flavor: str, chunk: list[tuple[Action, bytes]]) -> list[Any]:
    """One bulk request; its items as the cluster answered them."""
    if flavor == "opensearch":
        answer = client.bulk(body=b"".join(d for _a, d in chunk).decode())
    else:
        lines = [line for _a, d in chunk for line in d.splitlines()]
        answer = client.bulk(operations=lines).body
    return list(answer.get("items") or [])


def _key(op: Any, _id: Any) -> tuple[str, str]:
    return str(op), str(_id)


def matched(actions: list[Action], items: Iterable[Any]) -> list[dict[str, Any] | None]:
    """For each action, the answer item with its operation and id (None: no answer)."""
    waiting: dict[tuple[str, str], deque[int]] = {}
    for i, a in enumerate(actions):
        waiting.setdefault(_key(a.get("_op_type", "index"), a.get("_id")), deque()).append(i)
    out: list[dict[str, Any] | None] = [None] * len(actions)
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        op, info = next(iter(item.items()))
        if not isinstance(info, dict):
            continue
        queue = waiting.get(_key(op, info.get("_id")))
        if queue:
            out[queue.popleft()] = info
    return out


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a failed request (both clients), None when there was none."""
    for value in (getattr(exc, "status_code", None),
                  getattr(getattr(exc, "meta", None), "status", None)):
        if isinstance(value, int):
            return value
    return None


def _rejected(status: Any) -> bool:
    """The cluster refuses this document as it is (mapping, parsing, size): sending it again
    cannot succeed. Throttling, server errors and refusals of the whole request (auth,
    blocks) are retried later instead."""
    return status in (400, 413)


def _retry_now(status: Any) -> bool:
    """Worth another try within this delivery: throttled, busy, a conflict of updates."""
    return status in (409, 429) or (isinstance(status, int) and status >= 500)


def send(client: Any, flavor: str, actions: list[Action], spool: Spool | None = None,
         retries: Retries | None = None) -> tuple[Delivery, list[Action]]:
    """Bulk with retries and backoff on 429/5xx; returns the result and what is still to
    be delivered (to spool). Documents the cluster rejects go to the spool's dead letters,
    each with its own error."""
    retries = retries or RETRIES
    result = Delivery()
    failed: list[Action] = []
    chunks = _chunks([with_id(a) for a in actions])
    for chunk in chunks:
        pending, down = _send_chunk(client, flavor, chunk, spool, retries, result, failed)
        failed.extend(a for a, _d in pending)
        if down:  # unreachable or hanging: the rest waits in the spool, not for timeouts
            failed.extend(a for rest in chunks for a, _d in rest)
            break
    return result, failed


def _send_chunk(client: Any, flavor: str, chunk: list[tuple[Action, bytes]],
                spool: Spool | None, retries: Retries, result: Delivery,
                failed: list[Action]) -> tuple[list[tuple[Action, bytes]], bool]:
    """One chunk, retried; what is left of it, and whether the cluster is out of reach."""
    pending = chunk
    for attempt in range(retries.attempts):
        if attempt:
            time.sleep(min(retries.max_backoff, retries.backoff * 2 ** (attempt - 1)))
        try:
            items = _request(client, flavor, pending)
        except Exception as exc:
            status = status_of(exc)
            _note(result, f"{type(exc).__name__}: {exc}")
            if status == 429 or (status is not None and status >= 500):
                continue  # the whole request throttled or refused for now
            if _rejected(status):  # the request as a whole (too large, a bad line)
                return _split(client, flavor, pending, spool, retries, result, failed,
                              status, exc), False
            return pending, status is None
        again = []
        for (action, data), info in zip(pending, matched([a for a, _ in pending], items),
                                        strict=True):
            if _settled(result, action, info, spool):
                continue
            if info is not None and not _retry_now(info.get("status")):
                failed.append(action)  # retried later (auth, missing index ...)
                continue
            again.append((action, data))
        pending = again
        if not pending:
            break
    return pending, False


def _split(client: Any, flavor: str, pending: list[tuple[Action, bytes]],
           spool: Spool | None, retries: Retries, result: Delivery, failed: list[Action],
           status: int | None, exc: Exception) -> list[tuple[Action, bytes]]:
    """A request refused as a whole: its halves are sent apart until the one action that
    causes it is alone, and set aside (so it never blocks the spool)."""
    if len(pending) == 1:
        info = {"status": status, "error": f"the request was refused: {exc}"[:500]}
        return [] if _settled(result, pending[0][0], info, spool) else pending
    half = len(pending) // 2
    first, down = _send_chunk(client, flavor, pending[:half], spool, retries, result, failed)
    if down:
        return first + pending[half:]
    second, _down = _send_chunk(client, flavor, pending[half:], spool, retries, result, failed)
    return first + second


def _settled(result: Delivery, action: Action, info: dict[str, Any] | None,
             spool: Spool | None) -> bool:
    """Count an answered action that needs nothing more; False when it does."""
    if info is None:
        _note(result, f"no answer for {action.get('_op_type')} {action.get('_id')}")
        return False
    status = info.get("status")
    if isinstance(status, int) and 200 <= status < 300:
        result.delivered += 1
        return True
    if status == 409 and (action.get("_op_type") == "create" or
                          str(action.get("version_type", "")).startswith("external")):
        result.duplicates += 1  # there already, or a newer version is there
        return True
    reason = f"rejected by the cluster ({status}): {info.get('error')}"
    if _rejected(status) and spool is not None and spool.bury(reason, action):
        result.dead_lettered += 1
        return True
    _note(result, str(info.get("error") or status))
    return False


def _note(result: Delivery, error: str) -> None:
    if len(result.errors) < 5:
        result.errors.append(error[:300])
