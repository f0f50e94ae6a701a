"""The pure readiness / staleness core and `build --ready` selection."""

from __future__ import annotations

from tailor.format.layout import HOUR, object_key, stamp
from tailor.format.records import CLOCK_SLACK_NS, InputObject, Manifest, ObjectRecord, Watermark
from tailor.ops.readiness import (
    ChunkRow,
    chunk_rows,
    durable_until,
    ingest_watermark,
    is_ready,
    select_ready,
)
from tailor.ops.reshard import moves
from tailor.shards import ShardMap, parse

T0 = 1767225600  # 2026-01-01T00
W = 4 * HOUR
NS = 10**9


def rec(shard: str, batch: str, hours: dict[int, int], orgs: list[int] | None = None,
        min_ts: int | None = None, max_ts: int | None = None) -> ObjectRecord:
    hs = sorted(hours)
    return ObjectRecord(
        key=object_key(shard, batch), shard=shard, batch_id=batch, bytes=100, payloads=1,
        points=sum(hours.values()), min_ts=hs[0] if min_ts is None else min_ts,
        max_ts=hs[-1] + HOUR - 1 if max_ts is None else max_ts, min_intake_ns=0,
        max_intake_ns=0, topics=["t"], offsets=[], orgs=orgs or [1],
        hours={stamp(h): n for h, n in hours.items()}, written_ns=0)


def wm(partition: int, durable_s: int, caught_up: bool = False) -> Watermark:
    return Watermark(group="g", topic="t", partition=partition, committed=1, high_water=1,
                     max_intake_ns=durable_s * NS, caught_up=caught_up,
                     updated_ns=durable_s * NS)


def manifest(shard: str, start: int, inputs: list[ObjectRecord], points: int = 1) -> Manifest:
    return Manifest(shard=shard, window=stamp(start), window_start=start,
                    window_end=start + W, attempt="a", files=[], points=points, min_ts=start,
                    max_ts=start, inputs=[InputObject(key=r.key, bytes=r.bytes,
                                                      batch_id=r.batch_id, written_ns=0)
                                          for r in inputs],
                    duplicates_dropped=3, built_ns=1, tailor_version="t")


SMAP = ShardMap(shared_shards=2)


def rows_for(records: list[ObjectRecord], manifests: dict[tuple[str, int], Manifest],
             watermarks: list[Watermark], shard_map: ShardMap = SMAP,
             grace: float = 900) -> list[ChunkRow]:
    return chunk_rows(shard_map, shard_map.all_shards(), records, manifests, watermarks,
                      length=W, grace_s=grace)


def test_watermark_is_min_over_partitions_and_readiness_needs_grace() -> None:
    ws = [wm(0, T0 + W + 900), wm(1, T0 + W + 899)]
    assert ingest_watermark(ws) == (T0 + W + 899) * NS
    assert not is_ready(T0 + W, ingest_watermark(ws), 900)
    assert is_ready(T0 + W, ingest_watermark(ws[:1]), 900)
    assert not is_ready(T0 + W, None, 0)  # no watermark: nothing is known durable


def test_caught_up_partition_is_durable_until_its_commit_time() -> None:
    w = Watermark(group="g", topic="t", partition=0, committed=5, high_water=5,
                  max_intake_ns=T0 * NS, caught_up=True, updated_ns=(T0 + 10 * W) * NS)
    assert ingest_watermark([w]) == (T0 + 10 * W) * NS


def test_hostile_intake_time_never_moves_readiness_past_the_clock() -> None:
    # One valid payload with intake_ns 2**64-1 (the year 2554): a watermark
    # counts intake times at most a minute past when it was written, and a
    # reader at most a minute past its own clock.
    written = (T0 + W) * NS
    w = Watermark(group="g", topic="t", partition=0, committed=5, high_water=9,
                  max_intake_ns=2**64 - 1, caught_up=False, updated_ns=written)
    assert w.durable_until_ns == written + CLOCK_SLACK_NS
    assert ingest_watermark([w], now_ns=written) == written + CLOCK_SLACK_NS
    # A watermark from a host whose clock runs ahead: the reader's clock bounds it.
    ahead = Watermark(group="g", topic="t", partition=1, committed=5, high_water=5,
                      max_intake_ns=0, caught_up=True, updated_ns=2**63)
    assert durable_until(ahead, now_ns=written) == written + CLOCK_SLACK_NS
    # The window ending a day after the hostile write is not ready from it.
    rows = chunk_rows(SMAP, SMAP.all_shards(), [rec("org-mod-0", "a", {T0 + 6 * W: 1})], {},
                      [w], length=W, grace_s=0, now_ns=written)
    assert [(r.ready, r.action) for r in rows] == [(False, "wait")]


