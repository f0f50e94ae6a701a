"""``tailor build``: plan, run and publish chunks on a Dask cluster.

:func:`build_chunks` is the seam for other drivers (``--ready``): give it a
connected client, the config and ``(shard, window_start)`` pairs; it returns
one :class:`ChunkResult` per pair, in the same order, and never raises for a
chunk that fails (the result says why).  The CLI entry, :func:`run`, is in
:mod:`tailor.compute.build_cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import dask
import distributed
from distributed import Client

from tailor import shards
from tailor.config import BuildConfig
from tailor.format import layout
from tailor.format.records import Manifest
from tailor.progress import Progress
from tailor.storage import Store

from .budget import local_memory_limit, partition_rows, range_bytes
from .exchange import submit_exchange
from .graph import Published, fusable, pack, submit_plans, submit_units
from .monitor import StageMetrics
from .plan import ChunkPlan
from .publish import new_attempt, prepare_folders
from .warm import WarmKernels

_d: Any = distributed  # only partly typed


@dataclass(slots=True)
class ChunkResult:
    """Outcome of one chunk: ``ok`` with its manifest, or ``error`` (why it failed).

    ``by_other``: the chunk ended published by another builder that published
    it first (``manifest`` is theirs); ``missing_inputs`` then counts input
    objects this build saw that their manifest lacks (rebuild to include them).
    ``decoded_frames`` / ``decoded_points``: what the build decoded for the
    chunk's *unit* (``unit``: the label of its first chunk; the windows of a
    unit share their byte ranges, each decoded once for all of them).
    """

    shard: str
    start: int
    ok: bool
    manifest: Manifest | None = None
    error: str | None = None
    corrupt: list[tuple[str, int]] = field(default_factory=list)
    invalid: list[tuple[str, int, str]] = field(default_factory=list)
    rows_in: int = 0
    by_other: bool = False
    missing_inputs: int = 0
    decoded_frames: int = 0
    decoded_points: int = 0
    unit: str = ""

    @property
    def label(self) -> str:
        return f"{self.shard}/{layout.stamp(self.start)}"


def _why(fut: Any) -> str:
    exc = fut.exception()
    return f"{type(exc).__name__}: {exc}"


#: Chunks of one shard planned together and sharing their raw byte-range loads
#: (consecutive windows).
UNIT_WINDOWS = 4


#: Small fusable units are packed into tasks of about a partition's points / PACK_FRACTION
#: points (a task costs a few ms of scheduling; a tiny unit takes about as long), and
#: into at least PACK_PER_WORKER tasks per worker when there are that many units (so
#: the last task does not leave the other workers idle).
PACK_FRACTION = 8
PACK_PER_WORKER = 4


def units_of(chunks: Sequence[tuple[str, int]]) -> list[list[int]]:
    """Indices of ``chunks`` grouped into units: one shard, ≤ UNIT_WINDOWS windows (pure)."""
    by_shard: dict[str, list[int]] = {}
    for i, (s, _w) in enumerate(chunks):
        by_shard.setdefault(s, []).append(i)
    units = []
    for idx in by_shard.values():
        idx.sort(key=lambda i: chunks[i][1])
        units += [idx[k:k + UNIT_WINDOWS] for k in range(0, len(idx), UNIT_WINDOWS)]
    return units


def build_chunks(client: Client, cfg: BuildConfig, chunks: Sequence[tuple[str, int]], *,
                 show_progress: bool = False) -> list[ChunkResult]:
    """Build and publish every ``(shard, window_start)`` of ``chunks`` on ``client``.

    Blocks until every chunk is published or failed.  Each chunk gets a fresh
    attempt id.  One failing chunk does not stop the others.  Raises only
    for a bad shards file (:class:`~tailor.errors.ConfigError`).

    Chunks are planned in units (one shard, up to :data:`UNIT_WINDOWS`
    windows).  A unit that :func:`~tailor.compute.graph.fusable` says fits
    one task is one task, decoding each raw byte range once for all its
    windows (biggest units first); every other unit is a distributed sort
    (:func:`~tailor.compute.exchange.submit_exchange`) with as many partitions
    as ``cfg.memory_budget`` needs (:mod:`~tailor.compute.budget`), so a
    worker's memory does not grow with the shard.  Every worker loads
    the numba kernels first (:class:`~tailor.compute.warm.WarmKernels`); the
    scheduler serves the stage timers to Prometheus (:mod:`~tailor.compute.monitor`).
    """
    shard_map = shards.load(cfg.shards_file)
    client.register_plugin(WarmKernels())  # numba loads on every worker before any task
    try:  # stage timers on the scheduler's /metrics
        client.register_plugin(StageMetrics())
    except Exception as exc:  # e.g. a scheduler without tailor installed: build anyway
        print(f"tailor build: stage timers are not on the scheduler's /metrics "
              f"({type(exc).__name__}: {exc}); install tailor where the scheduler runs",
              file=sys.stderr)
    length = cfg.window_seconds
    rows = partition_rows(cfg.memory_budget, cfg.rows_per_partition)
    rbytes = range_bytes(cfg.memory_budget, cfg.range_bytes)
    attempts = [new_attempt() for _ in chunks]
    units = units_of(chunks)
    results: list[ChunkResult | None] = [None] * len(chunks)
    workers = len(client.scheduler_info().get("workers", {})) or 1
    batches = submit_plans(client, cfg.raw, shard_map,
                           [(chunks[u[0]][0], tuple(chunks[i][1] for i in u)) for u in units],
                           length, rbytes, rows, 2 * workers,
                           attempts[0] if attempts else "")
    plan_futs = [f for _, f in batches]
    _d.wait(plan_futs)
    got = iter(client.gather(  # type: ignore[no-untyped-call]  # one round trip
        [f for f in plan_futs if f.status == "finished"]))
    unit_plans: dict[int, list[ChunkPlan | str] | str] = {}
    for idx, fut in batches:
        lists = next(got) if fut.status == "finished" else [_why(fut)] * len(idx)
        unit_plans.update(zip(idx, lists, strict=True))
    planned: dict[int, ChunkPlan] = {}
    fused: list[list[int]] = []
    graphed: list[list[int]] = []
    for k, unit in enumerate(units):
        found = unit_plans[k]
        if isinstance(found, str):
            for i in unit:
                results[i] = ChunkResult(*chunks[i], False, error=f"planning failed: {found}")
            continue
        ok = []
        for i, cp in zip(unit, found, strict=True):
            if isinstance(cp, str):
                results[i] = ChunkResult(*chunks[i], False, error=f"planning failed: {cp}")
            else:
                planned[i] = cp
                ok.append(i)
        if ok:
            plans = [planned[i] for i in ok]
            (fused if fusable(plans, rows) else graphed).append(ok)
    if not cfg.scheduler:  # a local cluster's workers share this host's folders
        prepare_folders(Store(cfg.out), [chunks[i] for i in sorted(planned)])
    running: dict[Any, list[int]] = {}  # future → chunk indices it publishes (in order)
    unit_of = {i: chunks[u[0]] for u in fused + graphed for i in u}
    sizes = [sum(planned[i].est_points for i in unit) for unit in fused]
    target = min(rows // PACK_FRACTION, sum(sizes) // (PACK_PER_WORKER * workers))
    for b in pack(sizes, max(1, target)):
        group = [fused[j] for j in b]
        fut = submit_units(client, cfg.raw, cfg.out, shard_map,
                           [([planned[i] for i in u], [attempts[i] for i in u]) for u in group],
                           f"{attempts[group[0][0]]}-{chunks[group[0][0]][0]}")
        running[fut] = [i for u in group for i in u]
    for unit in graphed:
        fut = submit_exchange(client, cfg.raw, cfg.out, shard_map, [planned[i] for i in unit],
                              [attempts[i] for i in unit], rows, cfg.memory_budget, workers)
        running[fut] = unit
    outcome: dict[int, Published | str] = {}
    bar = Progress(len(planned), unit="chunk(s)", prefix="tailor build") if show_progress \
        else None
    try:
        for fut in _d.as_completed(list(running)):
            idx = running.pop(fut)
            if fut.status != "finished":
                outcome.update((i, _why(fut)) for i in idx)
            else:
                res = fut.result()
                flat = [p for per_unit in res for p in per_unit] if isinstance(res, list) \
                    else [res]
                outcome.update(zip(idx, flat, strict=True))
            fut.release()
            if bar is not None:
                bar.advance(len(idx))
    finally:
        if bar is not None:
            bar.close()
    for i, got in outcome.items():
        s, w = chunks[i]
        if isinstance(got, str):
            results[i] = ChunkResult(s, w, False, error=got)
            continue
        if got.manifest.attempt != attempts[i]:  # another builder published it first
            theirs = {o.key for o in got.manifest.inputs}
            r = ChunkResult(s, w, True, got.manifest, by_other=True, missing_inputs=len(
                [o for o in planned[i].inputs if o.key not in theirs]))
        else:
            r = ChunkResult(s, w, True, got.manifest, None, got.corrupt, got.invalid,
                            got.rows_in)
        us, uw = unit_of[i]
        r.decoded_frames, r.decoded_points = got.decoded
        r.unit = f"{us}/{layout.stamp(uw)}"
        results[i] = r
    for f in plan_futs:
        f.release()
    return [r for r in results if r is not None]


#: glibc malloc settings of the worker processes Tailor starts.  Dask's default
#: (``MALLOC_TRIM_THRESHOLD_=65536``) also pins the mmap threshold at 128 KiB, so
#: every column array is a fresh mmap whose pages fault in again in every task:
#: measured 2-3× the system time of a build (benchmarks/RESULTS.md).  Arrays up
#: to 16 MiB come from the heap instead; more than 64 MiB free is given back.
#: The heap fragments over many tasks; each heavy task ends with
#: ``graph.release_heap()`` (malloc_trim), which gives the free holes back.
WORKER_MALLOC: Final = {"MALLOC_MMAP_THRESHOLD_": str(16 * 2**20),
                        "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}


def _mallopt(settings: dict[str, str]) -> None:
    """Apply ``WORKER_MALLOC``-style settings to this process (glibc ``mallopt``)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        opts = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}
        for key, value in settings.items():
            if key in opts:
                libc.mallopt(opts[key], int(value))
    except (OSError, AttributeError, ValueError):  # not glibc: its defaults stay
        return


