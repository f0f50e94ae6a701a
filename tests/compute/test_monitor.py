"""Build stage timers on the scheduler's Prometheus endpoint."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from distributed import Client
from prometheus_client.parser import text_string_to_metric_families

from tailor.compute.build import build_chunks
from tailor.compute.monitor import stage_seconds, store_retries
from tailor.config import BuildConfig, StoreConfig
from tailor.metrics import BUILD_STAGE_SECONDS, BUILD_STORE_RETRIES
from tailor.storage import Store
from tailor.testing.services import S3Server
from tests.ingest.faultproxy import FaultProxy

from .rawgen import T0, mixed_payloads, write_object


def test_stage_seconds_keeps_tailor_stages_only() -> None:
    cum = {("execute", "unit", "decode", "seconds"): 1.5,
           ("execute", "map", "decode", "seconds"): 0.5,
           ("execute", "reduce", "sort", "seconds"): 2.0,
           ("execute", "reduce", "thread-cpu", "seconds"): 9.0,  # Dask's own label
           ("execute", "reduce", "sort", "count"): 3.0,
           ("gather-dep", "reduce", "decompress", "seconds"): 4.0,
           "latency": 0.1}
    assert stage_seconds(cum) == {("decode", "unit"): 1.5, ("decode", "map"): 0.5,
                                  ("sort", "reduce"): 2.0}


def _scrape(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {(s.labels["stage"], s.labels["task"]): s.value
            for fam in text_string_to_metric_families(text) if fam.name == BUILD_STAGE_SECONDS
            for s in fam.samples if s.name == BUILD_STAGE_SECONDS + "_total"}


def test_build_stages_on_scheduler_metrics_endpoint(client: Client, tmp_path: Path) -> None:
    """A small chunk runs as one ``unit`` task; a bigger one (org-mod-7, several
    partitions) as map and reduce task groups, each with its own stage timers."""
    raw = StoreConfig(url=str(tmp_path / "raw"))
    write_object(Store(raw), "org-mod-7", mixed_payloads(5))
    write_object(Store(raw), "org-mod-8", mixed_payloads(5, n_payloads=3, orgs=(8,)))
    cfg = BuildConfig(raw=raw, out=StoreConfig(url=str(tmp_path / "out")),
                      shards=["org-mod-7", "org-mod-8"], windows=[T0], rows_per_partition=300)
    assert all(r.ok for r in build_chunks(client, cfg, [("org-mod-7", T0), ("org-mod-8", T0)]))
    url = client.dashboard_link.rsplit("/", 1)[0] + "/metrics"
    want = {("decode", "map"), ("decode", "unit"), ("sort", "reduce"), ("encode", "reduce"),
            ("write", "reduce")}
    got: dict[tuple[str, str], float] = {}
    for _ in range(100):  # worker metrics reach the scheduler with heartbeats
        got = _scrape(url)
        if all(got.get(k, 0) > 0 for k in want):
            break
        time.sleep(0.1)
    assert all(got.get(k, 0) > 0 for k in want), got
    tasks = {t for _s, t in got}  # labelled by task prefix: the graph stage, never a shard
    assert tasks <= {"plan", "unit", "map", "sample", "splitters", "split", "piece", "reduce",
                     "publish"}, got
    assert not {s for s, t in got if t == "reduce"} & {"read", "zstd", "decode"}, got
    assert {s for s, _t in got} <= {"read", "zstd", "decode", "sort", "encode", "write"}


def test_store_retries_are_counted_per_task_on_the_scheduler(
        client: Client, s3: S3Server, raw_store: StoreConfig, out_store: StoreConfig) -> None:
    assert store_retries({("execute", "unit", "store-retry:get:503", "count"): 2.0,
                          ("execute", "unit", "store-retry:put:timeout", "count"): 1.0,
                          ("execute", "unit", "decode", "seconds"): 1.0}) == {
        ("get", "503", "unit"): 2.0, ("put", "timeout", "unit"): 1.0}
    write_object(Store(raw_store), "org-mod-7", mixed_payloads(6))
    with FaultProxy(s3.endpoint_url, fail_rate=0.3, seed=2) as proxy:
        via = {"s3_endpoint_url": proxy.endpoint_url}
        cfg = BuildConfig(raw=raw_store.model_copy(update=via),
                          out=out_store.model_copy(update=via), shards=["org-mod-7"],
                          windows=[T0])
        assert all(r.ok for r in build_chunks(client, cfg, [("org-mod-7", T0)]))
    url = client.dashboard_link.rsplit("/", 1)[0] + "/metrics"
    name = BUILD_STORE_RETRIES + "_total"
    seen = 0.0
    for _ in range(100):  # worker metrics reach the scheduler with heartbeats
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        seen = sum(s.value for fam in text_string_to_metric_families(text)
                   for s in fam.samples if s.name == name and s.labels["status"] == "503")
        if seen:
            break
        time.sleep(0.1)
    assert seen > 0


def test_a_second_build_on_one_scheduler_keeps_its_stage_timers(
        client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Registering the plugin again must not warn (an error under filterwarnings=error,
    which used to drop the stage timers from /metrics for every build but the first)."""
    raw = StoreConfig(url=str(tmp_path / "raw"))
    write_object(Store(raw), "org-mod-7", mixed_payloads(6))
    for i in range(2):
        cfg = BuildConfig(raw=raw, out=StoreConfig(url=str(tmp_path / f"out{i}")),
                          shards=["org-mod-7"], windows=[T0])
        assert all(r.ok for r in build_chunks(client, cfg, [("org-mod-7", T0)]))
    assert "stage timers are not" not in capsys.readouterr().err


def test_metrics_follow_the_running_scheduler_after_another_one_closed(
        client: Client, tmp_path: Path) -> None:
    """A second scheduler in this process (its plugin started, then closed) must not
    leave the one collector pointing at it: the running scheduler's timers stay served."""
    from tailor.compute.build import local_cluster
    from tailor.compute.monitor import StageMetrics

    raw = StoreConfig(url=str(tmp_path / "raw"))
    write_object(Store(raw), "org-mod-7", mixed_payloads(8))
    client.register_plugin(StageMetrics())
    with local_cluster(1, processes=False, dashboard_address=None) as other, \
            Client(other) as c2:
        c2.register_plugin(StageMetrics())
    cfg = BuildConfig(raw=raw, out=StoreConfig(url=str(tmp_path / "out")), shards=["org-mod-7"],
                      windows=[T0])
    assert all(r.ok for r in build_chunks(client, cfg, [("org-mod-7", T0)]))
    url = client.dashboard_link.rsplit("/", 1)[0] + "/metrics"
    got: dict[tuple[str, str], float] = {}
    for _ in range(100):  # worker metrics reach the scheduler with heartbeats
        got = _scrape(url)
        if got:
            break
        time.sleep(0.1)
    assert got, "no stage timers on the running scheduler's /metrics"
