"""The Dask task graphs of a build: plan a unit, then build it fused or by exchange.

A *unit* is up to a few consecutive windows of one shard.  ``plan_unit``
lists the ingest index for them (one task).  Then:

- a unit small enough for one task (:func:`fusable`: one merge partition per
  chunk, all its points within one partition's budget) runs as one
  ``build_unit`` task: read, decode, sort, encode and publish every chunk of
  the unit in a row, paying the scheduler once instead of per stage;
- otherwise the unit is a distributed sort (:mod:`~tailor.compute.exchange`):
  map tasks decode each byte range once and route its rows to key-range
  partitions, reduce tasks sort, dedupe, encode and write each partition.

Every task is pure given its inputs (a part file is written under the
build's attempt id with deterministic bytes), so the scheduler may rerun any
of them after a worker dies; that costs time, never correctness.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from distributed import Client
from distributed.metrics import context_meter

from tailor.config import StoreConfig
from tailor.errors import TailorError
from tailor.format.records import Manifest, PartFile
from tailor.metrics import STAGE_READ, STAGE_WRITE
from tailor.shards import ShardMap
from tailor.storage import Store

from . import merge
from .background_writer import Job, Writer
from .decode import Points, Report, alloc_points, capacity, decode_into, finish
from .monitor import count_store_retry
from .plan import ChunkPlan, ReadTask, plan
from .publish import encode_part, publish, put_part
from .read import RawRange, read_range

#: Times the scheduler retries a task that raised (storage hiccups); a dead
#: worker's tasks are rescheduled anyway (``distributed.scheduler.allowed-failures``).
RETRIES = 2


@functools.lru_cache(maxsize=8)
def store(cfg: StoreConfig) -> Store:
    """One Store per process and config (s3fs clients are costly to create); its
    retries are counted per task (:func:`~tailor.compute.monitor.count_store_retry`)."""
    return Store(cfg, on_retry=count_store_retry)


@dataclass(frozen=True, slots=True)
class PartResult:
    file: PartFile
    duplicates: int
    rows_in: int
    min_ts: int | None
    max_ts: int | None


@dataclass(frozen=True, slots=True)
class Published:
    """The result of a chunk's publish task."""

    manifest: Manifest
    corrupt: list[tuple[str, int]]
    invalid: list[tuple[str, int, str]]
    rows_in: int
    decoded: tuple[int, int]  # (frames, points) the chunk's unit decoded, each range once


# -- tasks (module-level: they run on workers) -----------------------------------
def t_plan_unit(raw: StoreConfig, shard_map: ShardMap, shard: str, starts: tuple[int, ...],
                length: int, range_bytes: int, rows_per_partition: int
                ) -> list[ChunkPlan | str]:
    """The plans of one unit's chunks (windows ``starts`` of ``shard``), in order.

    A chunk whose planning fails (a damaged index record, a store that keeps
    failing) gets its error text in its place; the others are still planned.
    """
    out: list[ChunkPlan | str] = []
    for start in starts:
        try:
            out.append(plan(store(raw), shard_map, shard, start, length, range_bytes=range_bytes,
                            rows_per_partition=rows_per_partition))
        except TailorError as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def t_plan_units(raw: StoreConfig, shard_map: ShardMap, units: list[tuple[str, tuple[int, ...]]],
                 length: int, range_bytes: int, rows_per_partition: int
                 ) -> list[list[ChunkPlan | str]]:
    """:func:`t_plan_unit` for several ``(shard, starts)`` units (S3: a few at a time)."""
    def one(u: tuple[str, tuple[int, ...]]) -> list[ChunkPlan | str]:
        return t_plan_unit(raw, shard_map, u[0], u[1], length, range_bytes, rows_per_partition)
    if not store(raw).is_s3 or len(units) <= 1:
        return [one(u) for u in units]
    with ThreadPoolExecutor(min(UNIT_READERS, len(units))) as pool:
        return list(pool.map(one, units))


