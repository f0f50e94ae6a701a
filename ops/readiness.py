"""Chunk readiness and staleness: a pure core (no I/O).

:func:`chunk_rows` turns what the stores hold (index records, chunk
manifests, partition watermarks; read by :mod:`tailor.ops.state`) into
one :class:`ChunkRow` per shard and window; :func:`select_ready` picks the
chunks `build --ready` must (re)build.  Definitions (issue 4):

- **ready**: every partition's durable watermark
  (:attr:`tailor.format.records.Watermark.durable_until_ns`, the minimum over all
  watermark files, each at most the reader's clock plus a minute: see
  :func:`durable_until`) is at or past the window's end plus the grace
  period.  No watermark at all means nothing is known to be durable: not ready.
- **stale**: the chunk is built and an index record of an object holding
  points of the window is not among the manifest's ``inputs`` (late data).
- **candidate objects** of chunk (shard S, window W): the index records under
  every hour of W of every raw shard in ``ShardMap.sources(S)``; a source
  restricted to one moved org counts only when the record holds that org and
  the org belongs to S for some ts of W (its cutover does not exclude W:
  :func:`tailor.ops.reshard.org_in_window`).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tailor.format.layout import HOUR, object_key, stamp, window_start
from tailor.format.records import CLOCK_SLACK_NS, Manifest, ObjectRecord, Watermark
from tailor.shards import ShardMap

from .reshard import org_in_window

Action = Literal["build", "rebuild", "wait", "ok"]


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """What status knows about one chunk; JSON-ready via :meth:`as_dict`.

    ``points`` and ``max_ts`` come from index records at hour granularity:
    ``points`` counts every point of the candidate objects in the window's
    hours (an upper bound next to a resharding cutover); ``max_ts`` is exact
    for objects ending inside the window, else the end of the last hour with
    points.  Both are None when some of the chunk's objects were not read
    because the manifest already accounts for them (see :func:`records_to_read`;
    ``built_points`` is exact then).  ``late`` lists candidate objects missing
    from the manifest.
    """

    shard: str
    window: str
    start: int
    end: int
    objects: int
    points: int | None
    max_ts: int | None
    watermark_ns: int | None
    ready: bool
    built: bool
    built_points: int | None
    duplicates_dropped: int | None
    built_ns: int | None
    inputs: list[str]
    late: list[str]
    stale: bool
    action: Action

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def durable_until(watermark: Watermark, now_ns: int | None = None) -> int:
    """How far ``watermark``'s partition is durable (ns): its
    :attr:`~tailor.format.records.Watermark.durable_until_ns`, at most ``now_ns``
    (default: the wall clock) plus :data:`~tailor.format.records.CLOCK_SLACK_NS`.
    Watermarks are written on other hosts from untrusted intake times, so a
    reader never believes one further ahead of its own clock."""
    now = time.time_ns() if now_ns is None else now_ns
    return min(watermark.durable_until_ns, now + CLOCK_SLACK_NS)


def ingest_watermark(watermarks: Iterable[Watermark], now_ns: int | None = None) -> int | None:
    """The oldest durable position over all partitions (ns, each clamped by
    :func:`durable_until`); None if none known."""
    now = time.time_ns() if now_ns is None else now_ns
    vals = [durable_until(w, now) for w in watermarks]
    return min(vals) if vals else None


def is_ready(end: int, watermark_ns: int | None, grace_s: float) -> bool:
    """Whether a window ending at ``end`` (Unix s) is ready for this watermark."""
    return watermark_ns is not None and watermark_ns >= (end + grace_s) * 10**9


def _windows_of_hours(hour_starts: Iterable[int], length: int) -> set[int]:
    out: set[int] = set()
    for t in hour_starts:
        w = window_start(t, length)
        while w < t + HOUR:
            out.add(w)
            w += length
    return out


def _windows_of(record: ObjectRecord, length: int) -> set[int]:
    return _windows_of_hours(record.hour_table[0], length)


#: What a listing of ``index/`` shows without reading a record:
#: raw shard → batch id → hour starts the object is indexed under, empty for
#: an object indexed under coarser buckets only (its hours are in its record).
Listing = Mapping[str, Mapping[str, Iterable[int]]]


def records_to_read(shard_map: ShardMap, shards: Sequence[str], listing: Listing,
                    manifests: Mapping[tuple[str, int], Manifest], *,
                    length: int) -> set[tuple[str, str]]:
    """``(raw_shard, batch_id)`` of the index records status must read.

    An object's key follows from its index key (``layout.object_key``), so a
    listing tells which objects every built chunk already holds.  A record is
    read unless every chunk of ``shards`` it may feed (by its hours; a source
    restricted to a moved org counts as feeding while its cutover allows) is
    built with the object among its inputs.  So a cron run reads only new
    records, not the whole history.
    """
    feeds: dict[str, list[tuple[str, int | None]]] = {}
    for s in shards:
        for raw, org in shard_map.sources(s):
            feeds.setdefault(raw, []).append((s, org))
    inputs = {k: {i.key for i in m.inputs} for k, m in manifests.items()}
    need: set[tuple[str, str]] = set()
    for raw, batches in listing.items():
        targets = feeds.get(raw, [])
        for batch, hrs in batches.items():
            key = object_key(raw, batch)
            wins = _windows_of_hours(hrs, length)
            coarse = not wins and bool(targets)  # only its record knows its hours
            if coarse or any(
                    key not in inputs.get((s, w), ()) for s, org in targets for w in wins
                    if org is None or org_in_window(
                        shard_map, s, shard_map.dedicated[org], w, w + length)):
                need.add((raw, batch))
    return need


def candidates(shard_map: ShardMap, shard: str, by_raw: Mapping[str, Sequence[ObjectRecord]],
               length: int) -> dict[int, list[ObjectRecord]]:
    """Window start → candidate objects of ``shard`` (module docstring)."""
    out: dict[int, dict[str, ObjectRecord]] = {}
    for raw, org in shard_map.sources(shard):
        for r in by_raw.get(raw, ()):
            if org is not None and org not in r.orgs:
                continue
            for w in _windows_of(r, length):
                if org is not None and not org_in_window(
                        shard_map, shard, shard_map.dedicated[org], w, w + length):
                    continue
                out.setdefault(w, {})[r.key] = r
    return {w: sorted(rs.values(), key=lambda r: r.key) for w, rs in out.items()}


def _max_ts(records: Sequence[ObjectRecord], start: int, end: int) -> int | None:
    best: int | None = None
    for r in records:
        if start <= r.max_ts < end:
            m = r.max_ts
        else:
            starts = r.hour_table[0]
            i = bisect_left(starts, end) - 1  # the last hour with points before end
            if i < 0 or starts[i] < start:
                continue
            m = min(starts[i] + HOUR, end) - 1
        best = m if best is None else max(best, m)
    return best


def chunk_rows(
    shard_map: ShardMap,
    shards: Sequence[str],
    records: Iterable[ObjectRecord],
    manifests: Mapping[tuple[str, int], Manifest],
    watermarks: Sequence[Watermark],
    *,
    length: int,
    grace_s: float,
    listing: Listing | None = None,
    now_ns: int | None = None,
) -> list[ChunkRow]:
    """One row per (shard, window) that has candidate objects or a manifest.

    ``records`` are the raw index records read (any raw shard, duplicates by
    key allowed); ``manifests`` are keyed by ``(shard, window_start)``.  With
    ``listing``, ``records`` may omit the records :func:`records_to_read`
    left out: those objects count for the chunks whose manifests hold them.
    ``now_ns`` (default: the wall clock) bounds the watermarks
    (:func:`ingest_watermark`).  Rows are sorted by shard (in ``shards`` order) then window.
    """
    by_raw: dict[str, dict[str, ObjectRecord]] = {}
    for r in records:
        by_raw.setdefault(r.shard, {})[r.key] = r
    raw_lists = {k: list(v.values()) for k, v in by_raw.items()}
    unread: dict[tuple[str, int], set[str]] = {}  # (raw shard, window) → object keys
    for raw, batches in (listing or {}).items():
        for batch, hrs in batches.items():
            key = object_key(raw, batch)
            if key not in by_raw.get(raw, {}):
                for w in _windows_of_hours(hrs, length):
                    unread.setdefault((raw, w), set()).add(key)
    wm = ingest_watermark(watermarks, now_ns)
    rows: list[ChunkRow] = []
    for shard in shards:
        cands = candidates(shard_map, shard, raw_lists, length)
        starts = set(cands) | {w for (s, w) in manifests if s == shard}
        for start in sorted(starts):
            end = start + length
            recs = cands.get(start, [])
            m = manifests.get((shard, start))
            ready = is_ready(end, wm, grace_s)
            inputs = sorted(i.key for i in m.inputs) if m is not None else []
            have = set(inputs)
            held = {k for raw, _ in shard_map.sources(shard) for k in unread.get((raw, start), ())
                    if k in have}  # unread objects count only where a manifest holds them
            late = [r.key for r in recs if r.key not in have] if m is not None else []
            stale = bool(late)
            action: Action
            if m is None:
                action = "build" if ready and recs else "wait"
            elif stale:
                action = "rebuild" if ready else "wait"
            else:
                action = "ok"
            rows.append(ChunkRow(
                shard=shard, window=stamp(start), start=start, end=end,
                objects=len(recs) + len(held - {r.key for r in recs}),
                points=None if held else sum(r.points_in(start, length) for r in recs),
                max_ts=None if held else _max_ts(recs, start, end), watermark_ns=wm,
                ready=ready,
                built=m is not None, built_points=m.points if m else None,
                duplicates_dropped=m.duplicates_dropped if m else None,
                built_ns=m.built_ns if m else None, inputs=inputs, late=late, stale=stale,
                action=action,
            ))
    return rows


@dataclass(frozen=True, slots=True)
class Selected:
    """A chunk `build --ready` will (re)build, and why."""

    shard: str
    start: int
    reason: Literal["build", "rebuild"]


def select_ready(rows: Iterable[ChunkRow]) -> list[Selected]:
    """Every ready chunk not yet built, and every ready stale one, in row order."""
    return [Selected(r.shard, r.start, r.action) for r in rows
            if r.action == "build" or r.action == "rebuild"]
