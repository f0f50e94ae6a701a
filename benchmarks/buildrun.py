"""The in-process build figure (a labelled extra): ``python -m benchmarks.buildrun``.

The process starts a ``LocalCluster`` (its scheduler lives in this process,
its workers are threads of it as in ``tailor build``, or child processes with
``--processes``), optionally builds a tiny warm-up store (numba compile and
cache loads are not part of the measurement), then times
``tailor.compute.build_cli.run`` over every shard and window and prints one JSON
document: seconds, exit code, peak RSS per process, and the build's stage
timers from Dask's fine performance metrics (``context_meter`` labels
summed over workers).  Cluster start-up is reported, not timed in.

This is *not* what a user runs (``tailor build`` is a process of its own,
timed by :mod:`benchmarks.suites.build` from exec to exit); it is kept for
the stage timers, the py-spy profile and the memory builds, whose figures
are about the build's work, not its start-up.  :func:`spawn` runs it from
the harness.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.memory import RssSampler


def stage_seconds(before: dict[tuple[Any, ...], float],
                  after: dict[tuple[Any, ...], float]) -> dict[str, float]:
    """Seconds per activity label between two snapshots (summed over task prefixes)."""
    from tailor.compute.monitor import stage_seconds as per_prefix

    b = per_prefix(before, None)
    out: dict[str, float] = defaultdict(float)
    for (label, task), v in per_prefix(after, None).items():
        d = v - b.get((label, task), 0.0)
        if d:
            out[label] += d
    return dict(out)


def _build(raw: str, out: str, shards: list[str], windows: list[int], address: str,
           rows_per_partition: int | None = None) -> int:
    from tailor.compute.build_cli import run
    from tailor.config import BuildConfig, StoreConfig

    extra = {"rows_per_partition": rows_per_partition} if rows_per_partition else {}
    cfg = BuildConfig(raw=StoreConfig(url=raw), out=StoreConfig(url=out), shards=shards,
                      windows=windows, scheduler=address, **extra)
    return int(run(cfg))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.buildrun")
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--windows", required=True, help="comma list of window starts (Unix s)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup-raw", default=None)
    ap.add_argument("--json", required=True, help="write the result here")
    ap.add_argument("--dask-malloc", action="store_true",
                    help="start the workers with Dask's malloc settings, not Tailor's")
    ap.add_argument("--rows-per-partition", type=int, default=None,
                    help="tailor build --rows-per-partition (default: the build's)")
    ap.add_argument("--processes", action="store_true",
                    help="workers as processes (tailor build --processes); default: threads of "
                         "this process, as tailor build's default")
    ap.add_argument("--profile", default=None,
                    help="py-spy the timed build's processes into PREFIX-<role>-<pid>.txt")
    a = ap.parse_args(argv)

    from distributed import Client

    from tailor.compute.build import local_cluster
    from tailor.compute.monitor import cumulative_metrics
    from tailor.shards import ShardMap

    shards = ShardMap().all_shards()
    windows = [int(w) for w in a.windows.split(",")]
    res: dict[str, Any] = {}
    with RssSampler({os.getpid(): "scheduler+client"}) as mem:
        t0 = time.perf_counter()
        cluster = local_cluster(a.workers, threads_per_worker=a.threads,
                                dashboard_address=None, processes=a.processes,
                                **({"malloc": {}} if a.dask_malloc else {}))
        client = Client(cluster)  # type: ignore[no-untyped-call]
        res["cluster_start_s"] = time.perf_counter() - t0
        try:
            if a.warmup_raw:
                wout = a.out.rstrip("/") + "-warmup"
                t0 = time.perf_counter()
                _build(a.warmup_raw, wout, shards, windows, cluster.scheduler_address)
                res["warmup_s"] = time.perf_counter() - t0
                shutil.rmtree(wout, ignore_errors=True)
            before = cumulative_metrics(client)
            spies = []
            if a.profile:
                from benchmarks.profile import attach

                workers = sorted(set(client.run(os.getpid).values()))
                # thread workers live in this process: one recorder for it all
                pids = ({"worker": workers, "scheduler": [os.getpid()]}
                        if os.getpid() not in workers else {"worker": workers})
                for role, ps in pids.items():
                    for pid in ps:
                        path = f"{a.profile}-{role}-{pid}.txt"
                        spies.append(attach(pid, path))
                        res.setdefault("profiles", []).append([role, path])
                time.sleep(1.0)  # let the recorders attach
            mem.reset()  # peaks of the timed build only
            t0 = time.perf_counter()
            rc = _build(a.raw, a.out, shards, windows, cluster.scheduler_address,
                        a.rows_per_partition)
            res["seconds"] = time.perf_counter() - t0
            if spies:
                from benchmarks.profile import detach

                for sp in spies:
                    detach(sp)
            res["exit_code"] = rc
            mem.sample()
            res["stages"] = stage_seconds(before, cumulative_metrics(client))
        finally:
            client.close()  # type: ignore[no-untyped-call]
            cluster.close()
    res["peaks"] = [{"label": p.label, "pid": p.pid, "rss": p.rss} for p in mem.peaks()]
    with open(a.json, "w") as f:
        json.dump(res, f)
    return 0


@dataclass
class BuildRun:
    seconds: float
    exit_code: int
    stages: dict[str, float]
    peaks: list[dict[str, Any]]
    cluster_start_s: float
    profiles: list[tuple[str, str]] = field(default_factory=list)  # (role, raw py-spy file)


def spawn(raw: str, out: str, windows: list[int], warmup_raw: str | None, work: Path, *,
          workers: int = 2, profile: str | None = None, rows_per_partition: int | None = None,
          dask_malloc: bool = False, processes: bool = False,
          env: Mapping[str, str] | None = None) -> BuildRun:
    """Run this module in a process of its own; a failed process is exit code != 0."""
    from benchmarks.procs import REPO, clean_env

    shutil.rmtree(out, ignore_errors=True)
    res_path = work / f"buildrun-{uuid.uuid4().hex[:8]}.json"
    cmd = [sys.executable, "-m", "benchmarks.buildrun", "--raw", raw, "--out", out,
           "--windows", ",".join(map(str, windows)), "--workers", str(workers),
           "--json", str(res_path)]
    if warmup_raw:
        cmd += ["--warmup-raw", warmup_raw]
    if profile:
        cmd += ["--profile", profile]
    if rows_per_partition:
        cmd += ["--rows-per-partition", str(rows_per_partition)]
    if dask_malloc:
        cmd += ["--dask-malloc"]
    if processes:
        cmd += ["--processes"]
    with open(work / "build.log", "ab") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, timeout=3600,
                              cwd=str(REPO), check=False, env=dict(env or clean_env()))
    if proc.returncode != 0 or not res_path.exists():
        return BuildRun(float("nan"), proc.returncode or 1, {}, [], 0.0)
    doc = json.loads(res_path.read_text())
    res_path.unlink()
    return BuildRun(doc["seconds"], doc["exit_code"], doc.get("stages", {}), doc["peaks"],
                    doc.get("cluster_start_s", 0.0),
                    [(str(r), str(p)) for r, p in doc.get("profiles", [])])


if __name__ == "__main__":
    sys.exit(main())