def fusable(plans: list[ChunkPlan], rows_per_partition: int) -> bool:
    """Whether a unit runs as one ``build_unit`` task (pure).

    True when every chunk needs one merge partition and the unit's estimated
    points (an upper bound from the index) fit in one partition's budget, so
    one task never holds more than a part task of the graph would.
    """
    return (all(cp.partitions <= 1 for cp in plans)
            and sum(cp.est_points for cp in plans) <= rows_per_partition)


def _range_windows(plans: list[ChunkPlan]) -> dict[ReadTask, tuple[tuple[int, int], ...]]:
    """Byte range → the windows (of ``plans``, one shard) that need its points."""
    wins: dict[ReadTask, set[tuple[int, int]]] = {}
    for cp in plans:
        for t in cp.tasks:
            wins.setdefault(t, set()).add((cp.start, cp.end))
    return {t: tuple(sorted(w)) for t, w in wins.items()}


#: Concurrent ranged GETs inside one ``build_unit`` or map task on S3 (hides its latency).
UNIT_READERS = 8

#: A byte range to decode and the ts interval ``[lo, hi)`` of the windows that need it.
RangeItem = tuple[ReadTask, int, int]


def range_items(plans: list[ChunkPlan]) -> list[RangeItem]:
    """Every distinct byte range of a unit once, in (key, start) order, with the span of
    the unit's windows whose plans list it (pure)."""
    wins = _range_windows(plans)
    return [(t, w[0][0], w[-1][1])
            for t, w in sorted(wins.items(), key=lambda kv: (kv[0].key, kv[0].start))]


def decode_ranges(raw: StoreConfig, shard_map: ShardMap, shard: str, items: list[RangeItem], *,
                  readers: int = 0) -> tuple[Points, dict[ReadTask, Report]]:
    """Fetch, frame-scan (CRC-check) and decode each range of ``items`` once, in order,
    straight into one set of columns; returns the rows (of ``shard``) and each range's report.

    Every range is fetched and scanned first (its frame table sizes the columns;
    ``readers`` > 1 fetches on that many threads), then decoded and let go in
    turn: the task holds its raw bytes and its rows, never a second copy of the
    rows.  Raises what the read raises (:class:`~tailor.errors.StorageError`, ...).
    """
    readers = min(readers, len(items))
    with ThreadPoolExecutor(max(1, readers)) as pool:
        fetched = (pool.map if readers > 1 else map)(
            lambda it: read_range(store(raw), it[0]), items)
        with context_meter.meter(STAGE_READ):  # waiting for the GETs (threads aren't metered)
            rrs: list[RawRange | None] = list(fetched)
    out = alloc_points(sum(capacity(rr) for rr in rrs if rr is not None))
    n = 0
    reports: dict[ReadTask, Report] = {}
    for i, (t, lo, hi) in enumerate(items):
        rr = rrs[i]
        assert rr is not None
        rrs[i] = None  # its bytes go once decoded
        n, reports[t] = decode_into(rr, out, n, lo, hi)
        del rr
    return finish(out, n, shard, shard_map), reports


def _unit_rows(raw: StoreConfig, shard_map: ShardMap, plans: list[ChunkPlan], *, readers: int = 0
               ) -> tuple[dict[int, tuple[Points, int, int]], dict[ReadTask, Report]]:
    """Read and decode every byte range of a unit once; one sort split by window.

    Returns ``window start → (rows, duplicates, rows in)`` and each range's report.
    """
    rows, reports = decode_ranges(raw, shard_map, plans[0].shard, range_items(plans),
                                  readers=readers)
    edges = sorted({e for cp in plans for e in (cp.start, cp.end)})
    return dict(zip(edges, merge.sort_dedup_windows([rows], edges), strict=True)), reports


def decoded(reports: Iterable[Report]) -> tuple[int, int]:
    """``(frames, points)`` decoded over ``reports`` (one per distinct range)."""
    rs = list(reports)
    return sum(r.frames for r in rs), sum(r.points for r in rs)


#: A chunk handed to the writer (its publish and the seconds its job took), or the
#: error text of a chunk that failed before.
Pending = list["Job[tuple[Published, float]] | str"]


