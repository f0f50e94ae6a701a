"""Quarantine entries: invalid records kept with their coordinates and reason.

A quarantine batch holds the invalid records of one ``(topic, partition)`` as
JSON lines of :class:`tailor.format.records.QuarantineEntry` (made by
:class:`tailor.ingest.classify.Classifier`).  Each entry is written to its own
object, ``layout.quarantine_key(topic, partition, offset)``: the coordinates
alone name it, so an operator finds a record with one GET, and writing a batch
again (a retry, or Kafka redelivering after a crash, however the records are
batched then) rewrites the same keys: every invalid record is quarantined
exactly once.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from tailor.format import layout
from tailor.format.records import QuarantineEntry
from tailor.ingest.batcher import QUARANTINE, Batch
from tailor.storage import Store


def entries(batch: Batch) -> list[tuple[str, bytes | bytearray]]:
    """``(key, entry JSON)`` of every record of the sealed quarantine batch ``batch``."""
    assert batch.kind == QUARANTINE and len(batch.ranges) == 1
    ((topic, partition),) = batch.ranges
    out = []
    for chunk in batch.chunks:
        for line in chunk.splitlines():
            if line.strip():
                offset = int(json.loads(line)["offset"])
                out.append((layout.quarantine_key(topic, partition, offset), line))
    return out


def write(store: Store, batch: Batch, *, concurrency: int = 8) -> str:
    """Write every entry of ``batch`` (up to ``concurrency`` at once); return the
    key of its first one.  Blocks until all are durable.

    Raises :class:`tailor.errors.StorageError` (with the key) when the store
    keeps failing; writing again later rewrites the same keys.
    """
    todo = entries(batch)
    if not todo:
        return f"quarantine/{batch.key}/"
    if len(todo) == 1 or concurrency <= 1:
        for key, data in todo:
            store.put(key, data)
    else:
        with ThreadPoolExecutor(min(concurrency, len(todo)), "tailor-quarantine") as pool:
            list(pool.map(lambda kd: store.put(*kd), todo))
    return todo[0][0]


def read(store: Store, key: str) -> list[QuarantineEntry]:
    """The entries of one quarantine object."""
    return [QuarantineEntry.model_validate_json(line)
            for line in store.get(key).splitlines() if line.strip()]
