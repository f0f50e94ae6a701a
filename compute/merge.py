"""Merge stage: range partitioning on the series key, sort, and the winner rule.

- :func:`sample` / :func:`choose_splitters`: series keys sampled from every
  range, quantiles as splitters, so partition ``p`` holds the series in
  ``[splitter[p-1], splitter[p])`` and part files are globally ordered; a
  series never spans two partitions.
- :func:`split`: one pass (numba) assigning each point its partition.
- :func:`sort_dedup`: series are ranked (hash table + lexsort of the distinct
  series only), then one argsort of the packed ``rank << 32 | ts`` key; among
  equal points the largest ``(intake_ns, index, value bits)`` wins.  The result
  depends only on the multiset of input rows, never on their order.
"""

from __future__ import annotations

import numba
import numpy as np
from distributed.metrics import context_meter

from tailor.metrics import STAGE_SORT

from .decode import Points, concat, empty_points

SeriesKeys = tuple[np.ndarray, np.ndarray, np.ndarray]  # org u32, metric u64, ctx u64


def sample(pts: Points, stride: int) -> SeriesKeys:
    """Every ``stride``-th point's series key (deterministic)."""
    s = max(1, stride)
    return pts.org[::s].copy(), pts.metric[::s].copy(), pts.ctx[::s].copy()


def choose_splitters(samples: list[SeriesKeys], parts: int) -> SeriesKeys:
    """At most ``parts - 1`` distinct, increasing series keys from the samples."""
    org = np.concatenate([s[0] for s in samples]) if samples else np.empty(0, np.uint32)
    met = np.concatenate([s[1] for s in samples]) if samples else np.empty(0, np.uint64)
    ctx = np.concatenate([s[2] for s in samples]) if samples else np.empty(0, np.uint64)
    if parts <= 1 or len(org) == 0:
        return org[:0], met[:0], ctx[:0]
    o = np.lexsort((ctx, met, org))
    org, met, ctx = org[o], met[o], ctx[o]
    at = (np.arange(1, parts) * len(org)) // parts
    so, sm, sc = org[at], met[at], ctx[at]
    keep = np.ones(len(at), bool)
    keep[1:] = (so[1:] != so[:-1]) | (sm[1:] != sm[:-1]) | (sc[1:] != sc[:-1])
    return so[keep], sm[keep], sc[keep]


@numba.njit(cache=True, nogil=True)
def _less(ao, am, ac, bo, bm, bc):  # type: ignore[no-untyped-def]
    if ao != bo:
        return ao < bo
    if am != bm:
        return am < bm
    return ac < bc


@numba.njit(cache=True, nogil=True)
def _partition_ids(org, met, ctx, so, sm, sc):  # type: ignore[no-untyped-def]
    n = org.shape[0]
    k = so.shape[0]
    pid = np.empty(n, np.int64)
    counts = np.zeros(k + 1, np.int64)
    for i in range(n):
        lo = 0
        hi = k
        while lo < hi:  # number of splitters <= key
            mid = (lo + hi) >> 1
            if _less(org[i], met[i], ctx[i], so[mid], sm[mid], sc[mid]):
                hi = mid
            else:
                lo = mid + 1
        pid[i] = lo
        counts[lo] += 1
    # counting sort → stable permutation grouped by partition
    start = np.zeros(k + 2, np.int64)
    for p in range(k + 1):
        start[p + 1] = start[p] + counts[p]
    fill = start[:k + 1].copy()
    perm = np.empty(n, np.int64)
    for i in range(n):
        perm[fill[pid[i]]] = i
        fill[pid[i]] += 1
    return perm, start


def split(pts: Points, splitters: SeriesKeys, parts: int) -> list[Points]:
    """``parts`` pieces of ``pts``; piece ``p`` holds the series of partition ``p``."""
    with context_meter.meter(STAGE_SORT):
        if parts <= 1:
            return [pts]
        so, sm, sc = splitters
        perm, start = _partition_ids(pts.org, pts.metric, pts.ctx, so, sm, sc)
        g = pts.take(perm)
        out = [g.slice(int(start[p]), int(start[p + 1])) for p in range(len(so) + 1)]
        return out + [empty_points() for _ in range(parts - len(out))]


