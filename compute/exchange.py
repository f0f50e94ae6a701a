"""A unit too big for one task, built as a distributed sort on Dask's own machinery.

::

    map[i]      read + CRC-check + decode byte ranges i once; rows + a sample
      │ sample[i]  (the sample and the ranges' reports: small)
      │     └──────► splitters (route keys from every sample) ──┐
      ▼                                                         ▼
    split[i]    map i's rows cut into P pieces by the splitters (one pass)
      ▼
    piece[i,p]  piece p of split i (a view, on split i's worker)
      ▼
    reduce[p]   pieces [*, p]: sort, winner rule, encode, put part p of each chunk
      ▼
    publish     every chunk of the unit, from its parts and its ranges' reports

Every byte range of the unit is fetched, CRC-checked and decoded by exactly
one map task, whatever the number of partitions P; splitting is O(rows × log
P) and each reduce sorts only its partition, so no stage's work grows with
partitions × points.  Rows are routed by ``(window, series, ts)``
(:mod:`~tailor.compute.route`): a partition holds one chunk's rows in key
order, and a series longer than a partition is cut by ts.

Map outputs and pieces are ordinary task results: Dask keeps them on the
worker that made them, moves a piece to its reduce task's worker, and spills
them to disk under memory pressure (their ``sizeof`` is their bytes).  There
are M × P piece tasks, each a dictionary lookup.  Every task is pure, so
after a worker dies the scheduler recomputes what it held (from the raw
objects) and the part files come out byte-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client

from tailor.config import StoreConfig
from tailor.errors import TailorError
from tailor.format import layout
from tailor.shards import ShardMap

from . import merge, route
from .budget import map_group_bytes
from .decode import Points, Report
from .graph import (
    RETRIES,
    UNIT_READERS,
    PartResult,
    Published,
    RangeItem,
    _part,
    decode_ranges,
    decoded,
    range_items,
    release_heap,
    store,
    t_publish,
)
from .plan import ChunkPlan, ReadTask, partitioning

#: What a map task hands to the splitters and publish tasks.
Meta = tuple[route.RouteKeys, dict[ReadTask, Report]]


@dataclass(frozen=True, slots=True)
class MapOut:
    """A map task's result: its decoded rows (in the unit's windows), their sample, and
    each range's report."""

    rows: Points
    sample: route.RouteKeys
    reports: dict[ReadTask, Report]

    def __sizeof__(self) -> int:  # Dask's memory accounting and spilling
        return self.rows.__sizeof__() + sum(int(a.nbytes) for a in self.sample)


def group_ranges(items: list[RangeItem], max_bytes: int) -> list[list[RangeItem]]:
    """Consecutive byte ranges gathered into map tasks of at most ``max_bytes`` (pure;
    a range bigger than that is a task of its own)."""
    groups: list[list[RangeItem]] = []
    cur: list[RangeItem] = []
    size = 0
    for it in items:
        n = it[0].end - it[0].start
        if cur and size + n > max_bytes:
            groups.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += n
    return groups + ([cur] if cur else [])


def _in_windows(pts: Points, windows: Sequence[tuple[int, int]]) -> Points:
    """The rows of ``pts`` whose ts lies in one of ``windows`` (a unit may have gaps)."""
    keep = np.zeros(len(pts), bool)
    for a, b in windows:
        keep |= (pts.ts >= a) & (pts.ts < b)
    return pts if bool(keep.all()) else pts.take(keep)


# -- tasks (module-level: they run on workers) -----------------------------------
def t_map(raw: StoreConfig, shard_map: ShardMap, shard: str, items: list[RangeItem],
          windows: list[tuple[int, int]], stride: int) -> MapOut:
    """Decode ranges ``items`` once; keep the rows of the unit's ``windows``; sample them.

    ``stride`` 0: no sample (one partition).  Raises what the read raises (the
    scheduler retries the task).
    """
    readers = UNIT_READERS if store(raw).is_s3 and len(items) > 1 else 0
    rows, reports = decode_ranges(raw, shard_map, shard, items, readers=readers)
    rows = _in_windows(rows, windows)
    starts = [a for a, _b in windows]
    sample = route.sample(rows, starts, stride) if stride > 0 else route.empty_keys()
    return MapOut(rows, sample, reports)


def t_meta(mapped: MapOut) -> Meta:
    """The small part of a map result (runs where the map result is)."""
    return mapped.sample, mapped.reports


def t_splitters(parts: int, *metas: Meta) -> route.RouteKeys:
    return route.choose_splitters([s for s, _r in metas], parts)


