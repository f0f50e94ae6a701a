"""The distributed sort of a big chunk: one org, a tiny memory budget, many partitions."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from distributed import Client

from tailor.cli import main
from tailor.compute.budget import partition_rows
from tailor.compute.build import build_chunks
from tailor.compute.publish import read_manifest
from tailor.config import BuildConfig, StoreConfig
from tailor.ops import sfile_reader
from tailor.shards import ShardMap
from tailor.storage import Store

from .rawgen import T0, Gen, W, expected, make_points, rows_of, write_object
from .test_build import SHARD, check_contract, chunk_table

SMAP = ShardMap()
BUDGET = 16 * 2**20  # the smallest budget: partitions of ~26k points


def one_org(seed: int, n_payloads: int, per_payload: int, series: int) -> list[Gen]:
    """Payloads of org 7 inside window T0 (a few points past its edges), then 20 of them
    re-sent with later intake and new values (the re-sent points win)."""
    rng = np.random.default_rng(seed)
    keys = [(int(rng.integers(0, 2**64, dtype=np.uint64)), int(rng.integers(0, 2**64,
            dtype=np.uint64))) for _ in range(series)]
    intake = 1_767_300_000_000_000_000
    gens = []
    for _ in range(n_payloads):
        intake += int(rng.integers(1, 1000))
        gens.append(Gen(7, intake, make_points(rng, per_payload, series=keys, ts_lo=T0 - 30,
                                               ts_hi=T0 + W + 30)))
    for g in gens[:20]:
        p = g.points.copy()
        p["value"] += 1.0
        intake += 3
        gens.append(Gen(7, intake, p))
    return gens


def test_one_org_tiny_budget_many_partitions_equals_oracle_each_frame_decoded_once(
        client: Client, tmp_path: Path) -> None:
    raw_cfg, out_cfg = StoreConfig(url=str(tmp_path / "raw")), StoreConfig(url=str(tmp_path / "o"))
    raw = Store(raw_cfg)
    gens = one_org(1, 300, 500, series=4000)
    objects = [gens[:150], gens[150:], gens[100:160]]  # the last one: a replayed batch
    for gs in objects:
        write_object(raw, SHARD, gs)
    cfg = BuildConfig(raw=raw_cfg, out=out_cfg, shards=[SHARD], windows=[T0],
                      memory_budget=BUDGET)
    r = build_chunks(client, cfg, [(SHARD, T0)])[0]
    assert r.ok, r.error
    m, t = chunk_table(Store(out_cfg), SHARD, T0)
    check_contract(m, t)
    assert rows_of(t) == expected(gens, SHARD, SMAP, T0)
    assert m.duplicates_dropped > 0
    points_in = sum(len(g.points) for gs in objects for g in gs)
    assert len(m.files) >= 5 and points_in > 5 * partition_rows(BUDGET)  # many partitions
    # Every frame decoded once, whatever the number of partitions.
    assert r.decoded_points == points_in and r.decoded_frames == sum(map(len, objects))
    # Partitions end at series starts: each series in one file.
    for a, b in itertools.pairwise(m.files):
        assert a.max_key[:3] != b.min_key[:3]


def test_series_longer_than_a_partition_is_split_by_ts(client: Client, tmp_path: Path) -> None:
    raw_cfg, out_cfg = StoreConfig(url=str(tmp_path / "raw")), StoreConfig(url=str(tmp_path / "o"))
    gens = one_org(2, 40, 100, series=300)
    long = make_points(np.random.default_rng(3), 9000, series=[(5, 5)], ts_lo=T0, ts_hi=T0 + W)
    long["ts"] = T0 + np.arange(9000)  # 9000 distinct points of series (7, 5, 5)
    gens += [Gen(7, 1_767_400_000_000_000_000 + i, long[i::3]) for i in range(3)]
    write_object(Store(raw_cfg), SHARD, gens)
    cfg = BuildConfig(raw=raw_cfg, out=out_cfg, shards=[SHARD], windows=[T0],
                      rows_per_partition=2000)
    r = build_chunks(client, cfg, [(SHARD, T0)])[0]
    assert r.ok, r.error
    m, t = chunk_table(Store(out_cfg), SHARD, T0)
    check_contract(m, t)
    want = expected(gens, SHARD, SMAP, T0)
    assert rows_of(t) == want
    files = sfile_reader.files_for(m, 7, 5, 5)
    assert len(files) >= 3  # consecutive files, cut by ts
    assert [f.path for f in files] == [f.path for f in m.files if f.min_key[:3] == [7, 5, 5]
                                       or f.max_key[:3] == [7, 5, 5]]
    got = sfile_reader.read_series(out_cfg.url, 7, 5, 5)
    assert rows_of(got) == [w for w in want if w[:3] == (7, 5, 5)] and got.num_rows == 9000
    # Only that series spans files.
    for a, b in itertools.pairwise(m.files):
        assert a.max_key[:3] != b.min_key[:3] or a.max_key[:3] == [7, 5, 5]


def test_cli_memory_budget_from_env_and_config(client: Client, tmp_path: Path) -> None:
    """``TAILOR_MEMORY_BUDGET`` (or the config key ``memory-budget``) sizes the partitions;
    the summary counts what was decoded; a budget below the floor is refused."""
    raw = tmp_path / "raw"
    gens = one_org(4, 40, 100, series=300)
    write_object(Store(StoreConfig(url=str(raw))), SHARD, gens)
    conf = tmp_path / "build.yaml"
    conf.write_text("memory-budget: 8GiB\nrows-per-partition: 1000\n")
    args = ["build", "--raw", str(raw), "--shard", SHARD, "--window", "2026-01-01T00",
            "--scheduler", client.scheduler.address, "--config", str(conf)]
    runner = CliRunner()
    res = runner.invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    n = sum(len(g.points) for g in gens)
    assert f"decoded {n} points of {len(gens)} frame(s), each byte range once" in res.output
    m = read_manifest(Store(StoreConfig(url=str(tmp_path / "a"))), SHARD, T0)
    assert m is not None and len(m.files) >= 3  # rows-per-partition from the file
    bad = runner.invoke(main, [*args, "--out", str(tmp_path / "b")],
                        env={"TAILOR_MEMORY_BUDGET": "1MiB"})
    assert bad.exit_code == 2 and "--memory-budget '1MiB' is below 16MiB" in bad.output
