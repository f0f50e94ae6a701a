"""A real multi-process cluster (`dask scheduler` + two `dask worker`), one worker killed
in the middle of the exchange."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from distributed import Client

from tailor.compute.build import build_chunks
from tailor.config import BuildConfig, StoreConfig
from tailor.shards import ShardMap
from tailor.storage import Store
from tailor.testing import services

from . import killer
from .rawgen import T0, W, expected, mixed_payloads, rows_of, write_object
from .test_build import SHARD, chunk_table

DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, subprocess.Popen[bytes]]]]:
    port = services.free_port()
    addr = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "wb")  # noqa: SIM115 - closed below
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=log, stderr=log)]
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        services.wait_port(port, 60)
        for _ in range(2):
            wport = services.free_port()
            p = subprocess.Popen([DASK, "worker", addr, "--nthreads", "1", "--no-nanny",
                                  "--host", "127.0.0.1", "--worker-port", str(wport),
                                  "--no-dashboard", "--memory-limit", "1GiB"],
                                 stdout=log, stderr=log)
            procs.append(p)
            workers[f"tcp://127.0.0.1:{wport}"] = p
        yield addr, workers
    finally:
        # Workers first, then the scheduler: a worker told to close by a closing
        # scheduler while its own SIGTERM arrives can hang until killed (20 s).
        for group in (procs[1:], procs[:1]):
            for p in group:
                if p.poll() is None:
                    p.terminate()
            for p in group:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        log.close()


def test_worker_killed_mid_exchange_same_output(
        client: Client, cluster: tuple[str, dict[str, subprocess.Popen[bytes]]],
        tmp_path: Path) -> None:
    """The worker about to run the first reduce task is SIGKILLed (a scheduler plugin
    watching transitions): every map has run, the pieces sit on both workers.  Dask
    recomputes what the dead worker held; the S files are byte-identical."""
    addr, workers = cluster
    raw_cfg = StoreConfig(url=str(tmp_path / "raw"))
    raw = Store(raw_cfg)
    gens = mixed_payloads(seed=31, n_payloads=400, per_payload=60)
    for i in range(0, len(gens), 100):
        write_object(raw, SHARD, gens[i:i + 100])
    ref_cfg = StoreConfig(url=str(tmp_path / "ref"))
    common = dict(shards=[SHARD], windows=[T0, T0 + W], range_bytes=4096, rows_per_partition=3000)
    chunks = [(SHARD, T0), (SHARD, T0 + W)]
    ref = build_chunks(client, BuildConfig(raw=raw_cfg, out=ref_cfg, **common),  # type: ignore[arg-type]
                       chunks)
    assert all(r.ok for r in ref)

    out_cfg = StoreConfig(url=str(tmp_path / "out"))
    cfg = BuildConfig(raw=raw_cfg, out=out_cfg, scheduler=addr, **common)  # type: ignore[arg-type]
    cloudpickle.register_pickle_by_value(killer)
    try:
        with Client(addr) as c:
            c.wait_for_workers(2, timeout=60)
            c.register_plugin(killer.KillOnFirst("reduce"))
            result = build_chunks(c, cfg, chunks)

            def seen(dask_scheduler: Any) -> tuple[str | None, int]:
                p = dask_scheduler.plugins[killer.KillOnFirst.name]
                return p.killed, p.done_before
            killed, done_before = c.run_on_scheduler(seen)
    finally:
        cloudpickle.unregister_pickle_by_value(killer)
    assert killed in workers and done_before == 0, (killed, done_before)
    assert workers[killed].wait(10) == -signal.SIGKILL
    assert [r.ok for r in result] == [True, True], [r.error for r in result]
    shard_map = ShardMap()
    for w in (T0, T0 + W):
        mr, tr = chunk_table(Store(ref_cfg), SHARD, w)
        mo, to = chunk_table(Store(out_cfg), SHARD, w)
        assert rows_of(to) == rows_of(tr) == expected(gens, SHARD, shard_map, w)
        assert [f.sha256 for f in mo.files] == [f.sha256 for f in mr.files]
        assert len(mo.files) > 1
