"""Index records carry points and bytes per org and org × hour, bounded (issue 13)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from tailor.config import FlushPolicy
from tailor.format import payload as pl
from tailor.format.layout import HOUR, parse_stamp
from tailor.format.records import MAX_ORG_HOURS, ObjectRecord
from tailor.ingest.batcher import Batcher
from tailor.ingest.classify import Classifier, _Rec
from tailor.ingest.writer import object_record
from tailor.ops.volume import collect, record_volume
from tailor.shards import ShardMap

from .helpers import T0, points


def _record(payloads: list[tuple[int, np.ndarray]], fetches: int = 2) -> ObjectRecord:
    """The index record of one object holding ``payloads`` (one raw shard), classified
    in ``fetches`` fetches and batched as ingest does."""
    c = Classifier(ShardMap(shared_shards=1))
    b = Batcher(FlushPolicy())
    b.assign([("t", 0)])
    recs = [_Rec(i, str(org).encode(), pl.encode(org, T0 * 10**9 + i, pts), None)
            for i, (org, pts) in enumerate(payloads)]
    step = -(-len(recs) // fetches)
    for a in range(0, len(recs), step):
        for item in c.classify([(("t", 0), recs[a:a + step])]):
            assert b.add(item, 0.0)
    (batch,) = b.seal_all()
    return ObjectRecord.model_validate_json(object_record(batch, 1).dumps())


def test_points_and_bytes_per_org_and_hour_are_exact_below_the_bound() -> None:
    payloads = [(org, points(20 + 7 * k, 100 * org + k, late_hours=k % 3))
                for org in (3, 17, 40000) for k in range(5)]
    rec = _record(payloads)
    want = Counter[int]()
    want_h = Counter[tuple[int, int]]()
    for org, pts in payloads:
        want[org] += len(pts)
        for t in pts["ts"].tolist():
            want_h[(org, t // HOUR * HOUR)] += 1
    assert rec.orgs == [3, 17, 40000]
    assert rec.org_points == [want[o] for o in rec.orgs] and sum(rec.org_points) == rec.points
    assert sum(rec.org_bytes) == rec.bytes and all(b > 0 for b in rec.org_bytes)
    assert {(o, h): n for o, h, n in rec.org_hours} == dict(want_h)
    assert [n for _, _, n in rec.org_hours] == sorted((n for _, _, n in rec.org_hours),
                                                      reverse=True)
    org, hour, est = record_volume(rec, 0, 2**32)
    assert dict(zip(zip(org.tolist(), hour.tolist(), strict=True), est.tolist(),
                    strict=True)) == dict(want_h)


def test_hostile_hours_keep_the_record_small_and_the_totals_exact() -> None:
    rng = np.random.default_rng(1)
    wide = points(6000, 1)
    wide["ts"] = T0 + rng.permutation(3000).repeat(2) * HOUR  # 3000 distinct hours
    payloads = [(7, wide)] + [(org, points(50, org)) for org in range(100, 400)]
    rec = _record(payloads, fetches=5)
    assert len(rec.org_hours) == MAX_ORG_HOURS
    assert len(json.dumps(rec.org_hours)) < 40 * MAX_ORG_HOURS
    assert sum(rec.org_points) == rec.points == 6000 + 300 * 50
    org, hour, est = record_volume(rec, 0, 2**32)
    per_org = Counter[int]()
    per_hour = Counter[int]()
    for o, h, n in zip(org.tolist(), hour.tolist(), est.tolist(), strict=True):
        per_org[o] += n
        per_hour[h] += n
    assert all(abs(per_org[o] - n) < 1e-6 for o, n in zip(rec.orgs, rec.org_points, strict=True))
    assert all(abs(per_hour[parse_stamp(h)] - n) < 1e-6 for h, n in rec.hours.items())
    # A range only gets its own hours.
    org, hour, est = record_volume(rec, T0, T0 + 4 * HOUR)
    assert ((hour >= T0) & (hour < T0 + 4 * HOUR)).all()


def test_records_written_before_the_fields_load_and_are_estimated() -> None:
    new = _record([(5, points(40, 1)), (9, points(20, 2))])
    doc = json.loads(new.dumps())
    for k in ("org_points", "org_bytes", "org_hours"):
        del doc[k]
    old = ObjectRecord.model_validate(doc)
    assert old.org_points == old.org_bytes == old.org_hours == []
    vol = collect([old, old], 0, 2**32)  # the same object twice counts once
    assert vol.objects == 1 and vol.org_bytes == {5: old.bytes // 2, 9: old.bytes // 2}
    got = Counter[int]()
    for o, n in zip(vol.org.tolist(), vol.points.tolist(), strict=True):
        got[o] += n
    assert got == {5: 30.0, 9: 30.0}  # no per-org counts: shared evenly


def test_by_code_and_merge_count_as_python_does() -> None:
    from tailor.ingest.orgvolume import OrgVolume, by_code

    rng = np.random.default_rng(3)
    for top_code in (4, 2000):  # one sort key, and the two-key sort for many shards
        n, m = 500, 900
        codes = rng.integers(0, top_code, n)
        org = rng.integers(0, 2**32, n) % 7 * 613_000_001  # few orgs, some above 2**31
        pts, nb = rng.integers(0, 100, n), rng.integers(52, 999, n)
        rec = rng.integers(0, n, m)
        hour = T0 + rng.integers(0, 5, m) * HOUR
        hp = rng.integers(1, 50, m)
        got = by_code(codes, org, pts, nb, codes[rec], org[rec], hour, hp)
        want_o = Counter[tuple[int, int]]()
        want_b = Counter[tuple[int, int]]()
        want_h = Counter[tuple[int, int, int]]()
        for c, o, p, b in zip(codes.tolist(), org.tolist(), pts.tolist(), nb.tolist(),
                              strict=True):
            want_o[(c, o)] += p
            want_b[(c, o)] += b
        for r, h, p in zip(rec.tolist(), hour.tolist(), hp.tolist(), strict=True):
            want_h[(int(codes[r]), int(org[r]), h)] += p
        assert set(got) == {c for c, _ in want_o}
        for c, v in got.items():
            assert v.org.tolist() == sorted(o for cc, o in want_o if cc == c)
            assert v.points.tolist() == [want_o[(c, o)] for o in v.org.tolist()]
            assert v.nbytes.tolist() == [want_b[(c, o)] for o in v.org.tolist()]
            assert {(o, h): p for o, h, p in v.triples()} == {
                (o, h): p for (cc, o, h), p in want_h.items() if cc == c}
    # Merging sums; past `keep`, the largest org-hours stay (ties: smaller (org, hour)).
    a = OrgVolume(*(np.array(x, np.int64) for x in (
        [1, 2], [10, 20], [100, 200], [1, 1, 2], [T0, T0 + HOUR, T0], [5, 3, 7])))
    b = OrgVolume(*(np.array(x, np.int64) for x in (
        [2, 3], [1, 4], [10, 40], [2, 3, 1], [T0, T0, T0 + HOUR], [1, 8, 5])))
    m = OrgVolume.merge([a, b], 2)  # three org-hours of 8 points: the smaller two stay
    assert (m.org.tolist(), m.points.tolist(), m.nbytes.tolist()) == (
        [1, 2, 3], [10, 21, 4], [100, 210, 40])
    assert m.triples() == [(1, T0 + HOUR, 8), (2, T0, 8)]
