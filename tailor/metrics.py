"""Metric names, declared once.

Prometheus metrics for the ingester live in :data:`REGISTRY`; build stage
names are shared by Dask's ``context_meter`` (fine performance metrics page), the
scheduler's Prometheus endpoint and the build summary.  Import the objects, never
re-spell a name.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY: Final = CollectorRegistry(auto_describe=True)

# -- ingest ---------------------------------------------------------------------
PAYLOADS = Counter("tailor_ingest_payloads", "Valid payloads consumed", registry=REGISTRY)
PAYLOAD_BYTES = Counter("tailor_ingest_payload_bytes", "Bytes of valid payloads consumed",
                        registry=REGISTRY)
QUARANTINED = Counter("tailor_ingest_quarantined", "Invalid payloads quarantined, by reason",
                      ["reason"], registry=REGISTRY)
CONSUMER_LAG = Gauge("tailor_ingest_consumer_lag", "Records behind the partition's high water",
                     ["topic", "partition"], registry=REGISTRY)
BUFFERED_BYTES = Gauge("tailor_ingest_buffered_bytes", "Payload bytes waiting for a flush",
                       registry=REGISTRY)
FLUSH_SECONDS = Histogram("tailor_ingest_flush_seconds", "Time to make one batch durable",
                          registry=REGISTRY,
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
OBJECT_BYTES = Histogram("tailor_ingest_object_bytes", "Size of raw objects written",
                         registry=REGISTRY,
                         buckets=tuple(float(2**k) for k in range(10, 31, 2)))
STORE_RETRIES = Counter("tailor_store_retries", "Object store retries, by operation and status",
                        ["op", "status"], registry=REGISTRY)
STORE_WRITE_FAILURES = Counter(
    "tailor_store_write_failures",
    "Batch writes that failed (each is retried with backoff), by reason: the S3 error code, "
    "timeout, connection, or the exception class", ["reason"], registry=REGISTRY)
OLDEST_UNFLUSHED = Gauge("tailor_ingest_oldest_unflushed_seconds",
                         "Age of the oldest batch not durable yet (open or being written)",
                         registry=REGISTRY)
COMMITS = Counter("tailor_ingest_commits", "Offset commits after durable flushes",
                  registry=REGISTRY)
PAUSES = Counter("tailor_ingest_backpressure_pauses",
                 "Times fetching paused on the memory bound", registry=REGISTRY)

# -- shard balance (`tailor shards report --metrics-file`, issue 13) ----------------
#: Its own registry: written as a node_exporter textfile by a one-shot command.
SHARDS_REGISTRY: Final = CollectorRegistry(auto_describe=True)
LARGEST_CHUNK = Gauge("tailor_shards_largest_chunk_points",
                      "Estimated points of the window's largest chunk (from the index)",
                      ["window"], registry=SHARDS_REGISTRY)
CHUNK_SKEW = Gauge("tailor_shards_chunk_skew",
                   "Largest chunk / median chunk of the window (estimated points)",
                   ["window"], registry=SHARDS_REGISTRY)

# -- build stages (Dask context_meter labels and summary keys) --------------------
STAGE_READ: Final = "read"
STAGE_ZSTD: Final = "zstd"
STAGE_DECODE: Final = "decode"
STAGE_SORT: Final = "sort"
STAGE_ENCODE: Final = "encode"
STAGE_WRITE: Final = "write"
STAGES: Final = (STAGE_READ, STAGE_ZSTD, STAGE_DECODE, STAGE_SORT, STAGE_ENCODE, STAGE_WRITE)
#: The stages above on the scheduler's ``/metrics`` (compute/monitor.py): a counter
#: family with labels ``stage`` and ``task`` (Dask task prefix).
BUILD_STAGE_SECONDS: Final = "tailor_build_stage_seconds"
#: Store retries inside build tasks, counted through ``context_meter`` under labels
#: ``store-retry:{op}:{status}`` (unit ``count``) and served on the scheduler's
#: ``/metrics`` as this counter family with labels ``op``, ``status`` and ``task``.
BUILD_STORE_RETRIES: Final = "tailor_build_store_retries"
STORE_RETRY_LABEL: Final = "store-retry"
