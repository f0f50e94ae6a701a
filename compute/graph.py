"""The Dask task graphs of a build: plan a unit, then build it fused or as a graph.

A *unit* is up to a few consecutive windows of one shard.  ``plan_unit``
lists the ingest index for them (one task).  Then:

- a unit small enough for one task (:func:`fusable`: one merge partition per
  chunk, all its points within ``rows_per_partition``) runs as one
  ``build_unit`` task: read, decode, sort, encode and publish every chunk of
  the unit in a row, paying the scheduler once instead of per stage;
- a bigger unit gets the graph below, one per chunk, its byte ranges shared::

    load[i] (read + zstd + decode)  ─┬─ report[i] ────────────────────────┐
      (one per byte range and build, ├                                    │
       shared by all its windows)    │                                    │
                                     ├─ sample[i] ─ splitters ─┐          │
                                     └──────────── split[i] ◄──┘          │
                               piece[i][p] ─► part[p] (sort+encode+put) ─► publish

With one partition there is no sampling: ``part[0]`` takes the loads.  A byte
range that holds points of several windows of the shard being built (late
points, an object spanning a window edge, a catch-up build) is read and
decoded once: :func:`submit_loads` gives each chunk its window's share.
Every task is pure given its inputs (a part file is written under the
build's attempt id with deterministic bytes), so the scheduler may rerun any
of them after a worker dies; that costs time, never correctness.
"""

from __future__ import annotations

import functools
import operator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from distributed import Client
from distributed.metrics import context_meter

from tailor import layout
from tailor.config import StoreConfig
from tailor.errors import TailorError
from tailor.metrics import STAGE_READ
from tailor.records import Manifest, PartFile
from tailor.shards import ShardMap
from tailor.storage import Store

from . import merge
from .decode import Points, decode_range
from .plan import ChunkPlan, ReadTask, plan
from .publish import publish, write_part
from .read import read_range

#: Times the scheduler retries a task that raised (storage hiccups); a dead
#: worker's tasks are rescheduled anyway (``distributed.scheduler.allowed-failures``).
RETRIES = 2


@functools.lru_cache(maxsize=8)
def store(cfg: StoreConfig) -> Store:
    """One Store per process and config (s3fs clients are costly to create)."""
    return Store(cfg)


@dataclass(frozen=True, slots=True)
class Report:
    """What one range's decoder found wrong, for the build summary."""

    frames: int
    corrupt: list[tuple[str, int]]
    invalid: list[tuple[str, int, str]]


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


# -- tasks (module-level: they run on workers) -----------------------------------
def t_plan_unit(raw: StoreConfig, smap: ShardMap, shard: str, starts: tuple[int, ...],
                length: int, range_bytes: int, rows_per_partition: int
                ) -> list[ChunkPlan | str]:
    """The plans of one unit's chunks (windows ``starts`` of ``shard``), in order.

    A chunk whose planning fails (a damaged index record, a store that keeps
    failing) gets its error text in its place; the others are still planned.
    """
    out: list[ChunkPlan | str] = []
    for start in starts:
        try:
            out.append(plan(store(raw), smap, shard, start, length, range_bytes=range_bytes,
                            rows_per_partition=rows_per_partition))
        except TailorError as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def fusable(plans: list[ChunkPlan], rows_per_partition: int) -> bool:
    """Whether a unit runs as one ``build_unit`` task (pure).

    True when every chunk needs one merge partition and the unit's estimated
    points (an upper bound from the index) fit in one partition's budget, so
    one task never holds more than a part task of the graph would.
    """
    return (all(cp.partitions <= 1 for cp in plans)
            and sum(cp.est_points for cp in plans) <= rows_per_partition)


def t_load(raw: StoreConfig, task: ReadTask, shard: str, smap: ShardMap,
           windows: tuple[tuple[int, int], ...]) -> list[Points]:
    """Read and decode one byte range once; its points split by ``windows``."""
    with context_meter.meter(STAGE_READ):
        rr = read_range(store(raw), task)
    pts = decode_range(rr, shard, smap, windows[0][0], windows[-1][1])
    if len(windows) == 1:
        return [pts]
    out = []
    for a, b in windows:
        part = pts.take((pts.ts >= a) & (pts.ts < b))
        part.frames, part.corrupt, part.invalid = pts.frames, pts.corrupt, pts.invalid
        out.append(part)
    return out