def _start_unit(raw: StoreConfig, out: StoreConfig, shard_map: ShardMap, plans: list[ChunkPlan],
                attempts: list[str], writer: Writer) -> Pending:
    """Read, decode, sort and encode a :func:`fusable` unit here; hand each chunk's part
    write and publish to ``writer``.  Raises what the read raises."""
    readers = UNIT_READERS if store(raw).is_s3 else 0  # local: page cache
    rows, reports = _unit_rows(raw, shard_map, plans, readers=readers)
    unit = decoded(reports.values())
    pending: Pending = []
    for cp, attempt in zip(plans, attempts, strict=True):
        try:
            key, data, part = _encoded(cp.shard, cp.start, attempt, 0, *rows.pop(cp.start))
            pending.append(writer.submit(_put_publish, out, cp, attempt, key, data, part,
                                         [reports[t] for t in cp.tasks], unit))
        except (TailorError, OSError) as exc:
            pending.append(f"{type(exc).__name__}: {exc}")
    return pending


def _put_publish(out: StoreConfig, cp: ChunkPlan, attempt: str, key: str, data: bytes,
                 part: PartResult, reports: list[Report], unit: tuple[int, int]
                 ) -> tuple[Published, float]:
    """Writer job: put the part (none for a chunk without rows), then publish the chunk.

    Returns the publish and the job's seconds: the writer's thread has no task
    context, so the store meters inside (``publish``'s included) record nothing,
    and the task digests this figure as its write stage (:func:`_results`)."""
    t0 = time.perf_counter()
    if key:
        put_part(store(out), key, data)
    published = t_publish(out, cp, attempt, [part], reports, unit)
    return published, time.perf_counter() - t0


def _results(pending: Pending) -> list[Published | str]:
    """Wait for each chunk's job: its publish, or the error text of its failure."""
    results: list[Published | str] = []
    for job in pending:
        if isinstance(job, str):
            results.append(job)
            continue
        try:
            published, seconds = job.result()
        except (TailorError, OSError) as exc:
            results.append(f"{type(exc).__name__}: {exc}")
            continue
        context_meter.digest_metric(STAGE_WRITE, seconds, "seconds")
        results.append(published)
    return results


def t_build_unit(raw: StoreConfig, out: StoreConfig, shard_map: ShardMap,
                 plans: list[ChunkPlan], attempts: list[str]) -> list[Published | str]:
    """Build and publish every chunk of a :func:`fusable` unit in this one task.

    Byte ranges are fetched concurrently (S3: :data:`UNIT_READERS` threads) and
    decoded once; one sort splits the unit's points by window; each chunk's
    part write and publish run on a :class:`~tailor.compute.background_writer.Writer`
    while the next chunk encodes.  Returns when all are done.  A read error
    raises (the scheduler retries the task, the chunks fail together); a chunk
    whose encode or publish fails yields its error text in its place and its
    siblings still publish.
    """
    with Writer() as writer:
        pending = _start_unit(raw, out, shard_map, plans, attempts, writer)
    return _results(pending)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def release_heap() -> None:
    """Give the free pages of the C heap back to the OS (glibc ``malloc_trim``; else no-op).

    Workers keep arrays under 16 MiB on the heap (``WORKER_MALLOC`` in
    build.py); called at the end of a heavy task, so the next task's peak is its
    own data, not the free holes the last one left.  Takes milliseconds.
    """
    if _TRIM is not None:
        _TRIM(0)


def _encoded(shard: str, start: int, attempt: str, p: int, rows: Points, dups: int,
             rows_in: int) -> tuple[str, bytes, PartResult]:
    """Part ``p`` encoded, not yet put: ``(key, bytes, result)``; key "" for no rows (no file)."""
    n = len(rows)
    key, data, f = encode_part(shard, start, attempt, p, rows) if n else ("", b"", PartFile(
        path="", rows=0, row_offset=0, bytes=0, sha256="", min_key=[], max_key=[]))
    lo = int(rows.ts.min()) if n else None
    hi = int(rows.ts.max()) if n else None
    return key, data, PartResult(f, dups, rows_in, lo, hi)


