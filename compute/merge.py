"""Merge stage: sort and the winner rule (partitions come from compute/route.py).

- :func:`sort_dedup_windows` / :func:`sort_dedup`: series are ranked (hash
  table + lexsort of the distinct series only), then rows are radix-sorted:
  counting passes on ts, then on ``(window, series rank)``; among equal
  points the largest ``(intake_ns, index, value bits)`` wins.  The result
  depends only on the multiset of input rows, never on their order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from distributed.metrics import context_meter

from tailor.errors import BuildError
from tailor.metrics import STAGE_SORT

from .decode import Points, concat, empty_points


@numba.njit(cache=True, nogil=True)
def _mix(o, m, c):  # type: ignore[no-untyped-def]
    h = (np.uint64(o) * np.uint64(0x9E3779B97F4A7C15)) ^ (m * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= h >> np.uint64(31)
    h = (h ^ c) * np.uint64(0x165667B19E3779F9)
    h ^= h >> np.uint64(29)
    return h


@numba.njit(cache=True, nogil=True)
def _grow(a, n):  # type: ignore[no-untyped-def]
    out = np.empty(2 * a.shape[0], a.dtype)
    out[:n] = a[:n]
    return out


@numba.njit(cache=True, nogil=True)
def _number_rows(org, met, ctx, i, table, k_org, k_met, k_ctx, first, sid, ns):  # type: ignore[no-untyped-def]
    """Number rows from ``i`` on until the table is a quarter full; returns ``(next row, ns)``."""
    n = org.shape[0]
    mask = np.uint64(table.shape[0] - 1)
    limit = table.shape[0] // 4
    while i < n and ns < limit:
        o = org[i]
        m = met[i]
        c = ctx[i]
        h = _mix(o, m, c) & mask
        while True:
            s = table[h]
            if s < 0:
                table[h] = ns
                first[ns] = i
                sid[i] = ns
                k_org[ns] = o
                k_met[ns] = m
                k_ctx[ns] = c
                ns += 1
                break
            if k_org[s] == o and k_met[s] == m and k_ctx[s] == c:
                sid[i] = s
                break
            h = (h + np.uint64(1)) & mask
        i += 1
    return i, ns


@numba.njit(cache=True, nogil=True)
def _series_ids(org, met, ctx):  # type: ignore[no-untyped-def]
    """Series number of every row (numbered by first appearance) and each series' first row.

    Open addressing over the distinct series only: the table and the series'
    keys grow with the series (load at most 1/4, then rehashed into twice the
    slots), not with the rows, so they stay in cache when a partition holds
    many points of few series.
    """
    n = org.shape[0]
    cap = 1 << 14
    table = np.full(cap, -1, np.int32)
    k_org = np.empty(cap // 4, org.dtype)
    k_met = np.empty(cap // 4, met.dtype)
    k_ctx = np.empty(cap // 4, ctx.dtype)
    first = np.empty(n, np.int64)
    sid = np.empty(n, np.int32)
    i, ns = _number_rows(org, met, ctx, 0, table, k_org, k_met, k_ctx, first, sid, 0)
    while i < n:
        cap <<= 1
        mask = np.uint64(cap - 1)
        table = np.full(cap, -1, np.int32)
        for t in range(ns):
            g = _mix(k_org[t], k_met[t], k_ctx[t]) & mask
            while table[g] >= 0:
                g = (g + np.uint64(1)) & mask
            table[g] = t
        k_org = _grow(k_org, ns)
        k_met = _grow(k_met, ns)
        k_ctx = _grow(k_ctx, ns)
        i, ns = _number_rows(org, met, ctx, i, table, k_org, k_met, k_ctx, first, sid, ns)
    return sid, first[:ns]


@numba.njit(cache=True, nogil=True)
def _counting_pass(perm, digit, nd):  # type: ignore[no-untyped-def]
    """Stable counting sort of ``perm`` on ``digit[perm[i]]`` (values < ``nd``).

    ``perm`` is a permutation of ``range(len(digit))``, so the digits are
    counted in row order (sequential reads); only the scatter follows ``perm``.
    Returns the new permutation and the start of every digit (``nd + 1`` entries).
    """
    n = perm.shape[0]
    count = np.zeros(nd + 1, np.int64)
    for i in range(n):
        count[digit[i] + 1] += 1
    for d in range(nd):
        count[d + 1] += count[d]
    fill = count[:nd].copy()
    out = np.empty(n, np.int32)
    for i in range(n):
        r = perm[i]
        d = digit[r]
        out[fill[d]] = r
        fill[d] += 1
    return out, count


@numba.njit(cache=True, nogil=True)
def _order(sid, rank, ts, edges):  # type: ignore[no-untyped-def]
    """Rows grouped by bucket ``window * n_series + rank``, by ts inside a bucket.

    ``edges`` are the window starts, increasing; a row's window is the last
    edge ≤ its ts (the first window for smaller ts).  LSD radix sort: one or
    two counting passes on ``ts - min(ts)`` (16-bit digits, only as many bits
    as the span needs), then a stable counting pass on the bucket.  Returns
    ``(perm, start)``: bucket ``b`` is ``perm[start[b]:start[b + 1]]``.
    """
    n = sid.shape[0]
    ns = rank.shape[0]
    nw = edges.shape[0]
    tmin = ts[0]
    tmax = ts[0]
    for i in range(n):
        tmin = min(tmin, ts[i])
        tmax = max(tmax, ts[i])
    span = np.int64(tmax) - np.int64(tmin)
    bits = 1
    while (span >> bits) > 0:
        bits += 1
    perm = np.arange(n).astype(np.int32)
    digit = np.empty(n, np.int32)
    shift = 0
    while shift < bits:
        width = min(16, bits - shift)
        for i in range(n):
            digit[i] = ((np.int64(ts[i]) - np.int64(tmin)) >> shift) & ((1 << width) - 1)
        perm, _c = _counting_pass(perm, digit, 1 << width)
        shift += width
    for i in range(n):
        w = 0
        while w + 1 < nw and ts[i] >= edges[w + 1]:
            w += 1
        digit[i] = w * ns + rank[sid[i]]
    return _counting_pass(perm, digit, nw * ns)


@numba.njit(cache=True, nogil=True)
def _dedup(perm, start, ts, intake, idx, vbits):  # type: ignore[no-untyped-def]
    """Winners of each run of equal ts inside each bucket (in output order).

    Among equal points the largest ``(intake_ns, idx, value bits)`` wins.
    Returns ``(win, wstart)``: bucket ``b``'s winners are ``win[wstart[b]:wstart[b + 1]]``.
    """
    nb = start.shape[0] - 1
    win = np.empty(perm.shape[0], np.int64)
    wstart = np.zeros(nb + 1, np.int64)
    w = 0
    for b in range(nb):
        i = start[b]
        hi = start[b + 1]
        while i < hi:
            best = perm[i]
            t = ts[best]
            j = i + 1
            while j < hi and ts[perm[j]] == t:
                c = perm[j]
                if (intake[c] > intake[best]
                        or (intake[c] == intake[best]
                            and (idx[c] > idx[best]
                                 or (idx[c] == idx[best] and vbits[c] > vbits[best])))):
                    best = c
                j += 1
            win[w] = best
            w += 1
            i = j
        wstart[b + 1] = w
    return win[:w], wstart


@numba.njit(cache=True, nogil=True)
def _emit(win, wstart, series, org, met, ctx, ts, vbits):  # type: ignore[no-untyped-def]
    """The S-file columns of the winners: series ids filled per bucket, ts/value gathered.

    Bucket ``b`` holds series ``series[b % len(series)]`` (a row index of that series).
    """
    n = win.shape[0]
    ns = series.shape[0]
    o_org = np.empty(n, org.dtype)
    o_met = np.empty(n, met.dtype)
    o_ctx = np.empty(n, ctx.dtype)
    o_ts = np.empty(n, ts.dtype)
    o_val = np.empty(n, vbits.dtype)
    for b in range(wstart.shape[0] - 1):
        r = series[b % ns]
        for i in range(wstart[b], wstart[b + 1]):
            o_org[i] = org[r]
            o_met[i] = met[r]
            o_ctx[i] = ctx[r]
            w = win[i]
            o_ts[i] = ts[w]
            o_val[i] = vbits[w]
    return o_org, o_met, o_ctx, o_ts, o_val


def sort_dedup_windows(pieces: list[Points], edges: Sequence[int]
                       ) -> list[tuple[Points, int, int]]:
    """Rows of ``pieces`` split by ts interval, each sorted by (org, metric, ctx, ts), unique.

    ``edges`` are increasing interval starts: interval ``k`` is
    ``[edges[k], edges[k + 1])``, the last one is open-ended and rows before
    the first edge count in the first.  Returns per interval ``(rows,
    duplicates dropped, rows in)``; ``rows`` carries the five S-file columns only
    (``intake_ns``/``idx`` are empty).  Among equal points the largest
    ``(intake_ns, index, value bits)`` wins, so the result depends only on
    the multiset of input rows, never on their order.
    """
    nw = len(edges)
    with context_meter.meter(STAGE_SORT):
        pts = concat([p for p in pieces if len(p)]) if pieces else empty_points()
        if len(pts) == 0:
            return [(empty_points(), 0, 0) for _ in range(nw)]
        if len(pts) >= 2**31:  # the kernels index rows with int32
            raise BuildError("too many points in one merge partition", reason=f"{len(pts)} rows",
                             fix="lower --memory-budget (or --rows-per-partition)")
        sid, first = _series_ids(pts.org, pts.metric, pts.ctx)
        uo = np.lexsort((pts.ctx[first], pts.metric[first], pts.org[first]))
        rank = np.empty(len(first), np.int32)
        rank[uo] = np.arange(len(first), dtype=np.int32)
        perm, start = _order(sid, rank, pts.ts, np.asarray(edges, np.int64))
        del sid
        win, wstart = _dedup(perm, start, pts.ts, pts.intake_ns, pts.idx,
                             pts.value.view(np.uint64))
        del perm
        ns = len(first)
        org, met, ctx, ts, vbits = _emit(win, wstart, first[uo], pts.org, pts.metric, pts.ctx,
                                         pts.ts, pts.value.view(np.uint64))
        val = vbits.view(np.float64)
        out = []
        for w in range(nw):
            a, b = int(wstart[w * ns]), int(wstart[(w + 1) * ns])
            rows_in = int(start[(w + 1) * ns] - start[w * ns])
            out.append((Points(org[a:b], met[a:b], ctx[a:b], ts[a:b], val[a:b],
                               np.empty(0, np.uint64), np.empty(0, np.uint32)),
                        rows_in - (b - a), rows_in))
        return out


def sort_dedup(pieces: list[Points]) -> tuple[Points, int]:
    """Rows of ``pieces`` sorted by (org, metric, ctx, ts), unique, winners kept.

    Returns ``(rows, duplicates_dropped)``: :func:`sort_dedup_windows` with one window.
    """
    rows, dups, _n = sort_dedup_windows(pieces, [0])[0]
    return rows, dups
