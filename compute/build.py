"""``tailor build``: plan, run and publish chunks on a Dask cluster.

:func:`build_chunks` is the seam for other drivers (``--ready``): give it a
connected client, the config and ``(shard, window_start)`` pairs; it returns
one :class:`ChunkResult` per pair, in the same order, and never raises for a
chunk that fails (the result says why).  :func:`run` is the CLI entry.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import distributed
from distributed import Client

from tailor import layout, shards
from tailor.config import BuildConfig
from tailor.records import Manifest

from .graph import Published, submit_chunk, submit_loads, submit_plan
from .plan import ChunkPlan
from .publish import new_attempt

_d: Any = distributed  # only partly typed


@dataclass(slots=True)
class ChunkResult:
    """Outcome of one chunk: ``ok`` with its manifest, or ``error`` (why it failed)."""

    shard: str
    start: int
    ok: bool
    manifest: Manifest | None = None
    error: str | None = None
    corrupt: list[tuple[str, int]] = field(default_factory=list)
    invalid: list[tuple[str, int, str]] = field(default_factory=list)
    rows_in: int = 0

    @property
    def label(self) -> str:
        return f"{self.shard}/{layout.stamp(self.start)}"


def _why(fut: Any) -> str:
    exc = fut.exception()
    return f"{type(exc).__name__}: {exc}"


#: Chunks of one shard that share their raw byte-range loads (consecutive windows).
UNIT_WINDOWS = 4


def _units(planned: dict[int, ChunkPlan]) -> list[list[int]]:
    """Chunk indices grouped into units: one shard, at most UNIT_WINDOWS windows."""
    by_shard: dict[str, list[int]] = {}
    for i, cp in planned.items():
        by_shard.setdefault(cp.shard, []).append(i)
    units = []
    for idx in by_shard.values():
        idx.sort(key=lambda i: planned[i].start)
        units += [idx[k:k + UNIT_WINDOWS] for k in range(0, len(idx), UNIT_WINDOWS)]
    return units


def _progress(done: int, total: int) -> None:
    width = 30
    fill = width * done // max(1, total)
    print(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} chunk(s)", end="",
          file=sys.stderr, flush=True)


def build_chunks(client: Client, cfg: BuildConfig, chunks: Sequence[tuple[str, int]], *,
                 show_progress: bool = False, max_units: int | None = None
                 ) -> list[ChunkResult]:
    """Build and publish every ``(shard, window_start)`` of ``chunks`` on ``client``.

    Blocks until every chunk is published or failed.  Each chunk gets a fresh
    attempt id.  One failing chunk does not stop the others.  Raises only
    for a bad shards file (:class:`~tailor.errors.ConfigError`).

    Work goes to the cluster in units (one shard, up to :data:`UNIT_WINDOWS`
    windows, whose chunks decode each raw byte range once), at most
    ``max_units`` at a time (default: workers + 1), so the data held by the
    cluster is bounded by a few units whatever the number of chunks.
    """
    smap = shards.load(cfg.shards_file)
    length = cfg.window_seconds
    attempts = [new_attempt() for _ in chunks]
    plans: list[Any] = [submit_plan(client, cfg.raw, smap, s, w, length, cfg.range_bytes,
                         cfg.rows_per_partition, f"{s}-{layout.stamp(w)}-{a}")
             for (s, w), a in zip(chunks, attempts, strict=True)]
    _d.wait(plans)
    results: list[ChunkResult | None] = [None] * len(chunks)
    pubs: dict[int, Any] = {}
    planned: dict[int, ChunkPlan] = {}
    for i, ((s, w), fut) in enumerate(zip(chunks, plans, strict=True)):
        if fut.status != "finished":
            results[i] = ChunkResult(s, w, False, error=f"planning failed: {_why(fut)}")
            continue
        planned[i] = fut.result()
    limit = max_units or len(client.scheduler_info().get("workers", {})) + 1
    units = _units(planned)
    unit_of = {i: k for k, unit in enumerate(units) for i in unit}
    left = {k: len(unit) for k, unit in enumerate(units)}
    queue = units[::-1]  # pop() takes them in order
    running: dict[Any, int] = {}  # publish future → chunk index

    def submit_unit() -> None:
        unit = queue.pop()
        cps = [planned[i] for i in unit]
        loads = submit_loads(client, cfg.raw, smap, cps, attempts[unit[0]])
        for i, cp, mine in zip(unit, cps, loads, strict=True):
            pubs[i] = submit_chunk(client, cfg.out, cp, attempts[i], mine)
            running[pubs[i]] = i

    for _ in range(min(limit, len(queue))):
        submit_unit()
    pending = _d.as_completed(list(running))
    for done, fut in enumerate(pending, 1):
        if show_progress:
            _progress(done, len(planned))
        k = unit_of[running.pop(fut)]
        left[k] -= 1
        if left[k] == 0 and queue:
            before = set(running)
            submit_unit()
            pending.update([f for f in running if f not in before])
    for i, fut in pubs.items():
        s, w = chunks[i]
        if fut.status != "finished":
            results[i] = ChunkResult(s, w, False, error=_why(fut))
            continue
        pub: Published = fut.result()
        results[i] = ChunkResult(s, w, True, pub.manifest, None, pub.corrupt, pub.invalid,
                                 pub.rows_in)
    for f in [*plans, *pubs.values()]:
        f.release()
    return [r for r in results if r is not None]


@contextmanager
def connect(cfg: BuildConfig) -> Iterator[Client]:
    """A client on ``cfg.scheduler``, or on a new loopback LocalCluster (closed after)."""
    if cfg.scheduler:
        with _d.Client(cfg.scheduler) as client:
            yield client
        return
    with _d.LocalCluster(n_workers=cfg.n_workers or 2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            _d.Client(cluster) as client:
        yield client


def summary(r: ChunkResult, *, max_reports: int = 5) -> str:
    """One block of text per chunk for the terminal."""
    if not r.ok or r.manifest is None:
        return f"FAILED {r.label}: {r.error}"
    m = r.manifest
    size = sum(f.bytes for f in m.files)
    bpp = f"{size / m.points:.2f}" if m.points else "-"
    lines = [f"ok {r.label}: {m.points} points in {len(m.files)} file(s), {size} bytes "
             f"({bpp} B/point), {len(m.inputs)} input object(s), "
             f"{m.duplicates_dropped} duplicates dropped, {m.corrupt_frames} corrupt frame(s), "
             f"{m.invalid_payloads} invalid payload(s)"]
    lines += [f"  corrupt frame: {k} @ {off}" for k, off in r.corrupt[:max_reports]]
    lines += [f"  invalid payload: {k} @ {off}: {why}" for k, off, why in r.invalid[:max_reports]]
    more = len(r.corrupt) + len(r.invalid) - 2 * max_reports
    if more > 0:
        lines.append(f"  ... and more ({len(r.corrupt)} corrupt, {len(r.invalid)} invalid)")
    return "\n".join(lines)


def run(cfg: BuildConfig) -> int:
    """Build every requested chunk; 0 only when all published, else 1."""
    if cfg.ready:  # `build --ready` (ops, issue 4): selection, leases, summary in ready.py
        from .ready import run_ready

        return run_ready(cfg)
    chunks = [(s, w) for s in cfg.shards for w in cfg.windows]
    t0 = time.monotonic()
    with connect(cfg) as client:
        print(f"tailor build: dashboard {client.dashboard_link}", flush=True)
        results = build_chunks(client, cfg, chunks, show_progress=True)
    print(file=sys.stdout)
    for r in results:
        print(summary(r), flush=True)
    failed = [r for r in results if not r.ok]
    print(f"tailor build: {len(results) - len(failed)}/{len(results)} chunk(s) published in "
          f"{time.monotonic() - t0:.1f}s", flush=True)
    if failed:
        print(f"tailor build: {len(failed)} chunk(s) failed: "
              + ", ".join(r.label for r in failed), file=sys.stderr, flush=True)
        return 1
    return 0