def _range_windows(plans: list[ChunkPlan]) -> dict[ReadTask, tuple[tuple[int, int], ...]]:
    """Byte range → the windows (of ``plans``, one shard) that need its points."""
    wins: dict[ReadTask, set[tuple[int, int]]] = {}
    for cp in plans:
        for t in cp.tasks:
            wins.setdefault(t, set()).add((cp.start, cp.end))
    return {t: tuple(sorted(w)) for t, w in wins.items()}


#: Concurrent ranged GETs inside one ``build_unit`` task on S3 (hides its latency).
UNIT_READERS = 8


def t_build_unit(raw: StoreConfig, out: StoreConfig, smap: ShardMap,
                 plans: list[ChunkPlan], attempts: list[str]) -> list[Published | str]:
    """Build and publish every chunk of a :func:`fusable` unit in this one task.

    Byte ranges are fetched concurrently (S3: :data:`UNIT_READERS` threads) and
    decoded once; one sort splits the unit's points by window.  A read error
    raises (the scheduler retries the task, the chunks fail together); a chunk
    whose encode or publish fails yields its error text in its place and its
    siblings still publish.
    """
    shard = plans[0].shard
    wins = _range_windows(plans)
    tasks = list(wins)
    loads: list[Points] = []
    reports: dict[ReadTask, Report] = {}
    readers = min(UNIT_READERS, len(tasks)) if store(raw).is_s3 else 0  # local: page cache
    with ThreadPoolExecutor(max(1, readers)) as pool:
        fetched = (pool.map if readers > 1 else map)(lambda t: read_range(store(raw), t), tasks)
        for t in tasks:
            with context_meter.meter(STAGE_READ):  # waiting for the GET (threads aren't metered)
                rr = next(fetched)
            pts = decode_range(rr, shard, smap, wins[t][0][0], wins[t][-1][1])
            reports[t] = t_report(pts)
            loads.append(pts)
    edges = sorted({e for cp in plans for e in (cp.start, cp.end)})
    rows = dict(zip(edges, merge.sort_dedup_windows(loads, edges), strict=True))
    del loads
    results: list[Published | str] = []
    for cp, attempt in zip(plans, attempts, strict=True):
        try:
            part = _part(out, shard, cp.start, attempt, 0, *rows.pop(cp.start))
            results.append(t_publish(out, cp, attempt, 1, part,
                                     *[reports[t] for t in cp.tasks]))
        except (TailorError, OSError) as exc:
            results.append(f"{type(exc).__name__}: {exc}")
    return results


def t_report(pts: Points) -> Report:
    return Report(pts.frames, pts.corrupt, pts.invalid)


def t_sample(pts: Points, stride: int) -> merge.SeriesKeys:
    return merge.sample(pts, stride)


def t_splitters(parts: int, *samples: merge.SeriesKeys) -> merge.SeriesKeys:
    return merge.choose_splitters(list(samples), parts)


def t_split(pts: Points, splitters: merge.SeriesKeys, parts: int) -> list[Points]:
    return merge.split(pts, splitters, parts)


def _part(out: StoreConfig, shard: str, start: int, attempt: str, p: int, rows: Points,
          dups: int, rows_in: int) -> PartResult:
    """Encode and put part ``p`` (sorted unique ``rows``; none: no file)."""
    n = len(rows)
    f = write_part(store(out), shard, start, attempt, p, rows) if n else PartFile(
        path="", rows=0, row_offset=0, bytes=0, sha256="", min_key=[], max_key=[])
    lo = int(rows.ts.min()) if n else None
    hi = int(rows.ts.max()) if n else None
    return PartResult(f, dups, rows_in, lo, hi)


def t_part(out: StoreConfig, shard: str, start: int, attempt: str, p: int,
           *pieces: Points) -> PartResult:
    rows, dups = merge.sort_dedup(list(pieces))
    return _part(out, shard, start, attempt, p, rows, dups, sum(len(x) for x in pieces))


