"""``tailor build``, the command: explicit chunks on a cluster, or ``--ready``.

:func:`run` builds the chunks of ``cfg.shards`` × ``cfg.windows`` with
:func:`tailor.compute.build.build_chunks` and prints one :func:`summary` per
chunk, or hands ``--ready`` to :func:`tailor.ops.ready.run_ready`.  Kept
apart from :mod:`tailor.compute.build` (the driver), which the runner in
:mod:`tailor.ops.ready` imports.
"""

from __future__ import annotations

import sys
import time

from tailor.config import BuildConfig
from tailor.ops.ready import run_ready

from .build import ChunkResult, build_chunks, connect, dashboard_line


def summary(r: ChunkResult, *, max_reports: int = 5) -> str:
    """One block of text per chunk for the terminal."""
    if not r.ok or r.manifest is None:
        return f"FAILED {r.label}: {r.error}"
    m = r.manifest
    if r.by_other:
        late = (f"; it lacks {r.missing_inputs} input object(s) this build saw: run "
                "`tailor build` for it again" if r.missing_inputs else "")
        return (f"ok {r.label}: published by another builder (attempt {m.attempt}, "
                f"{m.points} points){late}")
    size = sum(f.bytes for f in m.files)
    bpp = f"{size / m.points:.2f}" if m.points else "-"
    lines = [f"ok {r.label}: {m.points} points in {len(m.files)} file(s), {size} bytes "
             f"({bpp} B/point), {len(m.inputs)} input object(s), "
             f"{m.duplicates_dropped} duplicates dropped, {m.corrupt_frames} corrupt frame(s), "
             f"{m.invalid_payloads} invalid payload(s); decoded {r.decoded_points} points "
             f"of {r.decoded_frames} frame(s)"
             + (f" for the windows of unit {r.unit}" if r.unit and r.unit != r.label else "")]
    lines += [f"  corrupt frame: {k} @ {off}" for k, off in r.corrupt[:max_reports]]
    lines += [f"  invalid payload: {k} @ {off}: {why}" for k, off, why in r.invalid[:max_reports]]
    more = len(r.corrupt) + len(r.invalid) - 2 * max_reports
    if more > 0:
        lines.append(f"  ... and more ({len(r.corrupt)} corrupt, {len(r.invalid)} invalid)")
    return "\n".join(lines)


def run(cfg: BuildConfig) -> int:
    """Build every requested chunk; 0 only when all published, else 1."""
    if cfg.ready:  # `build --ready` (ops, issue 4): the runner in ready.py
        return run_ready(cfg)
    chunks = [(s, w) for s in cfg.shards for w in cfg.windows]
    t0 = time.monotonic()
    with connect(cfg) as client:
        print(f"tailor build: {dashboard_line(cfg, client)}", flush=True)
        results = build_chunks(client, cfg, chunks, show_progress=True)
    for r in results:
        print(summary(r), flush=True)
    failed = [r for r in results if not r.ok]
    units = {r.unit: (r.decoded_points, r.decoded_frames) for r in results if r.ok}
    print(f"tailor build: decoded {sum(p for p, _f in units.values())} points of "
          f"{sum(f for _p, f in units.values())} frame(s), each byte range once", flush=True)
    others = [r for r in results if r.by_other]
    print(f"tailor build: {len(results) - len(failed)}/{len(results)} chunk(s) published in "
          f"{time.monotonic() - t0:.1f}s"
          + (f" ({len(others)} by another builder that published them first: "
             + ", ".join(r.label for r in others) + ")" if others else ""), flush=True)
    if failed:
        print(f"tailor build: {len(failed)} chunk(s) failed: "
              + ", ".join(r.label for r in failed), file=sys.stderr, flush=True)
        return 1
    return 0
