"""A loopback TCP proxy that can cut every connection, for broker outage game days.

``TcpProxy(port, upstream_port)`` accepts on ``127.0.0.1:port`` and pipes
each connection to ``127.0.0.1:upstream_port``.  :meth:`TcpProxy.cut` drops
every open connection and stops listening, so new connections are refused
(ECONNREFUSED) as when a broker host is down; :meth:`TcpProxy.restore`
listens again on the same port.  Threads only; everything stops on ``close``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class TcpProxy:
    """``with TcpProxy(port, upstream) as p: ...; p.cut(); ...; p.restore()``."""

    def __init__(self, port: int, upstream_port: int) -> None:
        self.port = port
        self.upstream = ("127.0.0.1", upstream_port)
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.accepted = 0  # connections accepted, over the proxy's life
        self.cuts = 0

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cut()

    def restore(self) -> None:
        """Listen again (no-op when listening).  Raises OSError if the port is taken."""
        with self.lock:
            if self.listener is not None:
                return
            self.listener = socket.create_server(("127.0.0.1", self.port))
            threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and drop every open connection (both directions)."""
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, set()
            self.cuts += 1
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut: the listener was closed
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                if self.listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self.conns |= {client, upstream}
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        """Copy ``src`` → ``dst`` until either side closes; then close both."""
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns -= {src, dst}
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
