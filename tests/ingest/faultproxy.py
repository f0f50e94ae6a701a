"""A fault-injecting HTTP reverse proxy on loopback, in front of the moto S3 server.

It forwards every request unchanged, except that a share ``fail_rate`` of them
(decided by a seeded RNG) is answered with S3's ``503 SlowDown`` error, and
each forwarded request may be delayed by ``delay_s``, and requests whose path
contains one of the strings in ``held`` wait (up to ``hold_max_s``) until
that string is removed with :meth:`FaultProxy.release`.  It counts requests
by method and outcome so tests can see faults were injected, and keeps the
path and body of every forwarded PUT whose path contains ``record``, and
records every request's method and path.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tailor.testing.services import free_port

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message>"
            b"<RequestId>faultproxy</RequestId></Error>")
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer",
        "upgrade", "content-length"}


class FaultProxy:
    """``with FaultProxy(upstream, fail_rate=0.3) as p: p.endpoint_url``."""

    def __init__(self, upstream: str, *, fail_rate: float = 0.0, delay_s: float = 0.0,
                 seed: int = 0, held: tuple[str, ...] = (), hold_max_s: float = 120.0,
                 record: str | None = None) -> None:
        u = urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.fail_rate = fail_rate
        self.delay_s = delay_s
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.held = set(held)
        self.hold_max_s = hold_max_s
        self.record = record
        self.puts: list[tuple[float, str, bytes]] = []  # (monotonic, path, body) recorded
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.closing = threading.Event()  # cuts injected delays short on close
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def hold(self, *what: str) -> None:
        """Hold requests whose path contains any of ``what`` too."""
        with self.changed:
            self.held |= set(what)

    def release(self, *what: str) -> None:
        """Stop holding requests whose path contains ``what`` (all when empty)."""
        with self.changed:
            self.held -= set(what) if what else set(self.held)
            self.changed.notify_all()

    def _hold(self, path: str) -> None:
        deadline = time.monotonic() + self.hold_max_s
        with self.changed:
            while any(h in path for h in self.held) and not self.closing.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(min(left, 0.2))

    def _decide(self) -> bool:
        with self.lock:
            return self.rng.random() < self.fail_rate

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    for _ in range(1 << 20):  # bounded: chunks of one request
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline().strip():  # trailers
                                pass
                            break
                        out += self.rfile.read(size)
                        self.rfile.readline()
                    return bytes(out)
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                if self.command == "HEAD":
                    length = next((v for k, v in headers if k.lower() == "content-length"), "0")
                    self.send_header("Content-Length", length)
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _any(self) -> None:
                body = self._body()
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                if proxy._decide():
                    with proxy.lock:
                        proxy.counts[f"{self.command} 503"] += 1
                    self._send(503, [("Content-Type", "application/xml")], SLOWDOWN)
                    return
                if proxy.delay_s:
                    proxy.closing.wait(proxy.delay_s)
                proxy._hold(self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self._send(resp.status, resp.getheaders(), data)
                finally:
                    conn.close()
                with proxy.lock:
                    proxy.counts[f"{self.command} {resp.status}"] += 1
                    if self.command == "PUT" and proxy.record and proxy.record in self.path \
                            and resp.status == 200:
                        proxy.puts.append((time.monotonic(), self.path, body))

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        return Handler
