"""Kernel warm-up: after ``warm()`` a real build loads no further numba kernel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from distributed import Client

from tailor.compute.warm import WarmKernels
from tailor.format import framing

# Runs in a fresh interpreter: kernels already loaded by other tests would hide a gap.
# After warm(), two real builds run on an in-process cluster (the same process, so
# its kernels are the ones counted): a fused unit of two windows, and a partitioned
# graph (small --rows-per-partition) over ranges whose last frame needs a second GET.
_CHECK = textwrap.dedent("""
    import sys
    import tempfile
    import numba
    import numpy as np
    from tailor.format import payload
    from tailor.compute.warm import warm

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
    from distributed import Client, LocalCluster
    from tailor.compute.build import build_chunks
    from tailor.config import BuildConfig, StoreConfig
    from tailor.shards import ShardMap
    from tailor.storage import Store
    from tests.compute.rawgen import T0, W, Gen, mixed_payloads, write_object

    rng = np.random.default_rng(3)
    n = 3000  # frames longer than read.MIN_TAIL: a range's last frame needs a second GET
    gens = mixed_payloads(seed=2, n_payloads=30)
    for i in range(6):
        pts = np.zeros(n, payload.RECORD_DTYPE)
        pts["metric_id"] = rng.integers(0, 50, n)
        pts["context_key"] = rng.integers(0, 2**64, n, dtype=np.uint64) % np.uint64(7)
        pts["ts"] = rng.integers(T0, T0 + 2 * W, n)
        pts["value"] = rng.standard_normal(n)
        gens.append(Gen(135, 2_000_000_000_000_000_000 + i, pts))
    shard = ShardMap().shard_for(135, T0)
    with tempfile.TemporaryDirectory() as d:
        raw = StoreConfig(url=f"{d}/raw")
        write_object(Store(raw), shard, gens)
        chunks = [(shard, T0), (shard, T0 + W)]
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                          protocol="tcp", host="127.0.0.1", dashboard_address=None) as cl, \
                Client(cl) as client:
            for name, rows_per_partition in (("fused", 4_000_000), ("partitioned", 4000)):
                cfg = BuildConfig(raw=raw, out=StoreConfig(url=f"{d}/{name}"), shards=[shard],
                                  windows=[T0, T0 + W], range_bytes=60_000,
                                  rows_per_partition=rows_per_partition)
                res = build_chunks(client, cfg, chunks)
                assert all(r.ok for r in res), [r.error for r in res]
                files = [len(r.manifest.files) for r in res]
                assert (min(files) > 1) == (name == "partitioned"), (name, files)
    after = loaded()
    new = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert not new, f"kernels loaded after warm(): {new}"
    print("ok")
""")


@pytest.mark.services  # its subprocess builds on a LocalCluster
def test_warm_loads_every_kernel_a_build_runs() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    res = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True,
                         timeout=300, env=env, cwd=Path(__file__).parents[2])
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_plugin_warms_every_worker(client: Client) -> None:
    client.register_plugin(WarmKernels())
    counts = client.run(lambda: len(framing._scan.signatures))
    assert len(counts) == 2 and all(n >= 2 for n in counts.values())  # read-only + writable
