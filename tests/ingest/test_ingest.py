"""`tailor ingest` against the real Tansu broker and the moto S3 server.

Ingesters run as subprocesses (``python -m tailor ingest``) exactly as
operators run them; the tests check the raw store and the group's offsets.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tailor.config import StoreConfig
from tailor.format.records import Watermark
from tailor.storage import Store
from tailor.testing import services

from .faultproxy import FaultProxy
from .helpers import (
    Rec,
    check_complete,
    committed_offsets,
    end_offsets,
    ingest_cmd,
    make_stream,
    new_group,
    produce,
    read_log,
    start,
    synth_stream,
    wait_exit,
    wait_until,
)

Procs = list[subprocess.Popen[bytes]]



def _all_committed(bootstrap: str, group: str, produced: dict[Any, Rec]) -> bool:
    ends = end_offsets(produced)
    return committed_offsets(bootstrap, group, list(ends)) == ends


def test_two_ingesters_mixed_stream(
        broker: services.Broker, topics: list[str],
        raw_store: StoreConfig, tmp_path: Path, procs: Procs) -> None:
    stream = synth_stream(topics, 30_000, seed=1)
    assert len({r.reason for r in stream}) >= 10  # every invalid kind, and valid ones
    produced = produce(broker.bootstrap, stream)
    group = new_group()
    pattern = topics[0].rsplit("-", 1)[0] + "-.*"  # a regex: both topics join by pattern
    logs = [str(tmp_path / f"ing{i}.log") for i in range(2)]
    members = [start(ingest_cmd(broker.bootstrap, pattern, group, raw_store,
                              "--exit-when-idle", "6s", "--flush-payloads", "60"), log, procs)
             for log in logs]
    wait_until(lambda: all("assigned [" + topics[0] in read_log(x) for x in logs), 60,
               "both ingesters to get partitions")
    # a new topic matching the pattern joins without a restart
    new_topic = topics[0][:-1] + "2"
    asyncio.run(services.create_topics(broker.bootstrap, [new_topic], 4))
    produced |= produce(broker.bootstrap, make_stream([new_topic], 40, seed=11))
    for p, log in zip(members, logs, strict=True):
        assert wait_exit(p, 90, log) == 0, read_log(log)[-3000:]
    raw = check_complete(raw_store, produced)
    assert len(raw.quarantined) == sum(r.reason is not None for r in produced.values())
    ends = end_offsets(produced)
    assert committed_offsets(broker.bootstrap, group, list(ends)) == ends
    # both members got partitions, and each partition has a caught-up watermark
    assert any("assigned [" in x and new_topic in x for x in "".join(map(read_log, logs))
               .splitlines())
    store = Store(raw_store)
    for (t, p), end in ends.items():
        w = Watermark.model_validate_json(store.get(f"watermarks/{group}/{t}/{p}.json"))
        assert w.committed == end and w.caught_up and w.max_intake_ns > 0
    text = "".join(read_log(log) for log in logs)
    assert "testing" not in text  # the (test) AWS credentials are never logged


def test_sigkill_mid_flush_then_restart(
        broker: services.Broker, topics: list[str], raw_store: StoreConfig,
        s3: services.S3Server, tmp_path: Path, procs: Procs) -> None:
    produced = produce(broker.bootstrap, make_stream(topics, 300, seed=2))
    group = new_group()
    log1, log2 = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    with FaultProxy(s3.endpoint_url, delay_s=0.3) as slow:
        slowcfg = StoreConfig(url=raw_store.url, s3_endpoint_url=slow.endpoint_url)
        proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, slowcfg,
                                "--flush-payloads", "40"), log1, procs)
        # kill once some objects are durable and more writes are in flight
        wait_until(lambda: slow.counts["PUT 200"] >= 6, 60, "the first uploads")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    ends = end_offsets(produced)
    # it really died with work not committed
    assert committed_offsets(broker.bootstrap, group, list(ends)) != ends
    proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, raw_store,
                            "--exit-when-idle", "4s"), log2, procs)
    assert wait_exit(proc, 90, log2) == 0, read_log(log2)[-3000:]
    check_complete(raw_store, produced)
    assert _all_committed(broker.bootstrap, group, produced)


def test_slowdown_injection(
        broker: services.Broker, topics: list[str], raw_store: StoreConfig,
        s3: services.S3Server, tmp_path: Path, procs: Procs) -> None:
    produced = produce(broker.bootstrap, make_stream(topics, 300, seed=3))
    group = new_group()
    log = str(tmp_path / "ing.log")
    port = services.free_port()
    with FaultProxy(s3.endpoint_url, fail_rate=0.3, seed=7) as proxy:
        cfg = StoreConfig(url=raw_store.url, s3_endpoint_url=proxy.endpoint_url)
        proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, cfg,
                                "--exit-when-idle", "4s", "--flush-payloads", "30",
                                "--metrics-port", str(port)), log, procs)
        scraped: list[str] = []

        def scrape() -> bool:
            import urllib.request

            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                return False
            scraped.append(text)
            return 'tailor_store_retries_total{op="put",status="503"}' in text

        wait_until(scrape, 60, "retries in /metrics")
        assert wait_exit(proc, 90, log) == 0, read_log(log)[-3000:]
    assert proxy.counts["PUT 503"] > 0
    check_complete(raw_store, produced)
    assert _all_committed(broker.bootstrap, group, produced)
    assert "tailor_ingest_quarantined_total" in scraped[-1]


@pytest.mark.timeout(240)
def test_add_and_remove_an_ingester(
        broker: services.Broker, topics: list[str],
        raw_store: StoreConfig, tmp_path: Path, procs: Procs) -> None:
    group = new_group()
    bs = broker.bootstrap
    produced = produce(bs, make_stream(topics, 100, seed=4))
    la, lb = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    # A runs until told to stop: an idle deadline would race B's shutdown on a slow machine.
    a = start(ingest_cmd(bs, ",".join(topics), group, raw_store), la, procs)
    wait_until(lambda: _all_committed(bs, group, produced), 60, "A to commit everything", 1.0)
    b = start(ingest_cmd(bs, ",".join(topics), group, raw_store), lb, procs)
    wait_until(lambda: "assigned [" + topics[0] in read_log(lb), 60, "B to get partitions")
    produced |= produce(bs, make_stream(topics, 100, seed=5))
    wait_until(lambda: _all_committed(bs, group, produced), 60, "A+B to commit everything", 1.0)
    b.send_signal(signal.SIGTERM)
    assert wait_exit(b, 30, lb) == 0, read_log(lb)[-3000:]
    produced |= produce(bs, make_stream(topics, 100, seed=6))
    wait_until(lambda: _all_committed(bs, group, produced), 90, "A alone to commit everything",
               1.0)
    a.send_signal(signal.SIGTERM)
    assert wait_exit(a, 30, la) == 0, read_log(la)[-3000:]
    check_complete(raw_store, produced)
    assert _all_committed(bs, group, produced)
    assert read_log(la).count("revoked [") >= 2  # once when B joined, once when it left


def test_memory_bound_pauses_fetching(
        broker: services.Broker, topics: list[str],
        raw_store: StoreConfig, tmp_path: Path, procs: Procs) -> None:
    # ~4 MiB of payloads, 1 MiB memory bound, flush limits far away: only the
    # memory bound makes batches flush, and fetching pauses meanwhile.
    produced = produce(broker.bootstrap, make_stream(topics, 160, seed=8, pts=1000))
    group, log = new_group(), str(tmp_path / "ing.log")
    proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, raw_store,
                            "--exit-when-idle", "4s", "--flush-age", "10m",
                            "--memory-limit", "1MiB"), log, procs)
    assert wait_exit(proc, 90, log) == 0, read_log(log)[-3000:]
    assert "pausing fetch" in read_log(log) and "resuming fetch" in read_log(log)
    check_complete(raw_store, produced)
    assert _all_committed(broker.bootstrap, group, produced)


def test_stuck_store_never_commits_and_exits_by_deadline(
        broker: services.Broker, topics: list[str],
        raw_store: StoreConfig, s3: services.S3Server, tmp_path: Path, procs: Procs) -> None:
    group, log = new_group(), str(tmp_path / "ing.log")
    with FaultProxy(s3.endpoint_url) as stuck:
        cfg = StoreConfig(url=raw_store.url, s3_endpoint_url=stuck.endpoint_url)
        proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, cfg,
                                "--shutdown-deadline", "4s"), log, procs)
        # the start-up write probe passed; from now on every store request hangs
        wait_until(lambda: "assigned [" in read_log(log), 60, "partitions to be assigned")
        stuck.delay_s = 600  # far past any wait below: only the deadline can end the run
        produced = produce(broker.bootstrap, make_stream(topics, 40, seed=9))
        wait_until(lambda: "payloads=4" in read_log(log), 60, "records to be consumed")
        time.sleep(1.0)  # flushes (age 0.5 s) are now stuck in the store
        proc.send_signal(signal.SIGTERM)
        # Exits (1: not everything durable) while its writes still hang in the store,
        # so by its --shutdown-deadline, not by the store answering.
        assert wait_exit(proc, 120, log) == 1
    assert "not durable" in read_log(log)
    ends = end_offsets(produced)
    assert committed_offsets(broker.bootstrap, group, list(ends)) == dict.fromkeys(ends, 0)