#: Workers of Tailor's own cluster never pause.  Dask pauses a worker past 80 %
#: of its memory limit until its process memory drops; memory that is not
#: spillable (the interpreter, Arrow pools, heap fragments; in-process workers all
#: measure one process) never drops, so every worker stayed paused and the build
#: hung (seen: a 2M-point one-org build at --memory-budget 16MiB, both workers
#: paused at 82 % for good).  Partitions are sized to the budget instead; task
#: results still spill to disk past 70 %, and a worker process past 95 % is
#: restarted by its nanny and its tasks retried, which ends in a failed chunk
#: with its reason, never in a wait.
NO_PAUSE: Final = {"distributed.worker.memory.pause": False}


def local_cluster(n_workers: int = 2, *, threads_per_worker: int = 1,
                  dashboard_address: str | None = "127.0.0.1:0",
                  malloc: dict[str, str] = WORKER_MALLOC, processes: bool = True,
                  memory_limit: int | str = "auto") -> Any:
    """A loopback ``LocalCluster`` with ``malloc`` settings (``{}`` keeps Dask's own).

    ``processes=True``: one worker process each (memory isolated per worker,
    a worker can be killed alone).  ``processes=False``: the workers are threads
    of this process, talking in-process: no process spawn and no imports or
    kernel loads per worker, which is most of a small build's wall time; every
    kernel releases the GIL (numba ``nogil``, zstd, Arrow), so the sort and
    encode stages still run in parallel.  ``memory_limit``: each worker's Dask
    memory limit (it spills task results to disk past 60 % of it; in-process
    workers all measure this one process).  Workers never pause: a worker paused
    on memory that is not task results (the interpreter, the heap's free pages)
    has nothing to spill and would never resume.  Blocks until the workers are
    up; the caller closes it.
    """
    common: dict[str, Any] = {"n_workers": n_workers, "threads_per_worker": threads_per_worker,
                              "dashboard_address": dashboard_address,
                              "memory_limit": memory_limit}
    if not processes:
        _mallopt(malloc)
        # In-process workers use the inproc transport, whose address names the
        # host's IP; the dashboard itself listens on loopback, so the link must too.
        dask.config.set({"distributed.dashboard.link": "{scheme}://127.0.0.1:{port}/status"})
        with dask.config.set(NO_PAUSE):  # read as the workers start
            return _d.LocalCluster(processes=False, **common)
    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **malloc}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env, **NO_PAUSE}):
        return _d.LocalCluster(processes=True, host="127.0.0.1", **common)


