"""Kernel warm-up: every numba kernel a build task runs, loaded once per worker process.

numba loads a cached kernel (or compiles it) on its first call in a process:
0.1–0.5 s per kernel and signature.  Left lazy, every worker pays that in the
middle of its first tasks, on a build's critical path and inside the stage
timers.  :class:`WarmKernels` is a worker plugin: each worker runs
:func:`warm` once when the plugin is registered or when it joins later.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from tailor.format import framing, layout, payload
from tailor.shards import ShardMap

from . import merge, route
from .decode import concat, decode_range
from .plan import ReadTask
from .read import scan_owned

_ORG = 7
_T0 = 1_767_225_600  # any window start


def _raw_object() -> bytes:
    """Two frames of two payloads, each with two points (one duplicate series point)."""
    frames = []
    for i in range(2):
        pts = np.zeros(2, payload.RECORD_DTYPE)
        pts["metric_id"] = [1, 2]
        pts["context_key"] = [3, 3]
        pts["ts"] = _T0 + 10
        body = payload.encode(_ORG, 1_000 + i, pts)
        raw_len = payload.HEADER_SIZE + pts.nbytes
        frames.append(framing.encode_frame(body, raw_len=raw_len, org_id=_ORG, n_points=2,
                                           intake_ns=1_000 + i, offset=i, partition=0))
    return b"".join(frames)


def warm() -> None:
    """Run the read, decode, route (split) and sort kernels once on a tiny object.

    Covers both buffer kinds the frame scan sees (read-only bytes from a GET,
    a writable buffer after a second GET).  Blocks for the loads; raises
    nothing a build would not raise itself.
    """
    data = _raw_object()
    shard_map = ShardMap()
    shard = shard_map.shard_for(_ORG, _T0)
    rr = scan_owned(lambda a, b: data[a:b], ReadTask("warm", 0, len(data), len(data)))
    framing.scan(np.frombuffer(bytearray(data), np.uint8), len(data), at_boundary=True)
    pts = decode_range(rr, shard, shard_map, _T0, _T0 + layout.HOUR)
    merge.sort_dedup_windows([pts, pts], [_T0, _T0 + layout.HOUR])
    starts = [_T0, _T0 + layout.HOUR]
    spl = route.choose_splitters([route.sample(pts, starts, 1)], 2)
    merge.sort_dedup(route.split(concat([pts, pts]), starts, spl, 2))


class WarmKernels(WorkerPlugin):
    """Worker plugin: :func:`warm` on every worker, before it runs a build task."""

    name = "tailor-warm-kernels"

    def setup(self, worker: Any) -> None:
        warm()
