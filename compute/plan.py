"""Plan a chunk from the ingest index alone: index records → byte-range read tasks.

The pure core is :func:`plan_chunk` (records in, :class:`ChunkPlan` out, no
I/O).  :func:`list_records` is the only I/O: it lists
``index/{raw_shard}/{hour}/`` for the window's hours of every source of the
shard, and the coarser index buckets holding the window (never the whole
bucket), and reads the records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tailor.errors import BuildError
from tailor.format import layout
from tailor.format.records import InputObject, ObjectRecord
from tailor.shards import ShardMap
from tailor.storage import Store

#: Points sampled per merge partition to choose splitters.
SAMPLES_PER_PARTITION = 256


@dataclass(frozen=True, slots=True)
class ReadTask:
    """Read the frames that *start* in ``[start, end)`` of raw object ``key``."""

    key: str
    start: int
    end: int
    size: int  # the whole object's size in bytes


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Everything a chunk build needs, decided before any raw byte is read."""

    shard: str
    start: int
    length: int
    tasks: tuple[ReadTask, ...]
    inputs: tuple[InputObject, ...]
    est_points: int  # upper bound from the index (hour granularity)
    partitions: int
    sample_stride: int  # every sample_stride-th decoded point is a splitter sample

    @property
    def end(self) -> int:
        return self.start + self.length


def partitioning(est_points: int, rows_per_partition: int) -> tuple[int, int]:
    """``(merge partitions, sample stride)`` for about ``est_points`` points (pure).

    The stride makes about :data:`SAMPLES_PER_PARTITION` splitter samples per
    partition; 0 (no sampling) with one partition.
    """
    parts = max(1, math.ceil(est_points / max(1, rows_per_partition)))
    return parts, (max(1, est_points // (parts * SAMPLES_PER_PARTITION)) if parts > 1 else 0)


def split_ranges(key: str, size: int, range_bytes: int) -> list[ReadTask]:
    """``[0, size)`` cut into consecutive ranges of at most ``range_bytes``."""
    if range_bytes <= 0:
        raise BuildError("range_bytes must be positive", fix="pass --range-bytes 32MiB")
    return [ReadTask(key, a, min(a + range_bytes, size), size)
            for a in range(0, size, range_bytes)]


def plan_chunk(
    shard: str,
    start: int,
    length: int,
    records: Iterable[tuple[ObjectRecord, int | None]],
    *,
    range_bytes: int,
    rows_per_partition: int,
) -> ChunkPlan:
    """Pure planner.

    ``records`` are ``(record, org_filter)`` pairs as found under the index
    of each source raw shard; ``org_filter`` is the source's org (only that
    org's points may belong to the shard) or None.  Records are deduplicated
    by object key; objects that cannot hold a wanted org, or no point of the
    window, are skipped.  Tasks are in (key, start) order, so the same
    index gives the same plan.
    """
    hour0 = layout.window_start(start, layout.HOUR)
    by_key: dict[str, ObjectRecord] = {}
    points: dict[str, int] = {}
    for rec, org in records:
        if org is not None and org not in rec.orgs:
            continue
        if rec.max_ts < start or rec.min_ts >= start + length or rec.key in by_key:
            continue
        n = rec.points_in(hour0, start + length - hour0)
        if n > 0:  # a record of a coarse index bucket may hold no point of this window
            by_key[rec.key], points[rec.key] = rec, n
    keys = sorted(by_key)
    tasks: list[ReadTask] = []
    est = 0
    for k in keys:
        tasks += split_ranges(k, by_key[k].bytes, range_bytes)
        est += points[k]
    parts, stride = partitioning(est, rows_per_partition)
    inputs = tuple(InputObject(key=k, bytes=by_key[k].bytes, batch_id=by_key[k].batch_id,
                               written_ns=by_key[k].written_ns) for k in keys)
    return ChunkPlan(shard, start, length, tuple(tasks), inputs, est, parts, stride)


def list_records(raw: Store, shard_map: ShardMap, shard: str, start: int, length: int,
                 *, threads: int = 16) -> list[tuple[ObjectRecord, int | None]]:
    """Read the index records of every source of ``shard`` for the window: those
    under its hours and under the coarser buckets holding it
    (:func:`tailor.format.layout.index_dirs`; :func:`plan_chunk` drops the records of
    objects with no point in the window).

    On S3 the GETs run on up to ``threads`` threads.

    Blocks on the store; raises :class:`~tailor.errors.StorageError` when the
    store fails and :class:`BuildError` for a record that does not parse.
    """
    wanted: list[tuple[str, int | None]] = []
    for raw_shard, org in shard_map.sources(shard):
        for folder in layout.index_dirs(raw_shard, start, start + length):
            for key in raw.list(folder + "/"):
                if key.endswith(".json"):
                    wanted.append((key, org))
    wanted = list(dict.fromkeys(wanted))

    def fetch(item: tuple[str, int | None]) -> tuple[ObjectRecord, int | None]:
        key, org = item
        data = raw.get(key)
        try:
            return ObjectRecord.model_validate_json(data), org
        except ValueError as exc:
            raise BuildError("index record does not parse", key=key, reason=str(exc)[:200],
                             fix="the ingest index is damaged; re-run ingest for that batch "
                                 "or remove the record") from None

    if not raw.is_s3 or len(wanted) <= 1:  # a local directory gains nothing from threads
        return [fetch(w) for w in wanted]
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(wanted)))) as pool:
        return list(pool.map(fetch, wanted))


def plan(raw: Store, shard_map: ShardMap, shard: str, start: int, length: int, *,
         range_bytes: int, rows_per_partition: int) -> ChunkPlan:
    """List the index and plan one chunk (see :func:`plan_chunk`)."""
    return plan_chunk(shard, start, length, list_records(raw, shard_map, shard, start, length),
                      range_bytes=range_bytes, rows_per_partition=rows_per_partition)


def chunk_label(shard: str, start: int) -> str:
    return f"{shard}/{layout.stamp(start)}"
