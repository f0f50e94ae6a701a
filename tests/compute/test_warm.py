"""Kernel warm-up: after ``warm()`` a build's work loads no further numba kernel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from distributed import Client

from tailor import framing
from tailor.compute.warm import WarmKernels

# Runs in a fresh interpreter: kernels already loaded by other tests would hide a gap.
_CHECK = textwrap.dedent("""
    import sys
    import numba
    import numpy as np
    from tailor import framing, payload
    from tailor.compute import decode, merge, read, route
    from tailor.compute.plan import ReadTask, split_ranges
    from tailor.compute.warm import warm
    from tailor.shards import ShardMap

    def loaded():
        out = {}
        for name, mod in list(sys.modules.items()):
            if name.startswith("tailor"):
                for k, v in vars(mod).items():
                    if isinstance(v, numba.core.registry.CPUDispatcher):
                        out[f"{name}.{k}"] = len(v.signatures)
        return out

    warm()
    before = loaded()
    rng = np.random.default_rng(3)
    T0, W = 1767225600, 4 * 3600
    frames = []
    n = 6000  # frames longer than read.MIN_TAIL: a range's last frame needs a second GET
    for i in range(12):
        pts = np.zeros(n, payload.RECORD_DTYPE)
        pts["metric_id"] = rng.integers(0, 50, n)
        pts["context_key"] = rng.integers(0, 2**64, n, dtype=np.uint64) % np.uint64(7)
        pts["ts"] = rng.integers(T0, T0 + 2 * W, n)
        pts["value"] = rng.standard_normal(n)
        body = payload.encode(135, i, pts, content_size=i % 2 == 0)
        frames.append(framing.encode_frame(body, raw_len=payload.HEADER_SIZE + pts.nbytes,
                                           org_id=135, n_points=n, intake_ns=i, offset=i,
                                           partition=0))
    data = b"".join(frames)
    smap = ShardMap()
    shard = smap.shard_for(135, T0)
    loads = []
    for t in split_ranges("k", len(data), 50_000):  # second GETs: writable buffers
        rr = read.scan_owned(lambda a, b: data[a:b], t)
        loads.append(decode.decode_range(rr, shard, smap, T0, T0 + 2 * W))
    merge.sort_dedup_windows(loads, [T0, T0 + W])
    starts = [T0, T0 + W]
    spl = route.choose_splitters([route.sample(p, starts, 3) for p in loads], 3)
    pieces = [route.split(x, starts, spl, 3) for x in loads]
    for p in range(3):
        merge.sort_dedup_windows([x[p] for x in pieces], starts)
    after = loaded()
    new = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert not new, f"kernels loaded after warm(): {new}"
    print("ok")
""")


def test_warm_loads_every_kernel_a_build_runs() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    res = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True,
                         timeout=300, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_plugin_warms_every_worker(client: Client) -> None:
    client.register_plugin(WarmKernels())
    counts = client.run(lambda: len(framing._scan.signatures))
    assert len(counts) == 2 and all(n >= 2 for n in counts.values())  # read-only + writable
