"""Hostile but possible input, through `tailor ingest` on the real broker and moto S3."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np

from tailor.config import StoreConfig
from tailor.format import layout
from tailor.format import payload as pl
from tailor.format.layout import HOUR
from tailor.ops.balance import load_volume
from tailor.ops.diff import read_chunk
from tailor.ops.readiness import chunk_rows
from tailor.ops.state import load_state
from tailor.ops.volume import place
from tailor.shards import load
from tailor.storage import Store
from tailor.testing import services

from .faultproxy import FaultProxy
from .helpers import (
    T0,
    Rec,
    check_complete,
    committed_offsets,
    end_offsets,
    ingest_cmd,
    make_stream,
    points,
    produce,
    read_log,
    start,
    wait_exit,
)

Procs = list[subprocess.Popen[bytes]]
W = 4 * HOUR


def test_keys_of_any_length(broker: services.Broker, topics: list[str], raw_store: StoreConfig,
                            tmp_path: Path, procs: Procs) -> None:
    """Keys longer than Python's int() accepts (4300 digits) are classified per the
    contract: leading zeros are digits, only the value counts; nothing crashes."""
    t = topics[0]
    good = pl.encode(5, T0 * 10**9 + 1, points(4, 1))
    nines, padded = b"9" * 5000, b"0" * 4999 + b"5"
    hostile = [
        Rec(t, 0, nines, good, pl.KEY_MISMATCH),  # a value no org id has
        Rec(t, 0, nines, b"junk", pl.NOT_ONE_FRAME),
        Rec(t, 1, padded, b"junk", pl.NOT_ONE_FRAME),  # zero-padded, junk value
        Rec(t, 1, padded, good, None),  # zero-padded org 5: valid
        Rec(t, 2, b"0" * 6000, pl.encode(0, T0 * 10**9 + 2, points(2, 2)), None),  # org 0
        Rec(t, 2, nines + b"x", good, pl.BAD_KEY),
    ]
    stream = make_stream(topics, 40, seed=21)
    produced = produce(broker.bootstrap, stream[:20] + hostile + stream[20:])
    group, log = f"g-{uuid.uuid4().hex[:8]}", str(tmp_path / "ing.log")
    proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, raw_store,
                            "--exit-when-idle", "4s"), log, procs)
    assert wait_exit(proc, 90, log) == 0, read_log(log)[-3000:]
    raw = check_complete(raw_store, produced)  # valid bytes exact, reasons right
    invalid = sum(r.reason is not None for r in produced.values())
    assert len(Store(raw_store).list("quarantine/")) == len(raw.quarantined) == invalid
    ends = end_offsets(produced)
    assert committed_offsets(broker.bootstrap, group, list(ends)) == ends


def test_a_payload_spanning_a_year(broker: services.Broker, topics: list[str],
                                   raw_store: StoreConfig, out_store: StoreConfig,
                                   s3: services.S3Server, tmp_path: Path, procs: Procs) -> None:
    """One small valid payload with a point every hour of a year is indexed with a
    bounded number of PUTs (not one per hour), and every reader of the index still
    finds it for each window: a build of windows in mid-year, status, shards report."""
    shards_file = tmp_path / "shards.yaml"
    shards_file.write_text("shared_shards: 2\n")
    org, y0, hours = 77, T0 - 365 * 24 * HOUR, 365 * 24  # 2025, hourly
    pts = np.zeros(hours, pl.RECORD_DTYPE)
    pts["metric_id"], pts["context_key"] = 5, 6
    pts["ts"] = y0 + HOUR * np.arange(hours) + 60
    pts["value"] = np.arange(hours)
    value = pl.encode(org, T0 * 10**9, pts)
    assert len(value) < 64 << 10
    produced = produce(broker.bootstrap, [Rec(topics[0], 0, b"77", value, None),
                                          *make_stream(topics, 20, seed=22)])
    group, log = f"g-{uuid.uuid4().hex[:8]}", str(tmp_path / "ing.log")
    with FaultProxy(s3.endpoint_url) as proxy:
        cfg = StoreConfig(url=raw_store.url, s3_endpoint_url=proxy.endpoint_url)
        proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, cfg,
                                "--exit-when-idle", "4s", "--shards", str(shards_file)),
                     log, procs)
        assert wait_exit(proc, 120, log) == 0, read_log(log)[-3000:]
    puts = [p for m, p in proxy.requests if m == "PUT" and "/index/" in p]
    objects = {p.rsplit("/", 1)[1] for p in puts}
    assert len(puts) <= layout.MAX_INDEX_COPIES * len(objects), len(puts)  # not 8760
    raw = check_complete(raw_store, produced)
    (rec,) = [r for r in raw.records if org in r.orgs and r.min_ts < T0 - 48 * HOUR]
    assert 1 <= sum(p.endswith(f"/{rec.batch_id}.json") for p in puts) <= layout.MAX_INDEX_COPIES

    shard_map = load(str(shards_file))
    shard = shard_map.shard_for(org, y0)
    mid = layout.window_start(y0 + 182 * 24 * HOUR)
    wins = [mid, mid + W]
    stamps = f"{layout.stamp(mid)}..{layout.stamp(mid + 2 * W)}"
    build = subprocess.run(
        [sys.executable, "-m", "tailor", "build", "--raw", raw_store.url, "--out", out_store.url,
         "--s3-endpoint-url", s3.endpoint_url, "--shards", str(shards_file), "--shard", shard,
         "--windows", stamps, "--workers", "1"], capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    out = Store(out_store)
    for w in wins:
        got = read_chunk(out, shard, w)
        sel = (pts["ts"] >= w) & (pts["ts"] < w + W)
        assert got.org.tolist() == [org] * 4
        assert got.ts.tolist() == pts["ts"][sel].tolist()
        assert got.value.tolist() == pts["value"][sel].tolist()

    state = load_state(Store(raw_store), out, shard_map, [shard])
    rows = {r.start: r for r in chunk_rows(shard_map, [shard], state.records, state.manifests,
                                           state.watermarks, length=W, grace_s=900,
                                           listing=state.listing)
            if y0 <= r.start < T0}
    assert len(rows) == hours // 4 and all(r.objects == 1 for r in rows.values())
    assert {r.points for r in rows.values() if r.start < T0 - 48 * HOUR} == {4}  # no late data
    assert [rows[w].action for w in wins] == ["ok", "ok"] and rows[mid - W].action == "build"
    volume = place(load_volume(Store(raw_store), shard_map, wins, W), shard_map, W).chunks()
    assert {w: volume.get((shard, w)) for w in wins} == dict.fromkeys(wins, 4)
