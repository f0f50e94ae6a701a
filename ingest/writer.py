"""Make a sealed batch durable: the raw object, then its index records.

Order matters and is the whole point: the object first, then one
:class:`tailor.format.records.ObjectRecord` copy under ``index/{shard}/{hour}/`` for
every hour of point ts the object holds points of (or, for an object whose
points spread over many hours, one copy per coarser bucket of hours:
:func:`tailor.format.layout.index_placement`, at most
:data:`tailor.format.layout.MAX_INDEX_COPIES` copies), and only when all of them
are durable does :meth:`Writer.write` return (after which the consumer may
commit the offsets).  A batch whose payloads hold no point at all gets no
index record (a build has nothing to find in it).  Keys are deterministic per
batch, so writing the same sealed batch again after a failure or a crash
rewrites the same keys.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from tailor.errors import ConfigError, StorageError
from tailor.format import layout
from tailor.format.records import MAX_ORG_HOURS, ObjectRecord, OffsetRange, hour_counts
from tailor.ingest import quarantine
from tailor.ingest.batcher import OBJECT, Batch
from tailor.ingest.orgvolume import OrgVolume
from tailor.storage import Store
from tailor.store_failures import failure_reason

log = logging.getLogger("tailor.ingest")


def object_record(batch: Batch, written_ns: int) -> ObjectRecord:
    """The index record of the sealed object batch ``batch``."""
    assert (batch.kind == OBJECT and batch.min_intake_ns is not None
            and batch.max_intake_ns is not None)
    return ObjectRecord(
        key=layout.object_key(batch.key, batch.batch_id), shard=batch.key,
        batch_id=batch.batch_id,
        bytes=batch.nbytes, payloads=batch.payloads, points=batch.points,
        min_ts=batch.min_ts if batch.min_ts is not None else 0,
        max_ts=batch.max_ts if batch.max_ts is not None else 0,
        min_intake_ns=batch.min_intake_ns, max_intake_ns=batch.max_intake_ns,
        topics=list(batch.topics),
        offsets=[OffsetRange(topic=t, partition=p, first=r[0], last=r[1])
                 for (t, p), r in sorted(batch.ranges.items())],
        orgs=sorted(batch.orgs), hours=hour_counts(batch.hours), written_ns=written_ns,
        **_volume(batch))


def _volume(batch: Batch) -> dict[str, Any]:
    """``org_points``/``org_bytes`` (parallel to ``sorted(b.orgs)``) and ``org_hours``."""
    if not batch.volumes:
        return {}
    v = OrgVolume.merge(batch.volumes, MAX_ORG_HOURS)
    pts = dict(zip(v.org.tolist(), v.points.tolist(), strict=True))
    nbytes = dict(zip(v.org.tolist(), v.nbytes.tolist(), strict=True))
    orgs = sorted(batch.orgs)
    return {"org_points": [pts.get(o, 0) for o in orgs],
            "org_bytes": [nbytes.get(o, 0) for o in orgs], "org_hours": v.triples()}


def contiguous(batch: Batch) -> bytes | bytearray:
    """The bytes of the sealed batch ``batch`` in one buffer, which then replaces its
    chunks (so a retry finds it joined).  Each chunk is dropped once copied:
    the batch is never held twice over, even while it is being joined."""
    if len(batch.chunks) == 1:
        return batch.chunks[0]
    # Grown chunk by chunk (realloc moves big blocks by remapping, not copying):
    # bytearray(n) would touch all n bytes while every chunk is still alive.
    buf = bytearray()
    chunks = batch.chunks[::-1]
    batch.chunks = []
    while chunks:
        buf += chunks.pop()
    assert len(buf) == batch.nbytes, (len(buf), batch.nbytes)
    batch.chunks = [buf]
    return buf


def probe(store: Store) -> None:
    """Check that ``store`` takes writes: put a small object under ``_probe/``, delete it.

    Blocks (the store retries transient errors itself).  Raises
    :class:`tailor.errors.ConfigError` (the CLI exits 2) naming the store and
    the fix when the put fails; a failed delete is only logged (the object is
    harmless and nothing reads ``_probe/``).
    """
    key = layout.probe_key(f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        store.put(key, b"tailor ingest write probe\n")
    except StorageError as exc:
        reason = failure_reason(exc)
        fix = exc.fix if reason in ("NoSuchBucket", "NotFound") or exc.fix is None else (
            f"{exc.fix}; check that the store URL, --s3-endpoint-url and the AWS_* "
            "credentials allow writing there")
        raise ConfigError(f"the raw store {store.url} cannot be written", key=key,
                          reason=exc.context.get("reason", reason), fix=fix) from None
    try:
        store.delete([key])
    except StorageError as exc:
        log.warning("could not delete the write probe %s (harmless): %s", key, exc)


class Writer:
    """Writes sealed batches to the raw store.  Thread-safe; every call blocks.

    Memory: a batch's bytes are joined once into one buffer that replaces its
    chunks (:func:`contiguous`), so a write, and every retry, holds one copy
    of them, not two.  Multipart parts are copied by the S3 client, so parts
    in flight are shared out among all writes (``concurrency`` tokens, each
    write one at least): at most ``concurrency * part_size`` bytes of part
    copies exist at any time, however many batches are being written.
    """

    def __init__(self, store: Store, *, part_size: int, concurrency: int) -> None:
        self.store = store
        self.part_size = part_size
        self.concurrency = concurrency
        self._parts = threading.BoundedSemaphore(concurrency)

    def write(self, batch: Batch) -> str:
        """Make ``batch`` durable; return the key of its object (or quarantine object).

        Blocks for the uploads (multipart above ``part_size``, up to
        ``concurrency`` parts at once over all writes).  Raises
        :class:`tailor.errors.StorageError` with the failing key when the
        store keeps failing; nothing may be committed then, and calling again
        is safe.
        """
        if batch.kind != OBJECT:
            return quarantine.write(self.store, batch, concurrency=self.concurrency)
        key = layout.object_key(batch.key, batch.batch_id)
        data = contiguous(batch)
        want = min(self.concurrency, -(-len(data) // self.part_size))
        self._parts.acquire()
        held = 1
        try:
            while held < want and self._parts.acquire(blocking=False):
                held += 1
            self.store.put(key, data, part_size=self.part_size, concurrency=held)
        finally:
            for _ in range(held):
                self._parts.release()
        rec = object_record(batch, time.time_ns()).dumps()
        for index_key in layout.index_keys(batch.key, batch.hours, batch.batch_id):
            self.store.put(index_key, rec)
        return key