@contextmanager
def connect(cfg: BuildConfig) -> Iterator[Client]:
    """A client on ``cfg.scheduler``, or on a new :func:`local_cluster` (closed after).

    The local cluster's workers are threads of this process unless
    ``cfg.processes``; its memory limit follows ``cfg.memory_budget``
    (:func:`~tailor.compute.budget.local_memory_limit`); it serves the Dask
    dashboard (and the stage timers' /metrics) only with ``cfg.dashboard``:
    starting it is a tenth of a small build's wall time.
    """
    if cfg.scheduler:
        with _d.Client(cfg.scheduler) as client:
            yield client
        return
    n = cfg.n_workers or 2
    limit = local_memory_limit(cfg.memory_budget, n, processes=cfg.processes)
    with local_cluster(n, processes=cfg.processes, memory_limit=limit,
                       dashboard_address="127.0.0.1:0" if cfg.dashboard else None) as cluster, \
            _d.Client(cluster) as client:
        yield client


def dashboard_line(cfg: BuildConfig, client: Client) -> str:
    """Where to watch the build, or how to get a dashboard for a local one."""
    if cfg.scheduler or cfg.dashboard:
        return f"dashboard {client.dashboard_link}"
    return "no dashboard for this local cluster (pass --dashboard to watch the build on one)"
