"""``tailor ingest``: process setup around :class:`tailor.ingest.consumer.Ingester`.

:func:`run` configures logging, starts the Prometheus endpoint (127.0.0.1
unless told otherwise), installs SIGTERM/SIGINT handlers that stop fetching
and make everything durable and committed before exiting, and returns the exit
code.  Credentials are never logged: the store is described by its URL only,
and botocore reads the ``AWS_*`` variables itself.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from typing import Any

from tailor import metrics
from tailor.config import IngestConfig
from tailor.ingest.consumer import Ingester
from tailor.ingest.writer import probe
from tailor.shards import load
from tailor.storage import Store

log = logging.getLogger("tailor.ingest")


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("aiokafka").setLevel(logging.WARNING)


#: Allocations at least this big get their own mapping (glibc ``M_MMAP_THRESHOLD``).
MMAP_THRESHOLD = 1 << 20


def _bound_malloc() -> None:
    """Give large buffers back to the system as soon as they are freed.

    glibc raises its mmap threshold every time a large mapped block is freed
    (up to 32 MiB), after which fetch-sized buffers come from the heap, and a
    heap freed in the middle stays resident: about 1/4 of ``--memory-limit``
    more peak RSS in a stalled-store run.  A fixed threshold turns that off.
    No-op where glibc's ``mallopt`` is not available.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        log.debug("mallopt not available: large buffers may stay resident after use")


def _start_metrics(cfg: IngestConfig) -> Any:
    if cfg.metrics_port is None:
        return None
    from prometheus_client import start_http_server

    server, _thread = start_http_server(cfg.metrics_port, addr=cfg.metrics_host,
                                        registry=metrics.REGISTRY)
    log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, server.server_port)
    return server


async def _main(cfg: IngestConfig, store: Store) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ing = Ingester(cfg, store, load(cfg.shards_file))
    topics = ", ".join(cfg.topics) if cfg.topics else f"pattern {cfg.topic_pattern!r}"
    log.info("ingest: group %r, topics %s, raw %s", cfg.group, topics, cfg.raw.url)
    rc = await ing.run(stop)
    if ing.abandoned:
        # A stuck upload must not hold the exit past the deadline: nothing it
        # would write was committed, and rewriting it later is harmless.
        logging.shutdown()
        os._exit(rc or 1)
    return rc


def run(cfg: IngestConfig) -> int:
    """Run one ingest group member until SIGTERM/SIGINT (or idle exit).

    Blocks.  Returns 0 after a clean stop (everything consumed durable and
    committed), 1 if the shutdown deadline passed first.  Raises
    :class:`tailor.errors.ConfigError` for a bad shards file and when the raw
    store cannot be written at start (:func:`tailor.ingest.writer.probe`:
    a missing bucket, no permission), before joining the group.
    """
    _setup_logging()
    _bound_malloc()
    server = _start_metrics(cfg)
    try:
        store = Store(cfg.raw,
                      on_retry=lambda op, st: metrics.STORE_RETRIES.labels(op, st).inc())
        probe(store)
        return asyncio.run(_main(cfg, store))
    finally:
        if server is not None:
            server.shutdown()
