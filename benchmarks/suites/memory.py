"""Memory suite: the worker memory bound, at 1× and 10× the points.

Peak RSS per process is sampled in every timed run of the other suites (the
warm CLI's process, each peer, the ingester).  This suite adds in-process
builds with worker processes (:mod:`benchmarks.buildrun` ``--processes``,
which can start its workers with Dask's malloc settings) at both scales
with ``--rows-per-partition`` below the biggest chunk, with Tailor's malloc
settings and with Dask's, to show that a worker's memory does not grow with the shard.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.buildrun import spawn
from benchmarks.results import Results
from benchmarks.workload import log

#: Label suffix of the memory builds whose workers run with Dask's malloc settings.
MALLOC_NOTE = ", Dask's malloc settings"


def run(rows_per_partition: int, stores: dict[str, str], windows: list[int], warm_raw: str,
        work: Path, res: Results) -> None:
    """``stores``: scale label (``"1×"``, ``"10×"``) → raw store."""
    for dask_malloc in (False, True):
        label = f"--rows-per-partition {rows_per_partition:,}" + (MALLOC_NOTE if dask_malloc
                                                                   else "")
        for scale, src in stores.items():
            out = str(work / "out-mem")
            br = spawn(src, out, windows, warm_raw, work, rows_per_partition=rows_per_partition,
                       dask_malloc=dask_malloc, processes=True)
            for p in br.peaks:
                if p["label"] in ("scheduler+client", "worker"):
                    res.add_memory(f"{scale}, {label}", p["label"], p["rss"])
            log(f"memory build {scale} {label}: {br.seconds:.2f} s, exit {br.exit_code}")
            shutil.rmtree(out, ignore_errors=True)
