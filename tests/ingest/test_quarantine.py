"""Quarantine entries are keyed by their coordinates: writing them again, batched
differently (a retry, a redelivery after a crash), keeps each record once."""

from __future__ import annotations

from pathlib import Path

from tailor.config import FlushPolicy, StoreConfig
from tailor.format import layout
from tailor.ingest import quarantine
from tailor.ingest.batcher import Batch, Batcher, Invalid
from tailor.ingest.classify import classify_one
from tailor.shards import ShardMap
from tailor.storage import Store

SMAP = ShardMap(shared_shards=4)


def _batch(offsets: list[int]) -> Batch:
    b = Batcher(FlushPolicy())
    b.assign([("t", 3)])
    for off in offsets:
        item = classify_one("t", 3, off, b"12x", b"junk", None, SMAP)
        assert isinstance(item, Invalid) and b.add(item, 0.0)
    (sealed,) = b.seal_all()
    return sealed


def test_rewriting_differently_batched_entries_keeps_each_once(tmp_path: Path) -> None:
    store = Store(StoreConfig(url=str(tmp_path)))
    quarantine.write(store, _batch([5, 9]))  # durable, then the ingester died uncommitted
    quarantine.write(store, _batch([5, 9, 14]), concurrency=2)  # redelivered, batched anew
    keys = store.list("quarantine/")
    assert keys == [layout.quarantine_key("t", 3, o) for o in (5, 9, 14)]
    entries = [e for k in keys for e in quarantine.read(store, k)]
    assert [(e.offset, e.reason) for e in entries] == [(5, "bad_key"), (9, "bad_key"),
                                                       (14, "bad_key")]
