"""Partition watermarks: never ahead of the stored data, never frozen by a quiet partition.

Pure rules first (tailor.ingest.watermarks), then `tailor ingest` against the
real Tansu broker and moto S3 (through the fault proxy, which holds writes
and records every watermark PUT).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tailor.config import FlushPolicy, StoreConfig
from tailor.format import payload as pl
from tailor.format.records import CLOCK_SLACK_NS, Watermark
from tailor.ingest.batcher import Batcher
from tailor.ingest.watermarks import Watermarks
from tailor.storage import Store
from tailor.testing import services

from .faultproxy import FaultProxy
from .helpers import (
    T0,
    Rec,
    check_complete,
    end_offsets,
    ingest_cmd,
    points,
    produce,
    read_log,
    start,
    wait_exit,
    wait_until,
)
from .test_batcher import invalid

Procs = list[subprocess.Popen[bytes]]
S = 10**9


def test_high_water_seen_before_a_pause_does_not_make_a_partition_caught_up() -> None:
    wm = Watermarks("g", interval_s=30)
    seen_ms = 1_000_000
    fresh = wm.make(("t", 0), 10, 10, seen_ms, 5 * S, now_ns=seen_ms * 10**6 + S)
    assert fresh.caught_up and fresh.high_water_ns == seen_ms * 10**6
    wm.pause_began()  # fetching paused after that mark was seen
    stale = wm.make(("t", 0), 10, 10, seen_ms, 5 * S, now_ns=seen_ms * 10**6 + 9 * S)
    assert not stale.caught_up and stale.high_water_ns is None
    assert stale.durable_until_ns == 5 * S  # only what the committed prefix holds
    during = wm.make(("t", 0), 10, 10, seen_ms + 100, 5 * S, now_ns=seen_ms * 10**6 + 9 * S)
    assert not during.caught_up  # a fetch that was in flight when the pause began
    wm.resumed(seen_ms * 10**6 + 2 * S)
    assert not wm.make(("t", 0), 10, 10, seen_ms + 100, 5 * S, now_ns=0).caught_up
    after = wm.make(("t", 0), 10, 12, seen_ms + 5000, 5 * S, now_ns=seen_ms * 10**6 + 9 * S)
    assert not after.caught_up  # fresh again, but records arrived meanwhile
    assert wm.make(("t", 0), 12, 12, seen_ms + 5000, 5 * S, now_ns=0).caught_up


def test_caught_up_partition_is_durable_until_its_high_water_was_seen() -> None:
    w = Watermark(group="g", topic="t", partition=0, committed=5, high_water=5,
                  max_intake_ns=T0 * S, caught_up=True, updated_ns=(T0 + 100) * S,
                  high_water_ns=(T0 + 40) * S)
    assert w.durable_until_ns == (T0 + 40) * S  # not the later write time
    w = w.model_copy(update={"high_water_ns": (T0 + 900) * S})
    assert w.durable_until_ns == (T0 + 100) * S  # never past the write
    old = Watermark.model_validate_json(  # written before high_water_ns existed
        b'{"group":"g","topic":"t","partition":0,"committed":5,"high_water":5,'
        b'"max_intake_ns":0,"caught_up":true,"updated_ns":7}')
    assert old.durable_until_ns == 7


def test_heartbeat_due_and_settled_partitions() -> None:
    wm = Watermarks("g", interval_s=2)
    w = wm.make(("t", 0), 1, 1, 1, 0, now_ns=10 * S)
    assert wm.due(("t", 0), 10 * S)
    wm.queue(w, 10 * S)
    assert not wm.due(("t", 0), 20 * S)  # queued, not written yet
    assert wm.take() == {("t", 0): w}
    assert not wm.due(("t", 0), 11 * S) and wm.due(("t", 0), 12 * S)
    b = Batcher(FlushPolicy())
    b.assign([("t", 0)])
    part = b.parts[("t", 0)]
    assert part.settled()  # nothing fetched since assignment
    b.fetched(("t", 0), 0, 1)
    assert not part.settled()  # fetched, not classified yet
    b.add(invalid("t", 0, 0), now=0.0)
    assert b.committable() == {}  # where fetching started: already committed
    b.done(b.seal_all()[0])
    assert b.committable() == {("t", 0): 1}
    b.mark_committed(("t", 0), 1)
    assert part.settled()


def _topic(bootstrap: str, partitions: int) -> str:
    name = f"wm-{uuid.uuid4().hex[:8]}"
    asyncio.run(services.create_topics(bootstrap, [name], partitions))
    return name


def _payload(org: int, k: int, n: int) -> bytes:
    return pl.encode(org, (T0 + 5 * 3600) * S + k, points(n, 1000 * org + k))


def _marks(proxy: FaultProxy, topic: str, partition: int) -> list[Watermark]:
    with proxy.lock:
        puts = list(proxy.puts)
    return [Watermark.model_validate_json(body) for _, path, body in puts
            if path.endswith(f"/{topic}/{partition}.json")]


def test_commit_after_a_pause_does_not_claim_caught_up_from_a_stale_high_water(
        broker: services.Broker, raw_store: StoreConfig, s3: services.S3Server,
        tmp_path: Path, procs: Procs) -> None:
    # Every object write is held.  Partition 0's small payloads (org 1) are
    # consumed first; then partition 1's big ones (org 2) fill the 1 MiB
    # memory bound and fetching pauses.  While paused, one more record lands
    # in partition 0; then only org 1's objects are let through, so partition
    # 0 commits while fetching is still paused: its high-water mark is from
    # before the pause and must not make it caught up.
    topic = _topic(broker.bootstrap, 2)
    produced = produce(broker.bootstrap, [Rec(topic, 0, b"1", _payload(1, k, 5), None)
                                          for k in range(3)])
    log = str(tmp_path / "ing.log")
    with FaultProxy(s3.endpoint_url, held=("/objects/",), record="/watermarks/") as proxy:
        cfg = StoreConfig(url=raw_store.url, s3_endpoint_url=proxy.endpoint_url)
        proc = start(ingest_cmd(broker.bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}", cfg,
                                "--memory-limit", "1MiB", "--exit-when-idle", "3s",
                                "--watermark-interval", "1s", "--log-every", "0.3s"),
                     log, procs)
        wait_until(lambda: "payloads=3 " in read_log(log), 60, "partition 0 to be consumed")
        produced |= produce(broker.bootstrap, [Rec(topic, 1, b"2", _payload(2, k, 8000), None)
                                               for k in range(10)])
        wait_until(lambda: "pausing fetch" in read_log(log), 60, "fetching to pause")
        time.sleep(1.5)  # past any fetch still in flight when fetching paused (0.5 s long poll)
        produced |= produce(broker.bootstrap, [Rec(topic, 0, b"1", _payload(1, 9, 5), None)])
        time.sleep(0.5)
        proxy.hold("/org-mod-2/")  # org 2's objects stay held: fetching stays paused
        proxy.release("/objects/")
        wait_until(lambda: any(m.committed == 3 for m in _marks(proxy, topic, 0)), 60,
                   "partition 0 to commit while paused")
        time.sleep(1.5)  # a heartbeat or two while still paused
        paused_marks = _marks(proxy, topic, 0)
        assert "resuming fetch" not in read_log(log)
        proxy.release()
        assert wait_exit(proc, 90, log) == 0, read_log(log)[-3000:]
    assert [m for m in paused_marks if m.caught_up] == []
    check_complete(raw_store, produced)
    final = Watermark.model_validate_json(Store(raw_store).get(
        f"watermarks/{_marks(proxy, topic, 0)[-1].group}/{topic}/0.json"))
    assert final.caught_up and final.committed == end_offsets(produced)[(topic, 0)] == 4


def test_quiet_partition_keeps_its_watermark_fresh_and_the_window_gets_ready(
        broker: services.Broker, raw_store: StoreConfig, tmp_path: Path, procs: Procs) -> None:
    from tailor.ops.readiness import chunk_rows, select_ready
    from tailor.ops.state import load_state
    from tailor.shards import ShardMap

    topic = _topic(broker.bootstrap, 2)
    produced = produce(broker.bootstrap, [Rec(topic, p, b"3", _payload(3, p, 20), None)
                                          for p in (0, 1)])
    group, log = f"g-{uuid.uuid4().hex[:8]}", str(tmp_path / "ing.log")
    proc = start(ingest_cmd(broker.bootstrap, topic, group, raw_store,
                            "--watermark-interval", "1s"), log, procs)
    store = Store(raw_store)

    def marks() -> list[Watermark]:
        store.invalidate()
        keys = [k for k in store.list(f"watermarks/{group}/") if k.endswith(".json")]
        return [Watermark.model_validate_json(store.get(k)) for k in keys]

    wait_until(lambda: len(ms := marks()) == 2 and all(m.caught_up and m.committed == 1
                                                       for m in ms), 60, "both committed")
    first = {m.partition: m.updated_ns for m in marks()}
    # Nothing arrives any more.  A window whose end plus grace is 3 s from now
    # becomes ready only if the quiet partitions' watermarks keep moving.
    shard_map = ShardMap()
    shard, start_s = shard_map.shard_for(3, T0), T0
    grace = (time.time_ns() + 3 * S) / S - (start_s + 4 * 3600)

    def ready() -> bool:
        st = load_state(store, Store(StoreConfig(url=str(tmp_path / "out"))), shard_map, [shard])
        rows = chunk_rows(shard_map, [shard], st.records, st.manifests, st.watermarks,
                          length=4 * 3600, grace_s=grace, listing=st.listing)
        return [(s.shard, s.start) for s in select_ready(rows)] == [(shard, start_s)]

    assert not ready()
    wait_until(ready, 20, "the window to become ready")
    later = {m.partition: m.updated_ns for m in marks()}
    assert all(later[p] > first[p] + S for p in (0, 1)), (first, later)
    assert all(m.caught_up and m.durable_until_ns <= time.time_ns() + CLOCK_SLACK_NS
               for m in marks())
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, 30, log) == 0, read_log(log)[-3000:]
    check_complete(raw_store, produced)
