"""Points per org, shard and window from the index records alone (no raw byte read).

Pure: no I/O.  :func:`record_volume` estimates one record's points per
``(org, hour)``; :func:`collect` sums them over many records into a
:class:`Volume`; :func:`place` puts a volume into the chunks of a
:class:`~tailor.shards.ShardMap`; :class:`Dist` summarises chunk sizes.

The estimate (what a record says, in order of precision):

- ``org_hours`` triples ``(org, hour, points)``: exact or lower bounds (ingest
  keeps an object's :data:`~tailor.format.records.MAX_ORG_HOURS` largest);
- ``org_points`` (exact per org) and ``hours`` (exact per hour): what the
  triples leave of each org is spread over the hours in proportion to what
  they leave of each hour, so org totals stay exact, and hour totals too;
- a record written before those fields existed has only ``orgs`` and
  ``hours``: its points are shared evenly among its orgs, then spread the
  same way.

Every valid payload counts, as stored: a payload delivered twice and stored in
two objects counts twice and re-sent points count each time, so a chunk's
estimate is at least the points its build publishes (up to the estimate's
spreading), never fewer.  A cutover inside an hour splits that hour's points
in proportion to the time on each side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tailor.format.layout import HOUR, window_start
from tailor.format.records import ObjectRecord
from tailor.shards import ShardMap

_HOUR_BITS = 22  # hour index (ts // 3600 < 2**21 for u32 ts) in a combined key


@dataclass(frozen=True, slots=True)
class Volume:
    """Estimated points per ``(org, hour start)``: parallel arrays, one row per pair.

    ``org_bytes``: raw object bytes per org, whole objects (not per hour);
    ``objects``: how many distinct records went in.
    """

    org: np.ndarray  # int64
    hour: np.ndarray  # int64 Unix seconds, hour-aligned
    points: np.ndarray  # float64
    org_bytes: dict[int, int]
    objects: int

    def org_windows(self, windows: list[int], length: int) -> tuple[np.ndarray, np.ndarray]:
        """``(orgs, V)``: sorted distinct orgs and ``V[i, j]``, the points of
        ``orgs[i]`` in window ``windows[j]`` (windows of ``length`` seconds)."""
        orgs, oi = np.unique(self.org, return_inverse=True)
        v = np.zeros((len(orgs), len(windows)), np.float64)
        if len(orgs):
            col = {w: j for j, w in enumerate(windows)}
            wj = np.array([col.get(w, -1) for w in (self.hour - self.hour % length).tolist()],
                          np.int64)
            keep = wj >= 0
            np.add.at(v, (oi[keep], wj[keep]), self.points[keep])
        return orgs, v


def record_volume(rec: ObjectRecord, lo: int, hi: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(org, hour, points)`` of ``rec`` for the hours in ``[lo, hi)`` (module doc).

    Costs the record's triples plus (orgs left with points) × (hours in range).
    """
    orgs = np.asarray(rec.orgs, np.int64)
    if not len(orgs) or rec.points <= 0:
        return _empty()
    if len(rec.org_points) == len(rec.orgs):
        totals = np.asarray(rec.org_points, np.float64)
        kept = np.asarray(rec.org_hours, np.int64).reshape(-1, 3)
    else:  # written before issue 13: orgs and hours only
        totals = np.full(len(orgs), rec.points / len(orgs))
        kept = np.zeros((0, 3), np.int64)
    starts, before = rec.hour_table  # parsed once per record
    hs = np.array(starts, np.int64)
    left_h = np.diff(np.array(before, np.float64))
    left_o = totals.copy()
    at_o = {o: i for i, o in enumerate(rec.orgs)}
    at_h = {h: j for j, h in enumerate(hs.tolist())}
    for o, h, n in kept.tolist():  # at most MAX_ORG_HOURS
        if o in at_o:
            left_o[at_o[o]] -= n
        if h in at_h:
            left_h[at_h[h]] -= n
    left_o = np.maximum(left_o, 0.0)
    left_h = np.maximum(left_h, 0.0)
    parts_o, parts_h, parts_p = [], [], []
    if len(kept):
        sel = (kept[:, 1] >= lo) & (kept[:, 1] < hi) & (kept[:, 2] > 0)
        parts_o.append(kept[sel, 0])
        parts_h.append(kept[sel, 1])
        parts_p.append(kept[sel, 2].astype(np.float64))
    total_left = float(left_h.sum())
    if total_left > 0 and float(left_o.sum()) > 0:
        inr = (hs >= lo) & (hs < hi) & (left_h > 0)
        nz = left_o > 0
        if inr.any():
            grid = np.outer(left_o[nz], left_h[inr] / total_left)
            parts_o.append(np.repeat(orgs[nz], int(inr.sum())))
            parts_h.append(np.tile(hs[inr], int(nz.sum())))
            parts_p.append(grid.ravel())
    if not parts_o:
        return _empty()
    return np.concatenate(parts_o), np.concatenate(parts_h), np.concatenate(parts_p)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)


