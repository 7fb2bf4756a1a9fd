"""A fault-injecting HTTP proxy in front of a real search node, on 127.0.0.1.

Everything passes through to the node, except what a test asks for: a ``_bulk`` item
answered with a status of the test's choosing (that item is then not sent to the node,
so it is really missing until it is sent again), the items of an answer handed back in
another order, or answers held back for a while (a hanging cluster).
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (operation, its metadata, how often this operation and id were seen before) -> a status
# to answer instead of the node's, or None to pass it on
Fault = Callable[[str, dict[str, Any], int], int | None]

ERRORS = {
    429: {"type": "es_rejected_execution_exception", "reason": "injected: queue full"},
    503: {"type": "unavailable_shards_exception", "reason": "injected: shard not ready"},
    400: {"type": "mapper_parsing_exception", "reason": "injected: bad document"},
}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fault: Fault = lambda _op, _meta, _seen: None
        self.shuffle = False
        self.delay = 0.0  # seconds before each _bulk answer
        # the metadata of a request's actions -> a status refusing the whole request
        self.refuse: Callable[[list[dict[str, Any]]], int | None] = lambda _metas: None
        self.seen: Counter[tuple[str, str]] = Counter()
        self.injected: list[tuple[str, str, int]] = []  # (op, id, status)
        self.lock = threading.Lock()
        self.rng = random.Random(7)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _forward(self, method: str, path: str, body: bytes | None,
                 headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.upstream + path, data=body, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        headers = {k: v for k, v in h.headers.items()
                   if k.lower() in ("content-type", "accept", "authorization")}
        if h.path.split("?")[0].endswith("/_bulk") and body:
            status, out_headers, data = self._bulk(h.command, h.path, body, headers)
            if self.delay:
                time.sleep(self.delay)
        else:
            status, out_headers, data = self._forward(h.command, h.path, body, headers)
        h.send_response(status)
        for k, v in out_headers.items():
            if k.lower() in ("content-type", "x-elastic-product"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _bulk(self, method: str, path: str, body: bytes, headers: dict[str, str]
              ) -> tuple[int, dict[str, str], bytes]:
        lines = [x for x in body.splitlines() if x.strip()]
        pairs = []
        i = 0
        while i < len(lines):
            head = json.loads(lines[i])
            op, meta = next(iter(head.items()))
            has_body = op != "delete"
            pairs.append((op, meta, lines[i:i + 1 + has_body]))
            i += 1 + has_body
        refused = self.refuse([meta for _op, meta, _raw in pairs])
        if refused is not None:
            error = {"error": {"type": "injected", "reason": "request refused"},
                     "status": refused}
            return refused, {"Content-Type": "application/json"}, json.dumps(error).encode()
        answers: list[dict[str, Any] | None] = []
        passed: list[bytes] = []
        with self.lock:
            for op, meta, raw in pairs:
                key = (op, str(meta.get("_id")))
                status = self.fault(op, meta, self.seen[key])
                self.seen[key] += 1
                if status is None:
                    answers.append(None)
                    passed.extend(raw)
                else:
                    self.injected.append((op, key[1], status))
                    answers.append({op: {"_index": meta.get("_index"), "_id": meta.get("_id"),
                                         "status": status,
                                         "error": ERRORS.get(status, {"type": "injected"})}})
        out_headers = {"Content-Type": "application/json"}
        items: list[Any] = []
        if passed:
            status, out_headers, data = self._forward(method, path, b"\n".join(passed) + b"\n",
                                                      headers)
            if status != 200:
                return status, out_headers, data
            items = json.loads(data)["items"]
        real = iter(items)
        merged = [a if a is not None else next(real) for a in answers]
        if self.shuffle:
            self.rng.shuffle(merged)
        errors = any(next(iter(m.values())).get("status", 500) >= 300 for m in merged)
        return 200, out_headers, json.dumps({"took": 1, "errors": errors,
                                             "items": merged}).encode()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