@numba.njit(cache=True, nogil=True)
def _mix(o, m, c):  # type: ignore[no-untyped-def]
    h = (np.uint64(o) * np.uint64(0x9E3779B97F4A7C15)) ^ (m * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= h >> np.uint64(31)
    h = (h ^ c) * np.uint64(0x165667B19E3779F9)
    h ^= h >> np.uint64(29)
    return h


@numba.njit(cache=True, nogil=True)
def _series_ids(org, met, ctx):  # type: ignore[no-untyped-def]
    n = org.shape[0]
    cap = 16
    while cap < 2 * n:
        cap <<= 1
    mask = np.uint64(cap - 1)
    table = np.full(cap, -1, np.int64)
    first = np.empty(n, np.int64)
    sid = np.empty(n, np.int64)
    ns = 0
    for i in range(n):
        h = _mix(org[i], met[i], ctx[i]) & mask
        while True:
            s = table[h]
            if s < 0:
                table[h] = ns
                first[ns] = i
                sid[i] = ns
                ns += 1
                break
            j = first[s]
            if org[j] == org[i] and met[j] == met[i] and ctx[j] == ctx[i]:
                sid[i] = s
                break
            h = (h + np.uint64(1)) & mask
    return sid, first[:ns]


@numba.njit(cache=True, nogil=True)
def _winners(order, key, intake, idx, vbits):  # type: ignore[no-untyped-def]
    n = order.shape[0]
    win = np.empty(n, np.int64)
    wkey = np.empty(n, np.uint64)
    w = 0
    i = 0
    while i < n:
        best = order[i]
        k = key[best]
        j = i + 1
        while j < n and key[order[j]] == k:
            c = order[j]
            if (intake[c] > intake[best]
                    or (intake[c] == intake[best]
                        and (idx[c] > idx[best]
                             or (idx[c] == idx[best] and vbits[c] > vbits[best])))):
                best = c
            j += 1
        win[w] = best
        wkey[w] = k
        w += 1
        i = j
    return win[:w], wkey[:w]


def sort_dedup(pieces: list[Points]) -> tuple[Points, int]:
    """Rows of ``pieces`` sorted by (org, metric, ctx, ts), unique, winners kept.

    Returns ``(rows, duplicates_dropped)``; ``rows`` carries the five S-file columns
    only (``intake_ns``/``idx`` are empty).  Deterministic in the input multiset.
    """
    with context_meter.meter(STAGE_SORT):
        pts = concat([p for p in pieces if len(p)]) if pieces else empty_points()
        n = len(pts)
        if n == 0:
            return empty_points(), 0
        sid, first = _series_ids(pts.org, pts.metric, pts.ctx)
        uo = np.lexsort((pts.ctx[first], pts.metric[first], pts.org[first]))
        rank = np.empty(len(first), np.uint64)
        rank[uo] = np.arange(len(first), dtype=np.uint64)
        key = (rank[sid] << np.uint64(32)) | pts.ts.astype(np.uint64)
        del sid
        order = np.argsort(key)
        win, wkey = _winners(order, key, pts.intake_ns, pts.idx, pts.value.view(np.uint64))
        del order, key
        # Series columns come from the (small) sorted distinct series, ts from the key:
        # only the value column needs a random gather.
        series = first[uo][(wkey >> np.uint64(32)).astype(np.int64)]
        out = Points(pts.org[series], pts.metric[series], pts.ctx[series],
                     (wkey & np.uint64(0xFFFFFFFF)).astype(np.uint32), pts.value[win],
                     np.empty(0, np.uint64), np.empty(0, np.uint32))
        return out, n - len(win)