def t_publish(out: StoreConfig, cplan: ChunkPlan, attempt: str, nparts: int,
              *results: Any) -> Published:
    parts: list[PartResult] = list(results[:nparts])
    reports: list[Report] = list(results[nparts:])
    lows = [r.min_ts for r in parts if r.min_ts is not None]
    highs = [r.max_ts for r in parts if r.max_ts is not None]
    corrupt = sorted(c for r in reports for c in r.corrupt)
    invalid = sorted(c for r in reports for c in r.invalid)
    m = publish(store(out), cplan.shard, cplan.start, cplan.length, attempt,
                [r.file for r in parts], list(cplan.inputs),
                min_ts=min(lows) if lows else None, max_ts=max(highs) if highs else None,
                corrupt=len(corrupt), invalid=len(invalid),
                duplicates=sum(r.duplicates for r in parts))
    return Published(m, corrupt, invalid, sum(r.rows_in for r in parts))


# -- graph -----------------------------------------------------------------------
def submit_plan_unit(client: Client, raw: StoreConfig, smap: ShardMap, shard: str,
                     starts: tuple[int, ...], length: int, range_bytes: int,
                     rows_per_partition: int, tag: str) -> Any:
    """A future of the unit's list of :class:`ChunkPlan` (lists the index on a worker)."""
    return client.submit(t_plan_unit, raw, smap, shard, starts, length, range_bytes,
                         rows_per_partition, key=f"plan-{tag}", retries=RETRIES)


def submit_unit(client: Client, raw: StoreConfig, out: StoreConfig, smap: ShardMap,
                plans: list[ChunkPlan], attempts: list[str], tag: str) -> Any:
    """A future of :func:`t_build_unit`'s results; bigger units are scheduled first."""
    return client.submit(t_build_unit, raw, out, smap, plans, attempts, key=f"unit-{tag}",
                         retries=RETRIES, priority=sum(cp.est_points for cp in plans))


def submit_loads(client: Client, raw: StoreConfig, smap: ShardMap, plans: list[ChunkPlan],
                 tag: str) -> list[list[Any]]:
    """Load tasks for ``plans`` (chunks of one unit, one shard): one per distinct byte range.

    Returns, per plan, the futures of its ranges' points in its window.
    """
    shard = plans[0].shard
    spans = _range_windows(plans)
    futures: dict[ReadTask, Any] = {}
    for i, (t, wins) in enumerate(spans.items()):
        futures[t] = client.submit(t_load, raw, t, shard, smap, wins,
                                   key=f"load-{i}-{shard}-{tag}", retries=RETRIES)
    out = []
    for cp in plans:
        mine = []
        for t in cp.tasks:
            j = spans[t].index((cp.start, cp.end))
            mine.append(client.submit(operator.getitem, futures[t], j,
                                      key=f"take-{j}-{shard}-{cp.start}-{t.key}-{t.start}-{tag}"))
        out.append(mine)
    return out


def submit_chunk(client: Client, out: StoreConfig, cplan: ChunkPlan, attempt: str,
                 loads: list[Any]) -> Any:
    """Submit the rest of one chunk's graph on its ``loads`` (see :func:`submit_loads`).

    Returns the future of its :class:`Published`.
    """
    tag = f"{cplan.shard}-{layout.stamp(cplan.start)}-{attempt}"

    def sub(fn: Any, *args: Any, name: str) -> Any:
        return client.submit(fn, *args, key=f"{name}-{tag}", retries=RETRIES)
    reports = [sub(t_report, f, name=f"report-{i}") for i, f in enumerate(loads)]
    nparts = cplan.partitions
    if nparts <= 1 or not loads:
        parts = [sub(t_part, out, cplan.shard, cplan.start, attempt, 0, *loads, name="part-0")]
        nparts = 1
    else:
        samples = [sub(t_sample, f, cplan.sample_stride, name=f"sample-{i}")
                   for i, f in enumerate(loads)]
        spl = sub(t_splitters, nparts, *samples, name="splitters")
        splits = [sub(t_split, f, spl, nparts, name=f"split-{i}") for i, f in enumerate(loads)]
        pieces = [[sub(operator.getitem, s, p, name=f"piece-{i}-{p}") for p in range(nparts)]
                  for i, s in enumerate(splits)]
        parts = [sub(t_part, out, cplan.shard, cplan.start, attempt, p,
                     *[pieces[i][p] for i in range(len(loads))], name=f"part-{p}")
                 for p in range(nparts)]
    return sub(t_publish, out, cplan, attempt, nparts, *parts, *reports, name="publish")
