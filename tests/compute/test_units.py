"""Pure cores: planning, range scanning, decoding invalid payloads, merge determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import zstandard

from tailor.compute import exchange, graph, merge, route
from tailor.compute.decode import Points, concat, decode_range
from tailor.compute.plan import ReadTask, plan_chunk, split_ranges
from tailor.compute.read import scan_owned
from tailor.format import framing, payload
from tailor.format.records import ObjectRecord
from tailor.shards import ShardMap

from .rawgen import T0, Gen, W, frame_of, mixed_payloads

SMAP = ShardMap()


def _rec(key: str, orgs: list[int], size: int = 1000, min_ts: int = T0) -> ObjectRecord:
    return ObjectRecord(key=key, shard="org-mod-7", batch_id=key, bytes=size, payloads=1,
                        points=10, min_ts=min_ts, max_ts=min_ts + 10, min_intake_ns=0,
                        max_intake_ns=0, topics=["t"], offsets=[], orgs=orgs,
                        hours={"2026-01-01T00": 10}, written_ns=0)


def test_plan_dedupes_filters_and_splits() -> None:
    recs = [(_rec("b", [7]), None), (_rec("a", [7], 2500), None), (_rec("b", [7]), None),
            (_rec("c", [71]), 1989), (_rec("d", [1989]), 1989), (_rec("e", [7], min_ts=0), None)]
    p = plan_chunk("org-mod-7", T0, W, recs, range_bytes=1000, rows_per_partition=15)
    assert [(t.key, t.start, t.end) for t in p.tasks] == [
        ("a", 0, 1000), ("a", 1000, 2000), ("a", 2000, 2500), ("b", 0, 1000), ("d", 0, 1000)]
    assert [i.key for i in p.inputs] == ["a", "b", "d"]
    assert p.est_points == 30 and p.partitions == 2
    assert split_ranges("k", 0, 10) == []


def test_plan_skips_a_wide_object_with_no_point_in_the_window() -> None:
    """Records read from a coarse index bucket may span the window without a point in it."""
    around = _rec("w", [7]).model_copy(update={
        "min_ts": T0 - 10 * W, "max_ts": T0 + 10 * W,
        "hours": {"2025-12-30T00": 5, "2026-01-03T00": 5}})
    inside = around.model_copy(update={"key": "v", "hours": {"2025-12-30T00": 3,
                                                            "2026-01-01T02": 7}})
    p = plan_chunk("org-mod-7", T0, W, [(around, None), (inside, None)], range_bytes=10**6,
                   rows_per_partition=100)
    assert [i.key for i in p.inputs] == ["v"] and p.est_points == 7


def _frames(n: int, seed: int = 0) -> tuple[bytes, list[Gen]]:
    gens = mixed_payloads(seed, n_payloads=n, per_payload=20)[:n]
    return b"".join(frame_of(g, i) for i, g in enumerate(gens)), gens


@pytest.mark.parametrize("rb", [1, 53, 700, 4096, 10**9])
def test_ranges_cover_each_frame_once(rb: int) -> None:
    data, _gens = _frames(15)
    data = data[:200] + b"\x89TRF junk" + data[200:]  # junk inside a body is corruption too
    got: list[int] = []
    bad: list[int] = []
    for t in split_ranges("k", len(data), max(rb, 1)):
        rr = scan_owned(lambda a, b: data[a:b], t)
        got += [rr.base + int(x) for x in rr.ints[:, framing.F_POS]]
        bad += [int(x) for x in rr.corrupt]
    ref = scan_owned(lambda a, b: data[a:b], ReadTask("k", 0, len(data), len(data)))
    assert got == [int(x) for x in ref.ints[:, framing.F_POS]]
    assert len(got) == 14 and len(bad) >= 1 and bad == [int(x) for x in ref.corrupt]


def test_truncated_object_tail_is_corrupt() -> None:
    data, _ = _frames(3)
    data = data[:-10]
    rr = scan_owned(lambda a, b: data[a:b], ReadTask("k", 0, len(data), len(data)))
    assert len(rr.ints) == 2 and len(rr.corrupt) == 1


def test_decode_reports_invalid_payloads_and_keeps_neighbours() -> None:
    rng = np.random.default_rng(0)
    pts = np.zeros(4, payload.RECORD_DTYPE)
    pts["ts"] = T0 + rng.integers(0, 100, 4)
    good = Gen(7, 10, pts)
    bad_magic = zstandard.ZstdCompressor().compress(b"XXXX" + bytes(20))
    bad_zstd = b"\x28\xb5\x2f\xfd" + bytes(30)
    frames = [frame_of(good, 0)]
    for body in (bad_magic, bad_zstd):
        frames.append(framing.encode_frame(body, raw_len=24, org_id=7, n_points=0, intake_ns=1,
                                           offset=1, partition=0))
    frames.append(frame_of(Gen(7, 11, pts), 2))
    frames.append(frame_of(Gen(135, 12, pts), 4))  # header org 135, frame org 7 below
    raw = bytearray(b"".join(frames))
    data = bytes(raw)
    rr = scan_owned(lambda a, b: data[a:b], ReadTask("obj", 0, len(data), len(data)))
    rr.ints[4, framing.F_ORG] = 7
    out = decode_range(rr, "org-mod-7", SMAP, T0, T0 + W)
    reasons = [r for _, _, r in out.invalid]
    assert sorted(reasons) == sorted([payload.BAD_MAGIC, payload.NOT_ONE_FRAME,
                                      payload.KEY_MISMATCH])
    assert len(out) == 8 and set(out.intake_ns.tolist()) == {10, 11}


def _pts(rows: list[tuple[int, int, int, int, float, int, int]]) -> Points:
    a = list(zip(*rows, strict=True))
    return Points(np.array(a[0], np.uint32), np.array(a[1], np.uint64), np.array(a[2], np.uint64),
                  np.array(a[3], np.uint32), np.array(a[4], np.float64), np.array(a[5], np.uint64),
                  np.array(a[6], np.uint32))


def test_sort_dedup_winner_rule_is_order_independent() -> None:
    big = 2**64 - 1
    rows = [(1, big, 5, 10, 1.0, 100, 0), (1, big, 5, 10, 2.0, 100, 3), (1, big, 5, 10, 3.0, 99, 9),
            (1, 2**63, 5, 10, 4.0, 1, 0), (0, big, big, 2**32 - 1, float("nan"), 1, 0),
            (1, big, 5, 0, 5.0, 1, 0), (1, big, 5, 10, 2.0, 100, 3)]
    rng = np.random.default_rng(0)
    results = []
    for _ in range(5):
        perm = rng.permutation(len(rows))
        out, dups = merge.sort_dedup([_pts([rows[i] for i in perm])])
        assert dups == 3
        results.append((out.org.tolist(), out.metric.tolist(), out.ctx.tolist(), out.ts.tolist(),
                        out.value.view(np.uint64).tolist()))
    assert all(r == results[0] for r in results)
    org, met, ctx, ts, _ = results[0]
    assert list(zip(org, met, ctx, ts, strict=True)) == [
        (0, big, big, 2**32 - 1), (1, 2**63, 5, 10), (1, big, 5, 0), (1, big, 5, 10)]
    assert np.array(results[0][4], np.uint64).view(np.float64)[3] == 2.0


def _route_pts(n: int, seed: int, *, series: int, windows: int = 1) -> Points:
    rng = np.random.default_rng(seed)
    s = rng.integers(0, series, n)
    return Points((s % 3).astype(np.uint32), s.astype(np.uint64) * np.uint64(2**58 - 1),
                  np.full(n, 2**63, np.uint64),
                  rng.integers(T0, T0 + windows * W, n).astype(np.uint32),
                  rng.standard_normal(n), rng.integers(0, 5, n).astype(np.uint64),
                  np.zeros(n, np.uint32))


def _keys(p: Points, starts: list[int]) -> list[tuple[int, ...]]:
    w = route.window_of(p.ts, starts)
    return list(zip(w.tolist(), p.org.tolist(), p.metric.tolist(), p.ctx.tolist(),
                    p.ts.tolist(), strict=True))


@pytest.mark.parametrize("parts", [1, 2, 5, 40])
def test_split_pieces_are_ordered_key_ranges_with_whole_series(parts: int) -> None:
    starts = [T0, T0 + W]
    p = _route_pts(6000, 1, series=60, windows=2)
    samples = [route.sample(p.slice(0, 3000), starts, 7), route.sample(p.slice(3000, 6000),
                                                                       starts, 7)]
    spl = route.choose_splitters(samples, parts)
    assert all(
        np.array_equal(a, b) for a, b in zip(spl, route.choose_splitters(samples[::-1], parts),
                                             strict=True))
    pieces = route.split(p, starts, spl, parts)
    assert len(pieces) == parts and sum(len(x) for x in pieces) == len(p)
    keys = [_keys(x, starts) for x in pieces]
    assert sorted(k for ks in keys for k in ks) == sorted(_keys(p, starts))
    series = [{k[:4] for k in ks} for ks in keys]
    for a in range(parts):
        for b in range(a + 1, parts):
            if keys[a] and keys[b]:
                assert max(keys[a]) < min(keys[b])
            assert not series[a] & series[b]  # every series (of a window) whole in one piece
    assert parts == 1 or sum(1 for ks in keys if ks) > parts // 2


def test_split_cuts_a_series_longer_than_a_partition_by_ts() -> None:
    starts = [T0]
    big = _route_pts(9000, 2, series=1)  # one series: 9000 points
    small = _route_pts(3000, 3, series=300)
    small.org[:] = 9  # after the big series in key order
    p = concat([big, small])
    spl = route.choose_splitters([route.sample(p, starts, 3)], 6)
    pieces = route.split(p, starts, spl, 6)
    keys = [_keys(x, starts) for x in pieces]
    holding = [i for i, ks in enumerate(keys) if any(k[1] != 9 for k in ks)]
    assert len(holding) >= 3 and holding == list(range(holding[0], holding[-1] + 1))
    for a, b in itertools.pairwise(k for k in keys if k):
        assert max(a) < min(b)
    assert max(len(x) for x in pieces) < 2 * len(p) // 6
    small_series = [{k[:4] for k in ks if k[1] == 9} for ks in keys]
    assert all(not small_series[a] & small_series[b]
               for a in range(6) for b in range(a + 1, 6))


def _windows_oracle(p: Points, edges: list[int]) -> list[tuple[list[tuple[int, ...]], int]]:
    """Plain Python: per interval the winners' rows ``(org, metric, ctx, ts, value bits)``
    in key order, and the rows that came in; the largest (intake_ns, index, value bits)
    wins (merge's documented rule; the contract fixes the first two)."""
    best: list[dict[tuple[int, int, int, int], tuple[int, int, int]]] = [{} for _ in edges]
    rows_in = [0] * len(edges)
    bits = p.value.view(np.uint64).tolist()
    cols = zip(p.org.tolist(), p.metric.tolist(), p.ctx.tolist(), p.ts.tolist(),
               p.intake_ns.tolist(), p.idx.tolist(), bits, strict=True)
    for org, met, ctx, ts, intake, idx, vb in cols:
        w = max(0, sum(1 for e in edges if e <= ts) - 1)  # before the first edge: the first
        rows_in[w] += 1
        k, cand = (org, met, ctx, ts), (intake, idx, vb)
        if k not in best[w] or cand > best[w][k]:
            best[w][k] = cand
    return [([(*k, v[2]) for k, v in sorted(b.items())], n)
            for b, n in zip(best, rows_in, strict=True)]


def test_sort_dedup_windows_against_a_plain_python_oracle() -> None:
    rng = np.random.default_rng(2)
    n = 6000
    edges = [T0, T0 + W, T0 + 2 * W]
    # few distinct ts (some before the first edge, some on the edges), few series, few
    # (intake_ns, index) pairs: most points have copies, and ties go down to the value bits
    tss = np.array([T0 - 100, T0, T0 + 1, T0 + W - 1, T0 + W, T0 + 2 * W, T0 + 3 * W], np.uint32)
    p = Points(rng.integers(0, 3, n).astype(np.uint32),
               rng.integers(0, 2**64, n, dtype=np.uint64) % np.uint64(30) * np.uint64(2**58),
               np.full(n, 2**64 - 1, np.uint64), tss[rng.integers(0, len(tss), n)],
               rng.standard_normal(n), rng.integers(0, 5, n).astype(np.uint64) * np.uint64(2**62),
               rng.integers(0, 3, n).astype(np.uint32))
    want = _windows_oracle(p, edges)
    got = merge.sort_dedup_windows([p.slice(0, n // 2), p.slice(n // 2, n)], edges)
    assert sum(n_in - len(rows) for rows, n_in in want) > n // 2  # the rule mattered
    for (rows, dups, rows_in), (want_rows, want_in) in zip(got, want, strict=True):
        assert (rows_in, dups) == (want_in, want_in - len(want_rows))
        assert list(zip(rows.org.tolist(), rows.metric.tolist(), rows.ctx.tolist(),
                        rows.ts.tolist(), rows.value.view(np.uint64).tolist(),
                        strict=True)) == want_rows
    # one window (sort_dedup) and shuffled input: the same winners
    perm = rng.permutation(n)
    one, dups = merge.sort_dedup([p.take(perm)])
    flat = sorted(r for rows, _ in want for r in rows)
    assert dups == n - len(flat)
    assert list(zip(one.org.tolist(), one.metric.tolist(), one.ctx.tolist(), one.ts.tolist(),
                    one.value.view(np.uint64).tolist(), strict=True)) == flat
    assert [(len(r), d, k) for r, d, k in merge.sort_dedup_windows([], edges)] == [(0, 0, 0)] * 3


def test_fusable_only_small_single_partition_units() -> None:
    recs = [(_rec("a", [7]), None)]
    one = plan_chunk("org-mod-7", T0, W, recs, range_bytes=1000, rows_per_partition=100)
    assert graph.fusable([one, one], 100) and not graph.fusable([one, one], 15)
    many = plan_chunk("org-mod-7", T0, W, recs, range_bytes=1000, rows_per_partition=3)
    assert many.partitions > 1 and not graph.fusable([many], 10**9)


def test_pack_gathers_small_units_biggest_first() -> None:
    assert graph.pack([5, 100, 1, 2, 3, 40, 60], 50) == [[1], [6], [5, 0, 4, 3], [2]]
    assert graph.pack([], 10) == []
    its = [(ReadTask("k", a, a + n, 10**6), 0, 1) for a, n in ((0, 30), (30, 50), (80, 200),
                                                              (280, 10), (290, 10))]
    assert [len(g) for g in exchange.group_ranges(its, 100)] == [2, 1, 2]
    bins = graph.pack(list(range(1, 30)), 20)
    assert sorted(i for b in bins for i in b) == list(range(29))


@pytest.mark.parametrize(("rows", "series"), [(0, 1), (5, 3), (50_000, 9_000), (20_000, 20_000)])
def test_series_ids_number_by_first_appearance_through_rehashes(rows: int, series: int) -> None:
    rng = np.random.default_rng(rows + series)
    keys = rng.integers(0, 2**40, (series, 3)).astype(np.uint64)
    keys[:, 0] %= 7  # few orgs: series differ in metric / ctx only
    r = keys[rng.integers(0, series, rows)]
    sid, first = merge._series_ids(r[:, 0].astype(np.uint32), r[:, 1].copy(), r[:, 2].copy())
    seen: dict[tuple[int, int, int], int] = {}
    want = [seen.setdefault(tuple(int(x) for x in k), len(seen)) for k in r]
    assert sid.tolist() == want
    assert first.tolist() == [want.index(s) for s in range(len(seen))]
