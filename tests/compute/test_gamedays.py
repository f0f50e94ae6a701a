"""Build game days (issue 10) against real components: several `tailor build`
processes on the same chunks at once on moto S3, and a store that answers 10 % of
all requests with 503 SlowDown.  Each ends with every chunk readable by an
outside reader and equal to the oracle, row for row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from tailor.config import StoreConfig
from tailor.format import layout
from tailor.shards import ShardMap
from tailor.storage import Store
from tailor.testing.services import S3Server
from tests.contract import read_chunk
from tests.ingest.faultproxy import FaultProxy

from .rawgen import T0, Gen, W, expected, mixed_payloads, rows_of, write_object

WINDOWS = "2026-01-01T00..2026-01-01T08"  # two windows
#: Concurrent builders race per chunk: 32 shards x 2 windows = 64 chunks is the
#: smallest size at which the old publish (before conditional manifests) failed
#: this test on a run (the deterministic interleaving is in test_publish_race.py).
RACE = ShardMap(shared_shards=32)
#: The 503 game day needs requests, not chunks: 8 shards x 2 windows.
SLOW = ShardMap(shared_shards=8)


def _write_raw(raw: Store, shard_map: ShardMap) -> list[Gen]:
    """Payloads of one org per shared shard (17 is coprime with the shard counts),
    one raw object per shard and half."""
    n = shard_map.shared_shards
    gens = mixed_payloads(seed=31, n_payloads=3 * n, orgs=tuple(range(3, 3 + 17 * n, 17)),
                          per_payload=40)
    by_shard: dict[str, list[Gen]] = {}
    for g in gens:
        by_shard.setdefault(shard_map.shard_for(g.org, T0), []).append(g)
    for shard, gs in by_shard.items():
        write_object(raw, shard, gs[: len(gs) // 2])
        write_object(raw, shard, gs[len(gs) // 2:])
    return gens


def _build_cmd(raw: StoreConfig, out: StoreConfig, shards: Path) -> list[str]:
    return [sys.executable, "-m", "tailor", "build", "--raw", raw.url, "--out", out.url,
            "--shards", str(shards), "--all-shards", "--windows", WINDOWS, "--workers", "1"]


def _shards_file(tmp_path: Path, shard_map: ShardMap) -> Path:
    p = tmp_path / "shards.yaml"
    p.write_text(f"shared_shards: {shard_map.shared_shards}\ndedicated: []\n")
    return p


def _check_every_chunk(s3: S3Server, out: StoreConfig, gens: list[Gen], shard_map: ShardMap) -> int:
    """Every chunk of the two windows reads back (files in manifest order, all present)
    and equals the oracle; returns the points read."""
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3.endpoint_url},
                           skip_instance_cache=True, use_listings_cache=False)
    root = out.url[len("s3://"):]
    points = 0
    for shard in shard_map.all_shards():
        for start in (T0, T0 + W):
            table = read_chunk(fs, f"{root}/{layout.chunk_dir(shard, start)}")
            assert rows_of(table) == expected(gens, shard, shard_map, start), (shard, start)
            points += table.num_rows
    return points


def _env(endpoint: str) -> dict[str, str]:
    return {**os.environ, "TAILOR_S3_ENDPOINT_URL": endpoint}


@pytest.mark.parametrize("builders", [2, 3])
def test_concurrent_builds_of_the_same_chunks_publish_only_readable_chunks(
        builders: int, s3: S3Server, raw_store: StoreConfig, out_store: StoreConfig,
        tmp_path: Path) -> None:
    """Issue 10's outside run: two builders both exited 0 while 19 of 128 manifests
    listed a deleted part file.  Now every builder exits 0, and every manifest reads."""
    raw_gens = _write_raw(Store(raw_store), RACE)
    shards = _shards_file(tmp_path, RACE)
    chunks = 2 * RACE.shared_shards
    procs = [subprocess.Popen(_build_cmd(raw_store, out_store, shards),
                              env=_env(s3.endpoint_url),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(builders)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (so, se) in zip(procs, outs, strict=True):
        assert p.returncode == 0, (so[-2000:], se[-3000:])
        assert f"{chunks}/{chunks} chunk(s) published" in so, so[-2000:]
    assert _check_every_chunk(s3, out_store, raw_gens, RACE) == sum(
        len(expected(raw_gens, s, RACE, w)) for s in RACE.all_shards() for w in (T0, T0 + W))
    # What is left per chunk: at most the current and the previous generation.
    out = Store(out_store)
    for key in out.list(""):
        name = key.rsplit("/", 1)[1]
        assert key.startswith("_claims/") or name == "_manifest.json" or name.startswith(
            "part-"), key


def test_build_through_503_slowdowns_is_exact(s3: S3Server, raw_store: StoreConfig,
                                              out_store: StoreConfig,
                                              tmp_path: Path) -> None:
    raw_gens = _write_raw(Store(raw_store), SLOW)
    shards = _shards_file(tmp_path, SLOW)
    with FaultProxy(s3.endpoint_url, fail_rate=0.10, seed=5) as proxy:
        proc = subprocess.run(_build_cmd(raw_store, out_store, shards),
                              env=_env(proxy.endpoint_url),
                              capture_output=True, text=True, timeout=600, check=False)
        injected = sum(n for k, n in proxy.counts.items() if "503" in k)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert injected > 20, proxy.counts
    _check_every_chunk(s3, out_store, raw_gens, SLOW)
