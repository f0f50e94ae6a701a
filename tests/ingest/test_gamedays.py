"""Ingest game days (issue 10), against real components: Tansu, moto S3, Dask.

Each runs `tailor ingest` as operators do (a subprocess) through one outage
or one hostile stream, then ends with :func:`gameday.finish`: zero points
missing, extra or different against the oracle after `build --ready`, every
invalid record quarantined exactly once.  Sizes are small on purpose: the
faults, not the volume, are under test.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tailor.config import StoreConfig
from tailor.format import payload as pl
from tailor.format.records import CLOCK_SLACK_NS, Watermark
from tailor.storage import Store
from tailor.testing import services

from . import gameday
from .faultproxy import FaultProxy
from .helpers import (
    Rec,
    committed_offsets,
    end_offsets,
    ingest_cmd,
    new_group,
    points,
    produce,
    read_log,
    start,
    wait_exit,
    wait_until,
)
from .tcpproxy import TcpProxy

Procs = list[subprocess.Popen[bytes]]
#: Longer than the consumer's 10 s session timeout (a broker that expires
#: members then makes it rejoin).  Tansu keeps the member through cuts of 14
#: and 25 s alike (no rebalance, same outcome), so the longer cut adds only time.
CUT_S = 12.0



def _all_committed(bootstrap: str, group: str, produced: dict[Any, Rec]) -> bool:
    ends = end_offsets(produced)
    return committed_offsets(bootstrap, group, list(ends)) == ends


@pytest.mark.timeout(240)
def test_g1_broker_unreachable_mid_ingest(
        raw_store: StoreConfig, tmp_path: Path, procs: Procs, dask_client: Any) -> None:
    # Tansu advertises the proxy, so every client connection (bootstrap and
    # metadata-directed) goes through it; cutting it is the broker host going away.
    proxy_port = services.free_port()
    with services.broker(str(tmp_path / "tansu.log"), advertised=f"127.0.0.1:{proxy_port}") \
            as b, TcpProxy(proxy_port, b.port) as proxy:
        bs = f"127.0.0.1:{proxy_port}"
        topics = [f"g1-{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
        asyncio.run(services.create_topics(bs, topics, 4))
        st = gameday.stream(topics, tmp_path, points=3000, seed=21)
        half = len(st.recs) // 2
        produced = produce(bs, st.recs[:half])
        group, log = new_group(), str(tmp_path / "ing.log")
        proc = start(ingest_cmd(bs, ",".join(topics), group, raw_store,
                                "--flush-payloads", "15", "--watermark-interval", "1s",
                                "--shards", st.shards_file),
                     log, procs)
        store = Store(raw_store)
        wait_until(lambda: (store.invalidate(), store.list("watermarks/"))[1], 60,
                   "the first commits")
        proxy.cut()
        cut_at = len(read_log(log))
        time.sleep(CUT_S)
        assert proc.poll() is None, read_log(log)[-3000:]  # ingest rides it out
        proxy.restore()
        produced |= produce(bs, st.recs[half:])
        wait_until(lambda: _all_committed(bs, group, produced), 120,
                   "everything to be committed after the outage", 1.0)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 30, log) == 0, read_log(log)[-3000:]
        after = read_log(log)[cut_at:]
        assert proxy.cuts == 1 and proxy.accepted > 2
        assert "Connect call failed" in after  # it did see the broker go away
    counts = gameday.finish(st, raw_store, produced, tmp_path / "out", dask_client)
    print(f"G1: {counts}, cut {CUT_S} s, {after.count(chr(10))} log lines after the cut, "
          f"{after.count('revoked [')} revocation(s)")


@pytest.mark.timeout(300)
def test_g2_ingester_sigkilled_three_times(
        broker: services.Broker, topics: list[str], raw_store: StoreConfig,
        s3: services.S3Server, tmp_path: Path, procs: Procs, dask_client: Any) -> None:
    st = gameday.stream(topics, tmp_path, points=3000, seed=22)
    produced = produce(broker.bootstrap, st.recs)
    group = new_group()
    killed_after: list[str] = []
    # A little store latency, so that objects, index records, quarantine and
    # watermark writes of one run are spread out in time.  Run k is killed
    # right after its (2k+3)th store write: at a different stage each time.
    with FaultProxy(s3.endpoint_url, delay_s=0.1, record="/raw/") as slow:
        cfg = StoreConfig(url=raw_store.url, s3_endpoint_url=slow.endpoint_url)
        for kill in range(3):
            log = str(tmp_path / f"ing{kill}.log")
            proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, cfg,
                                    "--flush-payloads", "10", "--shards", st.shards_file),
                         log, procs)
            target = len(slow.puts) + 2 * kill + 3
            wait_until(lambda t=target: len(slow.puts) >= t, 90,  # type: ignore[misc]
                       f"store write {target}")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_after.append(slow.puts[target - 1][1].split("/raw/", 1)[1])
        ends = end_offsets(produced)
        assert committed_offsets(broker.bootstrap, group, list(ends)) != ends  # work was lost
        log = str(tmp_path / "final.log")
        proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, cfg,
                                "--exit-when-idle", "4s", "--shards", st.shards_file), log, procs)
        assert wait_exit(proc, 120, log) == 0, read_log(log)[-3000:]
    assert _all_committed(broker.bootstrap, group, produced)
    counts = gameday.finish(st, raw_store, produced, tmp_path / "out", dask_client)
    print(f"G2: {counts}, {len(slow.puts)} store writes over 4 runs, killed after writing "
          f"{killed_after}")


@pytest.mark.timeout(240)
def test_g3_every_invalid_kind_a_5000_digit_key_and_zstd_bombs(
        broker: services.Broker, topics: list[str], raw_store: StoreConfig,
        tmp_path: Path, procs: Procs, dask_client: Any) -> None:
    st = gameday.stream(topics, tmp_path, points=3000, seed=23, invalid_rate=0.1)
    kinds = {r.reason for r in st.recs if r.reason is not None}
    assert kinds == set(pl.REASONS), set(pl.REASONS) - kinds  # every invalid kind
    org = int(st.synth.pay_org[0])
    good = next(r.value for r in st.recs if r.reason is None and r.key == str(org).encode())
    assert good is not None
    for i, (key, value, reason) in enumerate(gameday.hostile(org, good)):
        st.recs.insert(10 + 37 * i, Rec(topics[i % 2], i % 4, key, value, reason))
    # The same valid payload again under its org id zero-padded to 5000 digits:
    # valid, and one payload with the first (the oracle counts it once).
    st.recs.insert(200, Rec(topics[0], 1, b"0" * (5000 - len(str(org))) + str(org).encode(),
                            good, None))
    # A valid payload whose intake_ns is 2**64-1 (the year 2554).
    pts = points(5, 99)
    st.add_valid(Rec(topics[1], 2, str(org).encode(), pl.encode(org, 2**64 - 1, pts), None),
                 org, 2**64 - 1, pts)
    produced = produce(broker.bootstrap, st.recs)
    group, log = new_group(), str(tmp_path / "ing.log")
    proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, raw_store,
                            "--exit-when-idle", "4s", "--flush-payloads", "40",
                            "--shards", st.shards_file), log, procs)
    assert wait_exit(proc, 120, log) == 0, read_log(log)[-3000:]
    text = read_log(log)
    assert "Traceback" not in text and "caught up: stopping" in text  # never exited early
    store = Store(raw_store)
    now = time.time_ns()
    for t, p in end_offsets(produced):
        w = Watermark.model_validate_json(store.get(f"watermarks/{group}/{t}/{p}.json"))
        assert w.max_intake_ns <= w.updated_ns + CLOCK_SLACK_NS  # clamped at the source
        assert w.durable_until_ns <= now + CLOCK_SLACK_NS
    counts = gameday.finish(st, raw_store, produced, tmp_path / "out", dask_client)
    print(f"G3: {counts}, invalid kinds {sorted(kinds)} + 5000-digit keys + 2 zstd bombs")
