"""The pure batching core: flush policy, memory accounting, committable offsets.
No I/O, no clock: ``now`` is passed in."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.config import FlushPolicy
from tailor.format import framing, layout
from tailor.format import payload as pl
from tailor.format.records import QuarantineEntry
from tailor.ingest.batcher import OBJECT, QUARANTINE, Batcher, Invalid, Valid
from tailor.ingest.classify import classify_one as classify
from tailor.ingest.writer import object_record
from tailor.shards import ShardMap

from .helpers import T0, invalid_kinds, points

SMAP = ShardMap(shared_shards=4)


def valid(topic: str, part: int, offset: int, org: int, n: int = 5, seed: int = 0,
          late: int = 0) -> Valid:
    value = pl.encode(org, (T0 + 10) * 10**9 + offset, points(n, seed + offset, late))
    item = classify(topic, part, offset, str(org).encode(), value, None, SMAP)
    assert isinstance(item, Valid)
    return item


def invalid(topic: str, part: int, offset: int) -> Invalid:
    item = classify(topic, part, offset, b"12x", b"junk", 123, SMAP)
    assert isinstance(item, Invalid)
    return item


def test_classify_routes_and_describes() -> None:
    v = valid("t", 1, 7, org=6, n=50, late=30)
    assert v.shard == "org-mod-2" and v.orgs == {6} and v.points == 50 and v.payloads == 1
    assert v.ranges == {("t", 1): (7, 7, (T0 + 10) * 10**9 + 7)}
    ts = points(50, 7, 30)["ts"]
    assert (v.min_ts, v.max_ts) == (int(ts.min()), int(ts.max()))
    assert sum(v.hours.values()) == 50 and all(h % 3600 == 0 for h in v.hours)
    assert v.hours == {h: int(((ts // 3600) * 3600 == h).sum()) for h in v.hours}
    empty = classify("t", 0, 1, b"3", pl.encode(3, 1, points(0, 0)), None, SMAP)
    assert isinstance(empty, Valid) and empty.hours == {} and empty.min_ts is None


@pytest.mark.parametrize("kind", range(10))
def test_classify_quarantines_every_invalid_kind(kind: int) -> None:
    key, value, reason = invalid_kinds(42, 1)[kind]
    item = classify("tp", 3, 99, key, value, 5, SMAP)
    assert isinstance(item, Invalid) and item.reason == reason
    e = QuarantineEntry.model_validate_json(item.line)
    assert (e.topic, e.partition, e.offset, e.reason, e.timestamp_ms) == ("tp", 3, 99, reason, 5)


def test_flush_on_payload_count() -> None:
    b = Batcher(FlushPolicy(max_age_s=100, max_payloads=3, max_bytes=10**9))
    b.assign([("t", 0)])
    for off in range(5):
        assert b.add(valid("t", 0, off, org=1), now=0.0)
        due = b.due(now=0.0)
        assert len(due) == (1 if off == 2 else 0)
    assert len(b.sealed) == 1 and b.open[(OBJECT, "org-mod-1")].payloads == 2


def test_flush_on_age_per_shard() -> None:
    b = Batcher(FlushPolicy(max_age_s=10, max_payloads=10**6, max_bytes=10**9))
    b.assign([("t", 0)])
    b.add(valid("t", 0, 0, org=1), now=0.0)
    b.add(valid("t", 0, 1, org=2), now=5.0)
    b.add(valid("t", 0, 2, org=1), now=9.0)  # joins the old batch; age counts from its first
    assert b.due(now=9.9) == []
    due = b.due(now=10.0)
    assert [d.key for d in due] == ["org-mod-1"] and due[0].payloads == 2
    assert [d.key for d in b.due(now=15.0)] == ["org-mod-2"]


def test_flush_on_bytes() -> None:
    one = valid("t", 0, 0, org=1)
    frame = len(one.data)
    b = Batcher(FlushPolicy(max_age_s=100, max_payloads=10**6, max_bytes=3 * frame))
    b.assign([("t", 0)])
    for off in range(3):
        b.add(valid("t", 0, off, org=1, seed=0), now=0.0)
    due = b.due(now=0.0)
    assert len(due) == 1 and due[0].nbytes >= 3 * frame - 3


def test_memory_accounting_and_seal_biggest() -> None:
    b = Batcher(FlushPolicy(max_age_s=100, max_payloads=10**6, max_bytes=10**9))
    b.assign([("t", 0), ("t", 1)])
    sizes = {}
    for off in range(12):
        b.add(valid("t", off % 2, off, org=off % 3, n=5 + 20 * (off % 3)), now=0.0)
    b.add(invalid("t", 0, 100), now=0.0)
    for bt in b.open.values():
        sizes[bt.key] = bt.nbytes
        assert bt.nbytes == sum(len(c) for c in bt.chunks)
    assert b.buffered_bytes == sum(sizes.values()) == b.open_bytes
    biggest = max(sizes, key=lambda k: sizes[k])
    sealed = b.seal_biggest(b.open_bytes - 1)
    assert [s.key for s in sealed] == [biggest]
    assert b.buffered_bytes == sum(sizes.values())  # sealed still counts until durable
    b.done(sealed[0])
    assert b.buffered_bytes == sum(sizes.values()) - sizes[biggest]
    for s in b.seal_all():
        b.done(s)
    assert b.buffered_bytes == 0 and b.idle()


def test_committable_offsets_interleaved() -> None:
    b = Batcher(FlushPolicy(max_age_s=100, max_payloads=10**6, max_bytes=10**9))
    b.assign([("a", 0), ("a", 1)])
    # a/0: offsets 0..5 alternate between shards 1 and 2; offset 3 is invalid
    orgs = {0: 1, 1: 2, 2: 1, 4: 2, 5: 1}
    for off in range(6):
        b.add(invalid("a", 0, off) if off == 3 else valid("a", 0, off, orgs[off]), now=0.0)
    b.add(valid("a", 1, 10, org=2), now=0.0)
    b.add(valid("a", 1, 11, org=3), now=0.0)
    assert b.committable() == {("a", 0): 0, ("a", 1): 10}
    by = {bt.key: bt for bt in b.seal_all()}
    b.done(by["org-mod-2"])  # a/0 offsets 1, 4 and a/1 offset 10 durable
    assert b.committable() == {("a", 0): 0, ("a", 1): 11}
    b.done(by["org-mod-1"])  # a/0: 0 2 5 durable; 3 (quarantine) is not
    assert b.committable() == {("a", 0): 3, ("a", 1): 11}
    b.done(by["a/0"])
    assert b.committable() == {("a", 0): 6, ("a", 1): 11}
    b.mark_committed(("a", 0), 6)
    assert b.committable() == {("a", 1): 11}
    b.done(by["org-mod-3"])
    assert b.committable() == {("a", 1): 12}
    assert b.parts[("a", 1)].max_intake_ns == (T0 + 10) * 10**9 + 11


def test_open_batch_holds_partition_back() -> None:
    b = Batcher(FlushPolicy(max_age_s=10, max_payloads=10**6, max_bytes=10**9))
    b.assign([("a", 0)])
    b.add(valid("a", 0, 0, org=1), now=0.0)
    b.add(valid("a", 0, 1, org=2), now=8.0)
    (first,) = b.due(now=10.0)
    b.done(first)
    assert b.committable() == {("a", 0): 1}  # offset 1 is still buffered


def test_revoke_and_reassign_ignores_stale_batches() -> None:
    b = Batcher(FlushPolicy(max_age_s=10, max_payloads=10**6, max_bytes=10**9))
    b.assign([("a", 0)])
    b.add(valid("a", 0, 50, org=1), now=0.0)
    stale = b.seal_for([("a", 0)])
    b.revoke([("a", 0)])
    assert not b.add(valid("a", 0, 51, org=1), now=0.0)  # not assigned: dropped
    b.assign([("a", 0)])
    b.add(valid("a", 0, 40, org=2), now=0.0)  # redelivered from the committed offset
    b.done(stale[0])
    assert b.committable() == {("a", 0): 40}


def test_batch_id_deterministic_and_object_record() -> None:
    def build() -> Batcher:
        b = Batcher(FlushPolicy())
        b.assign([("a", 0), ("b", 2)])
        b.add(valid("a", 0, 5, org=1, late=30), now=0.0)
        b.add(valid("b", 2, 9, org=5), now=1.0)
        b.add(invalid("a", 0, 6), now=1.0)
        return b

    x, y = build().seal_all(), build().seal_all()
    assert [s.batch_id for s in x] == [s.batch_id for s in y]
    assert len({s.batch_id for s in x}) == 2
    obj = next(s for s in x if s.kind == OBJECT)
    assert next(s for s in x if s.kind == QUARANTINE).payloads == 1
    rec = object_record(obj, 1)
    assert rec.key == layout.object_key("org-mod-1", obj.batch_id)
    assert rec.topics == ["a", "b"] and rec.orgs == [1, 5] and rec.payloads == 2
    assert [(o.topic, o.partition, o.first, o.last) for o in rec.offsets] == [
        ("a", 0, 5, 5), ("b", 2, 9, 9)]
    assert sum(rec.hours.values()) == rec.points == 10
    buf = np.frombuffer(obj.data(), dtype=np.uint8)
    res = framing.scan(buf, len(buf), at_boundary=True)
    assert len(res.ints) == 2 and len(res.corrupt) == 0
    assert [rec.topics[t] for t in res.ints[:, framing.F_TOPIC]] == ["a", "b"]
    assert res.u64s[:, 1].tolist() == [5, 9]


def test_intake_watermark_covers_only_the_committed_prefix() -> None:
    # Offsets 0 (org 1) and 1 (org 2) of one partition go to two batches.  The
    # later one becomes durable while the earlier one is still failing: the
    # partition's durable intake must stay below offset 0's payload.
    b = Batcher(FlushPolicy(max_age_s=100, max_payloads=10**6, max_bytes=10**9))
    b.assign([("a", 0)])
    b.add(valid("a", 0, 0, org=1), now=0.0)
    b.add(valid("a", 0, 1, org=2), now=0.0)
    by = {bt.key: bt for bt in b.seal_all()}
    b.done(by["org-mod-2"])  # offset 1 durable; offset 0 (org-mod-1) still being retried
    part = b.parts[("a", 0)]
    assert b.committable() == {("a", 0): 0}
    assert part.max_intake_ns == 0  # nothing of the committed prefix is known durable
    b.done(by["org-mod-1"])
    assert b.committable() == {("a", 0): 2}
    assert part.max_intake_ns == (T0 + 10) * 10**9 + 1  # both durable: offset 1's intake counts


def test_intake_beyond_the_clock_is_clamped() -> None:
    # intake_ns is untrusted: 2**64-1 in one valid payload must not move the
    # watermark past the caller's clock plus slack.
    b = Batcher(FlushPolicy(max_age_s=100, max_payloads=10**6, max_bytes=10**9))
    b.assign([("a", 0)])
    value = pl.encode(1, 2**64 - 1, points(3, 0))
    item = classify("a", 0, 0, b"1", value, None, SMAP)
    assert isinstance(item, Valid)
    b.add(item, now=0.0)
    (batch,) = b.seal_all()
    limit = (T0 + 100) * 10**9
    b.done(batch, intake_limit_ns=limit)
    assert b.parts[("a", 0)].max_intake_ns == limit
