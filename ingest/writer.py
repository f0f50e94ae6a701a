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


def object_record(b: Batch, written_ns: int) -> ObjectRecord:
    """The index record of the sealed object batch ``b``."""
    assert b.kind == OBJECT and b.min_intake_ns is not None and b.max_intake_ns is not None
    return ObjectRecord(
        key=layout.object_key(b.key, b.batch_id), shard=b.key, batch_id=b.batch_id,
        bytes=b.nbytes, payloads=b.payloads, points=b.points,
        min_ts=b.min_ts if b.min_ts is not None else 0,
        max_ts=b.max_ts if b.max_ts is not None else 0,
        min_intake_ns=b.min_intake_ns, max_intake_ns=b.max_intake_ns, topics=list(b.topics),
        offsets=[OffsetRange(topic=t, partition=p, first=r[0], last=r[1])
                 for (t, p), r in sorted(b.ranges.items())],
        orgs=sorted(b.orgs), hours=hour_counts(b.hours), written_ns=written_ns,
        **_volume(b))


def _volume(b: Batch) -> dict[str, Any]:
    """``org_points``/``org_bytes`` (parallel to ``sorted(b.orgs)``) and ``org_hours``."""
    if not b.volumes:
        return {}
    v = OrgVolume.merge(b.volumes, MAX_ORG_HOURS)
    pts = dict(zip(v.org.tolist(), v.points.tolist(), strict=True))
    nbytes = dict(zip(v.org.tolist(), v.nbytes.tolist(), strict=True))
    orgs = sorted(b.orgs)
    return {"org_points": [pts.get(o, 0) for o in orgs],
            "org_bytes": [nbytes.get(o, 0) for o in orgs], "org_hours": v.triples()}


def contiguous(b: Batch) -> bytes | bytearray:
    """The bytes of the sealed batch ``b`` in one buffer, which then replaces its
    chunks (so a retry finds it joined).  Each chunk is dropped once copied:
    the batch is never held twice over, even while it is being joined."""
    if len(b.chunks) == 1:
        return b.chunks[0]
    # Grown chunk by chunk (realloc moves big blocks by remapping, not copying):
    # bytearray(n) would touch all n bytes while every chunk is still alive.
    buf = bytearray()
    chunks = b.chunks[::-1]
    b.chunks = []
    while chunks:
        buf += chunks.pop()
    assert len(buf) == b.nbytes, (len(buf), b.nbytes)
    b.chunks = [buf]
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

    def write(self, b: Batch) -> str:
        """Make ``b`` durable; return the key of its object (or quarantine object).

        Blocks for the uploads (multipart above ``part_size``, up to
        ``concurrency`` parts at once over all writes).  Raises
        :class:`tailor.errors.StorageError` with the failing key when the
        store keeps failing; nothing may be committed then, and calling again
        is safe.
        """
        if b.kind != OBJECT:
            return quarantine.write(self.store, b, concurrency=self.concurrency)
        key = layout.object_key(b.key, b.batch_id)
        data = contiguous(b)
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
        rec = object_record(b, time.time_ns()).dumps()
        for index_key in layout.index_keys(b.key, b.hours, b.batch_id):
            self.store.put(index_key, rec)
        return key