def _part(out: StoreConfig, shard: str, start: int, attempt: str, p: int, rows: Points,
          dups: int, rows_in: int) -> PartResult:
    """Encode and put part ``p`` (sorted unique ``rows``; none: no file)."""
    key, data, part = _encoded(shard, start, attempt, p, rows, dups, rows_in)
    if key:
        with context_meter.meter(STAGE_WRITE):
            put_part(store(out), key, data)
    return part


def t_publish(out: StoreConfig, cplan: ChunkPlan, attempt: str, parts: list[PartResult],
              reports: list[Report], unit_decoded: tuple[int, int]) -> Published:
    """Publish one chunk from its parts (in partition order) and its ranges' reports."""
    lows = [r.min_ts for r in parts if r.min_ts is not None]
    highs = [r.max_ts for r in parts if r.max_ts is not None]
    corrupt = sorted({c for rep in reports for c in rep.corrupt})
    invalid = sorted({c for rep in reports for c in rep.invalid})
    m = publish(store(out), cplan.shard, cplan.start, cplan.length, attempt,
                [r.file for r in parts], list(cplan.inputs),
                min_ts=min(lows) if lows else None, max_ts=max(highs) if highs else None,
                corrupt=len(corrupt), invalid=len(invalid),
                duplicates=sum(r.duplicates for r in parts))
    return Published(m, corrupt, invalid, sum(r.rows_in for r in parts), unit_decoded)


# -- graph -----------------------------------------------------------------------
def submit_plans(client: Client, raw: StoreConfig, shard_map: ShardMap,
                 units: list[tuple[str, tuple[int, ...]]], length: int, range_bytes: int,
                 rows_per_partition: int, tasks: int, tag: str) -> list[tuple[list[int], Any]]:
    """Plan ``units`` in at most ``tasks`` tasks (a plan costs ~1 ms; a task ~3 ms of overhead).

    Returns ``(unit indices, future of their plan lists)`` per task.
    """
    out = []
    for k in range(min(tasks, len(units))):
        idx = list(range(k, len(units), tasks))
        fut = client.submit(t_plan_units, raw, shard_map, [units[i] for i in idx], length,
                            range_bytes, rows_per_partition, key=f"plan-{k}-{tag}",
                            retries=RETRIES)
        out.append((idx, fut))
    return out


def t_build_units(raw: StoreConfig, out: StoreConfig, shard_map: ShardMap,
                  units: list[tuple[list[ChunkPlan], list[str]]]) -> list[list[Published | str]]:
    """:func:`t_build_unit` for several small units in a row (one task's overhead).

    A unit whose read fails (a missing object, a store that keeps failing)
    yields its error text for each of its chunks; the other units still build.
    """
    pending: list[Pending] = []
    with Writer() as writer:  # unit k's writes and publishes run while unit k + 1 computes
        for plans, attempts in units:
            try:
                pending.append(_start_unit(raw, out, shard_map, plans, attempts, writer))
            except (TailorError, OSError) as exc:
                pending.append([f"{type(exc).__name__}: {exc}"] * len(plans))
    release_heap()
    return [_results(p) for p in pending]


def submit_units(client: Client, raw: StoreConfig, out: StoreConfig, shard_map: ShardMap,
                 units: list[tuple[list[ChunkPlan], list[str]]], tag: str) -> Any:
    """A future of :func:`t_build_units`'s results; bigger tasks are scheduled first."""
    est = sum(cp.est_points for plans, _ in units for cp in plans)
    return client.submit(t_build_units, raw, out, shard_map, units, key=f"unit-{tag}",
                         retries=RETRIES, priority=est)


def pack(sizes: list[int], target: int) -> list[list[int]]:
    """Indices of ``sizes`` in bins of about ``target`` (pure): biggest first, small ones
    gathered until a bin reaches ``target``, so tiny units do not each pay a task."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    bins: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i in order:
        if sizes[i] >= target:
            bins.append([i])
            continue
        cur.append(i)
        total += sizes[i]
        if total >= target:
            bins.append(cur)
            cur, total = [], 0
    return bins + ([cur] if cur else [])