def test_rows_count_points_per_window_and_pick_ready_unbuilt_chunks() -> None:
    a = rec("org-mod-0", "a", {T0: 5, T0 + HOUR: 2, T0 + W: 7}, max_ts=T0 + W + 100)
    b = rec("org-mod-1", "b", {T0 + 2 * W: 1})
    rows = rows_for([a, a, b], {}, [wm(0, T0 + 2 * W + 900)])
    got = {(r.shard, r.start): r for r in rows}
    assert sorted(got) == [("org-mod-0", T0), ("org-mod-0", T0 + W), ("org-mod-1", T0 + 2 * W)]
    r0 = got[("org-mod-0", T0)]
    assert (r0.points, r0.objects, r0.ready, r0.built, r0.action) == (7, 1, True, False, "build")
    assert r0.max_ts == T0 + 2 * HOUR - 1  # object ends later: end of its last hour in the window
    assert got[("org-mod-0", T0 + W)].max_ts == T0 + W + 100  # exact
    assert got[("org-mod-0", T0 + W)].action == "build"
    assert got[("org-mod-1", T0 + 2 * W)].action == "wait"  # watermark short of end + grace
    sel = select_ready(rows)
    assert [(s.shard, s.start, s.reason) for s in sel] == [
        ("org-mod-0", T0, "build"), ("org-mod-0", T0 + W, "build")]


def test_built_chunk_is_ok_until_a_late_object_arrives() -> None:
    a = rec("org-mod-0", "a", {T0: 5})
    m = {("org-mod-0", T0): manifest("org-mod-0", T0, [a], points=5)}
    ws = [wm(0, T0 + 3 * W)]
    (row,) = rows_for([a], m, ws)
    assert (row.built, row.stale, row.action, row.built_points) == (True, False, "ok", 5)
    assert row.inputs == [a.key] and row.duplicates_dropped == 3
    late = rec("org-mod-0", "late", {T0 + HOUR: 1})
    (row,) = rows_for([a, late], m, ws)
    assert (row.stale, row.late, row.action) == (True, [late.key], "rebuild")
    assert [(s.shard, s.reason) for s in select_ready([row])] == [("org-mod-0", "rebuild")]
    # Stale but not ready (built early by hand): wait, do not rebuild yet.
    (row,) = rows_for([a, late], m, [wm(0, T0)])
    assert (row.stale, row.action) == (True, "wait")


def test_built_chunk_without_index_left_is_ok() -> None:
    m = {("org-mod-1", T0): manifest("org-mod-1", T0, [])}
    (row,) = rows_for([], m, [])
    assert (row.built, row.stale, row.objects, row.action) == (True, False, 0, "ok")


CUT = T0 + 2 * HOUR  # mid-window cutover of org 4 (shared shard org-mod-0) into org-4
MOVED = parse(f"shared_shards: 2\ndedicated:\n  - org: 4\n    since: {CUT}\n")


def test_moved_org_objects_count_for_both_shards_only_around_the_cutover() -> None:
    shared = rec("org-mod-0", "s", {T0: 3, T0 + W: 1}, orgs=[2, 4])
    dedicated = rec("org-4", "d", {T0 + 3 * HOUR: 2, T0 + W: 5}, orgs=[4])
    other = rec("org-mod-0", "o", {T0: 1}, orgs=[2])
    rows = rows_for([shared, dedicated, other], {}, [wm(0, T0 + 9 * W)], shard_map=MOVED)
    by = {(r.shard, r.start): r for r in rows}
    # Window T0 straddles the cutover: both raw shards feed both chunks (org 4's part).
    assert by[("org-mod-0", T0)].objects == 3
    assert by[("org-4", T0)].objects == 2  # 'shared' holds org 4, 'other' does not
    # Window T0+W is wholly after the cutover: org 4's dedicated objects do not feed org-mod-0.
    assert by[("org-mod-0", T0 + W)].objects == 1
    assert by[("org-4", T0 + W)].objects == 2
    mv = {m.org: m for m in moves(MOVED, "org-mod-0")}
    assert mv[4].direction == "out" and mv[4].other == "org-4" and mv[4].since == CUT
    (m4,) = moves(MOVED, "org-4")
    assert (m4.direction, m4.other) == ("in", "org-mod-0")
    assert "org 4 in (from org-mod-0" in m4.describe()
    assert moves(MOVED, "org-mod-1") == []


