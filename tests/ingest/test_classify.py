"""Classifying a whole fetch: one item per raw shard, the same facts as record by record."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tailor.config import FlushPolicy
from tailor.format import framing
from tailor.format import payload as pl
from tailor.format.layout import HOUR
from tailor.ingest.batcher import Batcher, Invalid, Valid
from tailor.ingest.classify import Classifier, _Rec
from tailor.shards import ShardMap

from .helpers import T0, invalid_kinds, points

SMAP = ShardMap(shared_shards=4)


def _fetch(seed: int) -> list[tuple[tuple[str, int], list[_Rec]]]:
    rng = np.random.default_rng(seed)
    out = []
    for tp in (("a", 0), ("a", 1), ("b", 0)):
        recs = []
        for off in range(30):
            if off % 7 == 3:
                key, value, _ = invalid_kinds(5, off)[off % 9]
            else:
                org = int(rng.integers(1, 12))
                key = str(org).encode()
                value = pl.encode(org, (T0 + off) * 10**9 + seed, points(
                    int(rng.integers(0, 20)), off, late_hours=off % 4))
            recs.append(_Rec(100 + off, key, value, 17))
        out.append((tp, recs))
    return out


def test_groups_hold_what_the_records_say() -> None:
    fetch = _fetch(1)
    items = Classifier(SMAP).classify(fetch)
    want: dict[str, dict[str, object]] = defaultdict(lambda: {
        "payloads": 0, "points": 0, "hours": defaultdict(int), "orgs": set(), "offsets": []})
    invalid = []
    for tp, recs in fetch:
        for r in recs:
            try:
                p = pl.validate(r.key, r.value)
            except Exception:
                invalid.append((tp, r.offset))
                continue
            w = want[SMAP.shard_for(p.org_id, p.intake_ns // 10**9)]
            w["payloads"] += 1  # type: ignore[operator]
            w["points"] += p.n_points  # type: ignore[operator]
            w["orgs"].add(p.org_id)  # type: ignore[attr-defined]
            w["offsets"].append((tp, r.offset))  # type: ignore[attr-defined]
            for t in p.points()["ts"].tolist():
                w["hours"][t // HOUR * HOUR] += 1  # type: ignore[index]
    assert [(i.tp, i.offset) for i in items if isinstance(i, Invalid)] == invalid
    groups = {i.shard: i for i in items if isinstance(i, Valid)}
    assert set(groups) == set(want)
    for shard, g in groups.items():
        w = want[shard]
        assert (g.payloads, g.points, g.orgs) == (w["payloads"], w["points"], w["orgs"])
        assert g.hours == dict(w["hours"])  # type: ignore[call-overload]
        buf = np.frombuffer(g.data, np.uint8)
        res = framing.scan(buf, len(buf), at_boundary=True)
        assert len(res.corrupt) == 0 and res.ints[:, framing.F_POS].tolist() == g.frame_pos.tolist()
        got = sorted(((g.topics[t], p), int(o)) for t, p, o in zip(
            res.ints[:, framing.F_TOPIC], res.ints[:, framing.F_PARTITION], res.u64s[:, 1],
            strict=True))
        assert got == sorted(w["offsets"])  # type: ignore[call-overload]
        for tp, (first, last, _) in g.ranges.items():
            offs = [o for t, o in w["offsets"] if t == tp]  # type: ignore[attr-defined]
            assert (first, last) == (min(offs), max(offs))


def test_topic_table_only_grows_and_batches_never_renumber() -> None:
    c = Classifier(SMAP)
    rec = [_Rec(0, b"1", pl.encode(1, 1, points(3, 0)), None)]
    (first,) = c.classify([(("b", 0), rec)])
    (second,) = c.classify([(("a", 0), rec)])
    assert first.topics == ("b",) and second.topics == ("b", "a")
    assert isinstance(first, Valid) and isinstance(second, Valid)
    b = Batcher(FlushPolicy())
    b.assign([("a", 0), ("b", 0)])
    assert b.add(first, 0.0) and b.add(second, 0.0)
    (batch,) = b.seal_all()
    assert batch.topics == ["b", "a"] and batch.data() == first.data + second.data


def test_a_group_with_an_unassigned_partition_is_not_added() -> None:
    (item,) = [i for i in Classifier(ShardMap(shared_shards=1)).classify(
        [(("a", 0), [_Rec(0, b"1", pl.encode(1, 1, points(3, 0)), None)]),
         (("a", 1), [_Rec(0, b"1", pl.encode(1, 2, points(3, 0)), None)])])]
    b = Batcher(FlushPolicy())
    b.assign([("a", 0)])
    assert not b.add(item, 0.0) and b.idle() and b.committable() == {}