def t_split(mapped: MapOut, starts: list[int], splitters: route.RouteKeys, parts: int
            ) -> tuple[Points, ...]:
    """Map result ``mapped``'s rows cut into ``parts`` pieces (:func:`route.split`)."""
    try:
        return tuple(route.split(mapped.rows, starts, splitters, parts))
    finally:
        release_heap()


def t_piece(pieces: tuple[Points, ...], part: int) -> Points:
    return pieces[part]


def t_reduce(out: StoreConfig, plans: list[ChunkPlan], attempts: list[str], part: int,
             *pieces: Points) -> list[PartResult]:
    """Partition ``part``: sort and dedupe its pieces, put part file ``part`` of each chunk.

    Returns one :class:`PartResult` per chunk, in ``plans`` order (no file for
    a chunk with no rows in ``part``).
    """
    edges = sorted({e for cp in plans for e in (cp.start, cp.end)})
    rows = dict(zip(edges, merge.sort_dedup_windows(list(pieces), edges), strict=True))
    try:
        return [_part(out, cp.shard, cp.start, attempt, part, *rows.pop(cp.start))
                for cp, attempt in zip(plans, attempts, strict=True)]
    finally:
        del rows
        release_heap()


def t_publish_unit(out: StoreConfig, plans: list[ChunkPlan], attempts: list[str],
                   n_maps: int, *deps: Any) -> list[list[Published | str]]:
    """Publish every chunk of the unit: ``deps`` are the ``n_maps`` metas, then the parts.

    A chunk whose publish fails yields its error text; its siblings still
    publish.  Nested like :func:`~tailor.compute.graph.t_build_units`' result.
    """
    metas: tuple[Meta, ...] = deps[:n_maps]
    parts: tuple[list[PartResult], ...] = deps[n_maps:]
    reports = {t: r for _s, reps in metas for t, r in reps.items()}
    unit = decoded(reports.values())
    results: list[Published | str] = []
    for w, (cp, attempt) in enumerate(zip(plans, attempts, strict=True)):
        try:
            results.append(t_publish(out, cp, attempt, [per_part[w] for per_part in parts],
                                     [reports[t] for t in cp.tasks], unit))
        except (TailorError, OSError) as exc:
            results.append(f"{type(exc).__name__}: {exc}")
    return [results]


# -- graph -----------------------------------------------------------------------
def submit_exchange(client: Client, raw: StoreConfig, out: StoreConfig, shard_map: ShardMap,
                    plans: list[ChunkPlan], attempts: list[str], rows_per_partition: int,
                    memory_budget: int, workers: int) -> Any:
    """Submit a unit's distributed sort; returns the future of its publish task.

    ``ceil(points / rows_per_partition)`` partitions over the unit's windows
    together; map tasks read :func:`~tailor.compute.budget.map_group_bytes` of
    raw ranges each.
    Task keys start with the stage (``map``, ``sample``, ``splitters``,
    ``split``, ``piece``, ``reduce``, ``publish``): Dask's task prefix, hence
    the dashboard's task groups and the ``task`` label of the stage timers.
    """
    shard = plans[0].shard
    # Attempt first: Dask's task prefix (dashboard, Prometheus `task`) is then the stage name.
    tag = f"{attempts[0]}-{shard}-{layout.stamp(plans[0].start)}"

    def sub(fn: Any, *args: Any, name: str) -> Any:
        return client.submit(fn, *args, key=f"{name}-{tag}", retries=RETRIES)
    windows = sorted((cp.start, cp.end) for cp in plans)
    starts = [a for a, _b in windows]
    nparts, stride = partitioning(sum(cp.est_points for cp in plans), rows_per_partition)
    items = range_items(plans)
    unit_bytes = sum(t.end - t.start for t, _a, _b in items)
    groups = group_ranges(items, map_group_bytes(memory_budget, unit_bytes, workers))
    maps = [sub(t_map, raw, shard_map, shard, g, windows, stride, name=f"map-{i}")
            for i, g in enumerate(groups)]
    metas = [sub(t_meta, m, name=f"sample-{i}") for i, m in enumerate(maps)]
    spl = sub(t_splitters, nparts, *metas, name="splitters")
    pieces = []
    for i, m in enumerate(maps):
        s = sub(t_split, m, starts, spl, nparts, name=f"split-{i}")
        pieces.append(client.map(t_piece, [s] * nparts, range(nparts), retries=RETRIES,
                                 key=[f"piece-{i}-{p}-{tag}" for p in range(nparts)]))
    reduces = [sub(t_reduce, out, plans, attempts, p, *[pc[p] for pc in pieces],
                   name=f"reduce-{p}") for p in range(nparts)]
    return sub(t_publish_unit, out, plans, attempts, len(metas), *metas, *reduces,
               name="publish")