def collect(records: Iterable[ObjectRecord], lo: int, hi: int) -> Volume:
    """The volume of ``records`` (deduplicated by object key) in hours ``[lo, hi)``."""
    seen: dict[str, ObjectRecord] = {}
    for r in records:
        seen.setdefault(r.key, r)
    parts = [record_volume(r, lo, hi) for r in seen.values()]
    org_bytes: dict[int, int] = {}
    for r in seen.values():
        if len(r.org_bytes) == len(r.orgs):
            for o, b in zip(r.orgs, r.org_bytes, strict=True):
                org_bytes[o] = org_bytes.get(o, 0) + b
        elif r.orgs:
            for o in r.orgs:
                org_bytes[o] = org_bytes.get(o, 0) + r.bytes // len(r.orgs)
    if not parts:
        return Volume(*_empty(), org_bytes, 0)
    org = np.concatenate([p[0] for p in parts])
    hour = np.concatenate([p[1] for p in parts])
    pts = np.concatenate([p[2] for p in parts])
    key = (org << _HOUR_BITS) | (hour // HOUR)
    uniq, inv = np.unique(key, return_inverse=True)
    sums = np.bincount(inv, weights=pts, minlength=len(uniq))
    return Volume(uniq >> _HOUR_BITS, (uniq & ((1 << _HOUR_BITS) - 1)) * HOUR, sums,
                  org_bytes, len(seen))


@dataclass(frozen=True, slots=True)
class Placed:
    """A volume placed into the chunks of a shard map: parallel arrays, one row per
    ``(shard, window, org)``; ``shard`` indexes ``names`` (``ShardMap.all_shards``)."""

    names: list[str]
    shard: np.ndarray
    window: np.ndarray
    org: np.ndarray
    points: np.ndarray

    def chunks(self) -> dict[tuple[str, int], int]:
        """``(shard, window start)`` → estimated points, rounded; empty chunks left out."""
        out: dict[tuple[str, int], float] = {}
        for s, w, p in zip(self.shard.tolist(), self.window.tolist(), self.points.tolist(),
                           strict=True):
            out[(self.names[s], w)] = out.get((self.names[s], w), 0.0) + p
        return {k: round(v) for k, v in sorted(out.items()) if round(v) > 0}

    def org_totals(self, shard: str) -> dict[int, float]:
        """Org → estimated points of that org in ``shard`` over every window."""
        j = self.names.index(shard)
        sel = self.shard == j
        out: dict[int, float] = {}
        for o, p in zip(self.org[sel].tolist(), self.points[sel].tolist(), strict=True):
            out[o] = out.get(o, 0.0) + p
        return out


def place(vol: Volume, shard_map: ShardMap, length: int) -> Placed:
    """Put ``vol`` into ``shard_map``'s chunks as builds would (by point ts; hour granularity,
    a cutover inside an hour splits it by time)."""
    n = shard_map.shared_shards
    org, hour, pts = vol.org, vol.hour, vol.points
    code = org % n
    ded_code = np.full(len(org), -1, np.int64)
    frac = np.zeros(len(org), np.float64)
    for j, o in enumerate(sorted(shard_map.dedicated)):
        sel = org == o
        if not sel.any():
            continue
        d = shard_map.dedicated[o]
        h = hour[sel]
        a = h if d.since is None else np.maximum(h, d.since)
        b = h + HOUR if d.until is None else np.minimum(h + HOUR, d.until)
        frac[sel] = np.clip((b - a) / HOUR, 0.0, 1.0)
        ded_code[sel] = n + j
    win = hour - hour % length if length >= HOUR else np.array(
        [window_start(int(h), length) for h in hour.tolist()], np.int64)
    shared = frac < 1.0
    dedi = frac > 0.0
    shard = np.concatenate([code[shared], ded_code[dedi]])
    window = np.concatenate([win[shared], win[dedi]])
    orgs = np.concatenate([org[shared], org[dedi]])
    points = np.concatenate([(pts * (1 - frac))[shared], (pts * frac)[dedi]])
    return Placed(shard_map.all_shards(), shard, window, orgs, points)


@dataclass(frozen=True, slots=True)
class Dist:
    """A distribution of chunk sizes (points): nearest-rank percentiles."""

    chunks: int
    min: int
    median: int
    p99: int
    max: int
    total: int

    @property
    def skew(self) -> float:
        """Largest chunk ÷ median chunk (0 without chunks)."""
        return self.max / self.median if self.median else 0.0

    @staticmethod
    def of(sizes: Iterable[int]) -> Dist:
        a = np.sort(np.fromiter(sizes, np.int64))
        if not len(a):
            return Dist(0, 0, 0, 0, 0, 0)

        def rank(q: float) -> int:  # nearest rank: an actual chunk's size
            return int(a[max(0, int(np.ceil(q * len(a))) - 1)])

        return Dist(len(a), int(a[0]), rank(0.5), rank(0.99), int(a[-1]), int(a.sum()))

    def as_dict(self) -> dict[str, float]:
        return {"chunks": self.chunks, "min": self.min, "median": self.median, "p99": self.p99,
                "max": self.max, "total": self.total, "skew": round(self.skew, 3)}
