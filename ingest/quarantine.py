"""Quarantine objects: invalid records kept with their coordinates and reason.

A quarantine batch holds the invalid records of one ``(topic, partition)`` as
JSON lines of :class:`tailor.records.QuarantineEntry` (made by
:func:`tailor.ingest.batcher.classify`).  It is written at
``layout.quarantine_key(topic, partition, first, last, batch_id)``: the key
alone says which offsets it covers, so an operator can find a record by its
coordinates with one listing.
"""

from __future__ import annotations

from tailor import layout
from tailor.ingest.batcher import QUARANTINE, Batch
from tailor.records import QuarantineEntry
from tailor.storage import Store


def object_key(b: Batch) -> str:
    """Where the quarantine batch ``b`` (sealed, one partition) is written."""
    assert b.kind == QUARANTINE and len(b.ranges) == 1
    ((topic, partition), (first, last, _)), = b.ranges.items()
    return layout.quarantine_key(topic, partition, first, last, b.batch_id)


def write(store: Store, b: Batch) -> str:
    """Write ``b`` and return its key.  Blocks until durable.

    Raises :class:`tailor.errors.StorageError` (with the key) when the store
    keeps failing; writing again later rewrites the same key.
    """
    key = object_key(b)
    store.put(key, b.data())
    return key


def read(store: Store, key: str) -> list[QuarantineEntry]:
    """The entries of one quarantine object."""
    return [QuarantineEntry.model_validate_json(line)
            for line in store.get(key).splitlines() if line.strip()]
