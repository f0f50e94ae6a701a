"""`tailor diff`: the pure comparison and whole roots (local and S3)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tailor.cli import main
from tailor.config import StoreConfig
from tailor.ops.diff import Points, compare, diff_roots
from tailor.storage import Store
from tests.ops.chunks import write_chunk

T0 = 1767225600
W = 4 * 3600
NAN2 = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]  # NaN, other payload


def pts(rows: list[tuple[int, int, int, int, float]]) -> Points:
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(5)]
    return Points(*(np.asarray(c, dtype=d) for c, d in zip(
        cols, (np.uint32, np.uint64, np.uint64, np.uint32, np.float64), strict=True)))


BASE = [(1, 10, 100, T0 + i, float(i)) for i in range(50)] + [
    (2, 20, 7, T0 + 5, math.nan), (2, 20, 7, T0 + 6, -0.0), (3, 1, 1, T0, math.inf)]


def test_identical_including_nan_bits() -> None:
    d = compare(pts(BASE), pts(list(reversed(BASE))))
    assert (d.only_a, d.only_b, d.changed, d.differing, d.share) == (0, 0, 0, 0, 0.0)
    assert d.points_a == d.points_b == len(BASE)


def test_missing_extra_changed_reported_exactly() -> None:
    b = list(BASE)
    missing = b.pop(3)  # only in A
    extra = (9, 9, 9, T0 + 1, 1.5)  # only in B
    b.append(extra)
    b[10] = (*b[10][:4], b[10][4] + 1)  # changed value
    i_nan = next(i for i, r in enumerate(b) if r[0] == 2 and r[3] == T0 + 5)
    b[i_nan] = (*b[i_nan][:4], NAN2)  # another NaN: different bits
    i_zero = next(i for i, r in enumerate(b) if r[0] == 2 and r[3] == T0 + 6)
    b[i_zero] = (*b[i_zero][:4], 0.0)  # +0.0 vs -0.0
    d = compare(pts(BASE), pts(b), shard="org-mod-1", window="w", examples=5)
    assert (d.only_a, d.only_b, d.changed) == (1, 1, 3)
    assert d.share == pytest.approx(5 / (len(BASE) + 1))
    ex = {(e.kind, e.org_id, e.metric_id, e.context_key, e.ts) for e in d.examples}
    assert ("only_a", *missing[:4]) in ex
    assert ("only_b", *extra[:4]) in ex
    assert ("changed", *b[10][:4]) in ex
    assert ("changed", 2, 20, 7, T0 + 5) in ex and ("changed", 2, 20, 7, T0 + 6) in ex


def test_repeated_keys_and_empty_sides() -> None:
    d = compare(pts([*BASE, BASE[0]]), pts(BASE))
    assert (d.duplicates_a, d.only_a, d.only_b, d.changed) == (1, 0, 0, 0)
    assert d.differing == 1
    d = compare(pts([]), pts(BASE[:3]), examples=2)
    assert (d.only_b, d.differing, len(d.examples)) == (3, 3, 2)
    assert compare(pts([]), pts([])).differing == 0


def _roots(a: Store, b: Store) -> None:
    write_chunk(a, "org-mod-1", T0, BASE)
    write_chunk(b, "org-mod-1", T0, BASE, files=3)  # same points, other file cut
    write_chunk(a, "org-mod-2", T0 + W, BASE[:5])
    changed = [*BASE[:4], (*BASE[4][:4], 99.0)]
    write_chunk(b, "org-mod-2", T0 + W, [*changed[:2], *changed[3:], (5, 5, 5, T0 + W, 1.0)])
    write_chunk(a, "org-mod-3", T0, BASE[:2])  # a chunk only A has
    b.put("org-mod-4/2026-01-01T00/part-y-00000.parquet", b"not a chunk: no manifest")


def test_roots_local_and_cli(tmp_path: Path) -> None:
    a, b = Store(StoreConfig(url=str(tmp_path / "a"))), Store(StoreConfig(url=str(tmp_path / "b")))
    _roots(a, b)
    r = diff_roots(a, b)
    by = {(c.shard, c.window): c for c in r.chunks}
    assert set(by) == {("org-mod-1", "2026-01-01T00"), ("org-mod-2", "2026-01-01T04"),
                       ("org-mod-3", "2026-01-01T00")}
    assert by[("org-mod-1", "2026-01-01T00")].differing == 0
    c2 = by[("org-mod-2", "2026-01-01T04")]
    assert (c2.only_a, c2.only_b, c2.changed) == (1, 1, 1)
    c3 = by[("org-mod-3", "2026-01-01T00")]
    assert (c3.in_a, c3.in_b, c3.only_a) == (True, False, 2)
    t = r.totals()
    assert (t["only_a"], t["only_b"], t["changed"], t["chunks_differing"]) == (3, 1, 1, 2)

    runner = CliRunner()
    res = runner.invoke(main, ["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.output)
    assert doc["totals"]["differing"] == 5 and not doc["totals"]["identical"]
    res = runner.invoke(main, ["diff", str(tmp_path / "a"), str(tmp_path / "b"),
                               "--shard", "org-mod-1"])
    assert res.exit_code == 0, res.output
    assert "identical" in res.output
    res = runner.invoke(main, ["diff", str(tmp_path / "a"), str(tmp_path / "b"),
                               "--windows", "2026-01-01T04..2026-01-01T08"])
    assert res.exit_code == 1 and "only A" in res.output and "org-mod-3" not in res.output
    res = runner.invoke(main, ["diff", str(tmp_path / "a"), str(tmp_path / "typo")])
    assert res.exit_code == 1  # A's chunks are all missing in B
    res = runner.invoke(main, ["diff", str(tmp_path / "typo1"), str(tmp_path / "typo2")])
    assert res.exit_code == 2 and "nothing to compare" in res.output


def test_roots_on_s3(s3: object, bucket: str) -> None:
    from tailor.testing.services import S3Server

    assert isinstance(s3, S3Server)
    cfg = {"s3_endpoint_url": s3.endpoint_url}
    a = Store(StoreConfig(url=f"s3://{bucket}/a", **cfg))
    b = Store(StoreConfig(url=f"s3://{bucket}/b", **cfg))
    _roots(a, b)
    t = diff_roots(a, b).totals()
    assert (t["only_a"], t["only_b"], t["changed"]) == (3, 1, 1)
    res = CliRunner().invoke(main, ["diff", f"s3://{bucket}/a", f"s3://{bucket}/a",
                                    "--s3-endpoint-url", s3.endpoint_url])
    assert res.exit_code == 0, res.output