def test_only_records_not_accounted_for_by_manifests_are_read() -> None:
    from tailor.ops.readiness import records_to_read

    a = rec("org-mod-0", "a", {T0: 5, T0 + W: 1})  # feeds two windows
    b = rec("org-mod-0", "b", {T0: 2})
    c = rec("org-mod-1", "c", {T0: 4})
    listing = {"org-mod-0": {"a": [T0, T0 + W], "b": [T0]}, "org-mod-1": {"c": [T0]}}
    m = {("org-mod-0", T0): manifest("org-mod-0", T0, [a, b]),
         ("org-mod-1", T0): manifest("org-mod-1", T0, [c])}
    # 'a' also feeds the unbuilt window T0+W: read it; 'b' and 'c' are accounted for.
    assert records_to_read(SMAP, SMAP.all_shards(), listing, m, length=W) == {
        ("org-mod-0", "a")}
    rows = {(r.shard, r.start): r for r in rows_for_listing([a], m, listing)}
    r0 = rows[("org-mod-0", T0)]
    assert (r0.objects, r0.points, r0.max_ts, r0.stale, r0.action) == (2, None, None, False, "ok")
    assert rows[("org-mod-0", T0 + W)].points == 1  # every object of it was read
    r1 = rows[("org-mod-1", T0)]
    assert (r1.objects, r1.points, r1.stale) == (1, None, False)
    # A late object shows up in the listing: it is read, and the chunk is stale.
    late = rec("org-mod-1", "late", {T0 + HOUR: 1})
    listing2 = {**listing, "org-mod-1": {"c": [T0], "late": [T0 + HOUR]}}
    assert records_to_read(SMAP, SMAP.all_shards(), listing2, m, length=W) == {
        ("org-mod-0", "a"), ("org-mod-1", "late")}
    r1 = {(r.shard, r.start): r for r in rows_for_listing([a, late], m, listing2)}[
        ("org-mod-1", T0)]
    assert (r1.objects, r1.stale, r1.late, r1.action) == (2, True, [late.key], "rebuild")


def test_moved_org_source_is_read_unless_the_dedicated_chunk_holds_it() -> None:
    from tailor.ops.readiness import records_to_read

    shared = rec("org-mod-0", "s", {T0: 3}, orgs=[2, 4])
    listing = {"org-mod-0": {"s": [T0]}}
    only_shared = {("org-mod-0", T0): manifest("org-mod-0", T0, [shared])}
    # Window T0 straddles org 4's cutover: org-4's chunk may need 's' too.
    assert records_to_read(MOVED, MOVED.all_shards(), listing, only_shared, length=W) == {
        ("org-mod-0", "s")}
    both = {**only_shared, ("org-4", T0): manifest("org-4", T0, [shared])}
    assert records_to_read(MOVED, MOVED.all_shards(), listing, both, length=W) == set()


def rows_for_listing(records: list[ObjectRecord], manifests: dict[tuple[str, int], Manifest],
                     listing: dict[str, dict[str, list[int]]]) -> list[ChunkRow]:
    return chunk_rows(SMAP, SMAP.all_shards(), records, manifests, [wm(0, T0 + 9 * W)],
                      length=W, grace_s=900, listing=listing)


def test_status_names_stale_watermarks_of_retired_partitions() -> None:
    import json
    import time

    from tailor.ops.status import render_json, render_table, stale_watermarks

    now = time.time_ns()
    live = Watermark(group="g", topic="live", partition=0, committed=9, high_water=9,
                     max_intake_ns=0, caught_up=True, updated_ns=now - 30 * NS)
    retired = live.model_copy(update={"topic": "retired", "partition": 3,
                                      "updated_ns": now - 3 * 3600 * NS})
    assert stale_watermarks([live, retired], now) == [retired]
    text = render_table([], SMAP, [], [live, retired])
    assert "1 stale watermark(s)" in text and "g retired/3: last written 3 h ago" in text
    assert "live/0" not in text
    doc = json.loads(render_json([], SMAP, [], [live, retired]))
    assert [(p["topic"], p["stale"]) for p in doc["partitions"]] == [
        ("live", False), ("retired", True)]
    assert "stale" not in render_table([], SMAP, [], [live])
