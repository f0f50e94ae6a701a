"""Route stage: a unit's decoded rows → key-range partitions (see compute/exchange.py).

Rows are ordered by the *route key* ``(window, org, metric, ctx, ts)``, where
``window`` is the index of the unit's window holding ``ts``: window-major, so
a partition holds the rows of one chunk (or of two neighbours, at a window's
edge), and inside a window the order is the S-file key order.  Partition
``p`` holds the keys in ``[splitter p-1, splitter p)``.

- :func:`sample`: every ``stride``-th row's route key (map side; deterministic).
- :func:`choose_splitters`: quantiles of all samples, snapped down to the start
  of their series (of one window), so a series lands whole in one partition
  and the manifest finds it in one file; only a series that alone spans more
  than a partition's share of the samples is cut by ts at the quantile (its
  rows then fill consecutive partitions, hence consecutive part files).
- :func:`split`: one pass numbering each row's partition (binary search over
  the splitters: O(rows × log partitions)), one counting scatter: the rows as
  ``parts`` contiguous pieces.  Equal keys always share a partition, so the
  winner rule can run per partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from distributed.metrics import context_meter

from tailor.metrics import STAGE_SORT

from .decode import Points

#: ``(window index int64, org u32, metric u64, ctx u64, ts u32)`` columns.
RouteKeys = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def empty_keys() -> RouteKeys:
    return (np.empty(0, np.int64), np.empty(0, np.uint32), np.empty(0, np.uint64),
            np.empty(0, np.uint64), np.empty(0, np.uint32))


def window_of(ts: np.ndarray, starts: Sequence[int]) -> np.ndarray:
    """Index of the last of the increasing window ``starts`` ≤ each ts (0 before the first)."""
    w = np.searchsorted(np.asarray(starts, np.int64), ts.astype(np.int64), side="right") - 1
    return np.maximum(w, 0).astype(np.int64)


def sample(pts: Points, starts: Sequence[int], stride: int) -> RouteKeys:
    """Route keys of every ``stride``-th row of ``pts`` (owning copies)."""
    s = max(1, stride)
    ts = pts.ts[::s].copy()
    return (window_of(ts, starts), pts.org[::s].copy(), pts.metric[::s].copy(),
            pts.ctx[::s].copy(), ts)


def choose_splitters(samples: Sequence[RouteKeys], parts: int) -> RouteKeys:
    """At most ``parts - 1`` non-decreasing route keys cutting the samples into ``parts``.

    Splitter ``k`` is the sample at quantile ``k / parts``, moved down to the
    start of its series (key ``(window, series, ts=0)``) when that start lies
    past the previous splitter; otherwise the series alone covers a whole
    partition's share and is cut at the quantile's own ``(…, ts)``.  Pure and
    deterministic: the samples' order does not matter.
    """
    if parts <= 1 or not samples or sum(len(s[0]) for s in samples) == 0:
        return empty_keys()
    w, org, met, ctx, ts = (np.concatenate([s[c] for s in samples]) for c in range(5))
    o = np.lexsort((ts, ctx, met, org, w))
    w, org, met, ctx, ts = w[o], org[o], met[o], ctx[o], ts[o]
    n = len(w)
    new = np.ones(n, bool)
    new[1:] = ((w[1:] != w[:-1]) | (org[1:] != org[:-1]) | (met[1:] != met[:-1])
               | (ctx[1:] != ctx[:-1]))
    series_start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    at: list[int] = []
    cut: list[bool] = []  # True: a ts cut inside a series; False: a series start
    prev = 0
    for k in range(1, parts):
        q = k * n // parts
        if q <= prev:
            continue
        a = int(series_start[q])
        if a > prev:
            at.append(a)
            cut.append(False)
            prev = a
        else:
            at.append(q)
            cut.append(True)
            prev = q
    idx = np.asarray(at, np.int64)
    sts = np.where(np.asarray(cut, bool), ts[idx], np.uint32(0)).astype(np.uint32)
    return w[idx], org[idx], met[idx], ctx[idx], sts


@numba.njit(cache=True, nogil=True)
def _key_less(aw, ao, am, ac, at, bw, bo, bm, bc, bt):  # type: ignore[no-untyped-def]
    if aw != bw:
        return aw < bw
    if ao != bo:
        return ao < bo
    if am != bm:
        return am < bm
    if ac != bc:
        return ac < bc
    return at < bt


@numba.njit(cache=True, nogil=True)
def _route(org, met, ctx, ts, starts, sw, so, sm, sc, st):  # type: ignore[no-untyped-def]
    """Partition of every row: the number of splitters ≤ its route key."""
    n = org.shape[0]
    k = so.shape[0]
    nw = starts.shape[0]
    pid = np.empty(n, np.int64)
    for i in range(n):
        t = np.int64(ts[i])
        w = np.int64(0)
        while w + 1 < nw and t >= starts[w + 1]:
            w += 1
        lo = 0
        hi = k
        while lo < hi:
            mid = (lo + hi) >> 1
            if _key_less(w, org[i], met[i], ctx[i], ts[i], sw[mid], so[mid], sm[mid], sc[mid],
                         st[mid]):
                hi = mid
            else:
                lo = mid + 1
        pid[i] = lo
    return pid


@numba.njit(cache=True, nogil=True)
def _scatter(pid, nparts, org, met, ctx, ts, vbits, intake, idx):  # type: ignore[no-untyped-def]
    """The rows grouped by partition, in input order inside each; returns the seven
    columns and the ``nparts + 1`` piece bounds."""
    n = pid.shape[0]
    bounds = np.zeros(nparts + 1, np.int64)
    for i in range(n):
        bounds[pid[i] + 1] += 1
    for p in range(nparts):
        bounds[p + 1] += bounds[p]
    fill = bounds[:nparts].copy()
    o_org = np.empty(n, org.dtype)
    o_met = np.empty(n, met.dtype)
    o_ctx = np.empty(n, ctx.dtype)
    o_ts = np.empty(n, ts.dtype)
    o_val = np.empty(n, vbits.dtype)
    o_int = np.empty(n, intake.dtype)
    o_idx = np.empty(n, idx.dtype)
    for i in range(n):
        p = pid[i]
        d = fill[p]
        fill[p] = d + 1
        o_org[d] = org[i]
        o_met[d] = met[i]
        o_ctx[d] = ctx[i]
        o_ts[d] = ts[i]
        o_val[d] = vbits[i]
        o_int[d] = intake[i]
        o_idx[d] = idx[i]
    return o_org, o_met, o_ctx, o_ts, o_val, o_int, o_idx, bounds


def split(pts: Points, starts: Sequence[int], splitters: RouteKeys, parts: int) -> list[Points]:
    """``pts`` cut into ``parts`` pieces by ``splitters`` (fewer than ``parts`` of them).

    Piece ``p`` holds the rows whose route key lies in ``[splitter p-1, splitter p)``
    (empty for an empty partition).  Each piece owns its columns, so Dask frees
    what it spills or moves piece by piece (views of one array would keep it all).
    """
    sw, so, sm, sc, st = splitters
    if len(so) >= max(parts, 1):
        raise ValueError(f"{len(so)} splitters for {parts} partitions")
    with context_meter.meter(STAGE_SORT):
        pid = _route(pts.org, pts.metric, pts.ctx, pts.ts, np.asarray(starts, np.int64),
                     sw, so, sm, sc, st)
        *cols, bounds = _scatter(pid, parts, pts.org, pts.metric, pts.ctx, pts.ts,
                                 pts.value.view(np.uint64), pts.intake_ns, pts.idx)
        del pid
        whole = Points(cols[0], cols[1], cols[2], cols[3], cols[4].view(np.float64), cols[5],
                       cols[6])
        del cols
        return [whole.slice(int(bounds[p]), int(bounds[p + 1])).copy() for p in range(parts)]
