"""Build → S files: contract properties against the oracle, on S3 (moto) and a directory."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client

from tailor.compute import build
from tailor.compute.build import build_chunks
from tailor.compute.encode import SCHEMA
from tailor.compute.publish import read_manifest
from tailor.config import BuildConfig, StoreConfig
from tailor.format import layout
from tailor.format.records import Manifest
from tailor.ops import sfile_reader
from tailor.shards import ShardMap, parse
from tailor.storage import Store

from .rawgen import T0, Gen, W, expected, mixed_payloads, nan_payload_bits, rows_of, write_object

SMAP = ShardMap()  # 64 shared shards: orgs 7, 71, 135 all live in org-mod-7
SHARD = "org-mod-7"


def cfg_for(raw: StoreConfig, out: StoreConfig, windows: list[int],
            **overrides: object) -> BuildConfig:
    return BuildConfig(raw=raw, out=out, shards=[SHARD], windows=windows, **overrides)  # type: ignore[arg-type]


def chunk_table(out: Store, shard: str, start: int) -> tuple[Manifest, pa.Table]:
    m = Manifest.model_validate_json(out.get(layout.manifest_key(shard, start)))
    tables = []
    for f in m.files:
        with out.fs.open(out.path(f"{layout.chunk_dir(shard, start)}/{f.path}"), "rb") as fh:
            t = pq.read_table(fh)
        assert t.schema.equals(SCHEMA), t.schema
        assert t.num_rows == f.rows
        tables.append(t)
    return m, pa.concat_tables(tables)


def check_contract(m: Manifest, t: pa.Table) -> None:
    """Sorted and unique across files; manifest key ranges and offsets consistent."""
    keys = list(zip(*[t.column(c).to_pylist() for c in ("org_id", "metric_id", "context_key",
                                                         "ts")], strict=True))
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    off = 0
    for f in m.files:
        assert f.row_offset == off
        if f.rows:
            assert keys[off] == tuple(f.min_key) and keys[off + f.rows - 1] == tuple(f.max_key)
        off += f.rows
    assert m.points == off == t.num_rows


def write_inputs(raw: Store, gens: list[Gen]) -> None:
    """Three objects; the first payloads are delivered twice (a replayed batch)."""
    write_object(raw, SHARD, gens[:30])
    write_object(raw, SHARD, gens[30:])
    write_object(raw, SHARD, gens[:12])  # duplicate delivery


def test_build_matches_oracle_on_s3(client: Client, raw_store: StoreConfig,
                                    out_store: StoreConfig, tmp_path: Path) -> None:
    raw, out = Store(raw_store), Store(out_store)
    gens = [*mixed_payloads(), nan_payload_bits()]
    write_inputs(raw, gens)
    windows = [T0 - W, T0, T0 + W, T0 + 2 * W, T0 + 5 * W]  # the last one is empty
    res = build_chunks(client, cfg_for(raw_store, out_store, windows, rows_per_partition=700),
                       [(SHARD, w) for w in windows])
    assert all(r.ok for r in res), [r.error for r in res]
    for w in windows:
        m, t = chunk_table(out, SHARD, w)
        check_contract(m, t)
        assert rows_of(t) == expected(gens, SHARD, SMAP, w)
        assert m.corrupt_frames == 0 and m.invalid_payloads == 0
    m, t = chunk_table(out, SHARD, T0)
    assert len(m.files) > 1  # several partitions, globally ordered
    assert m.duplicates_dropped > 0
    assert m.min_ts == T0 and m.max_ts == T0 + W - 1
    m_empty, t_empty = chunk_table(out, SHARD, T0 + 5 * W)
    assert t_empty.num_rows == 0 and len(m_empty.files) == 1 and m_empty.min_ts is None
    # DuckDB reads an S file (fetched from S3) as plain Parquet
    f = m.files[0]
    local = tmp_path / f.path
    local.write_bytes(out.get(f"{layout.chunk_dir(SHARD, T0)}/{f.path}"))
    got = duckdb.connect().execute(
        f"select org_id, metric_id, context_key, ts from read_parquet('{local}')").fetchall()
    assert got == [r[:4] for r in rows_of(t)[:f.rows]]


def test_local_dir_small_ranges_equal_huge(client: Client, tmp_path: Path) -> None:
    raw_cfg = StoreConfig(url=str(tmp_path / "raw"))
    raw = Store(raw_cfg)
    gens = mixed_payloads(seed=3, n_payloads=90, per_payload=120)
    write_inputs(raw, gens)
    outs = {}
    for rb in (4096, 2**30):
        out_cfg = StoreConfig(url=str(tmp_path / f"out-{rb}"))
        res = build_chunks(client, cfg_for(raw_cfg, out_cfg, [T0], range_bytes=rb),
                           [(SHARD, T0)])
        assert res[0].ok, res[0].error
        _m, t = chunk_table(Store(out_cfg), SHARD, T0)
        outs[rb] = rows_of(t)
    assert outs[4096] == outs[2**30] == expected(gens, SHARD, SMAP, T0)
    # DuckDB on the local files, as plain Parquet
    files = sorted((tmp_path / "out-4096" / SHARD / layout.stamp(T0)).glob("*.parquet"))
    sql = f"select count(*) from read_parquet({[str(f) for f in files]})"
    n = duckdb.connect().execute(sql).fetchall()[0]
    assert n == (len(outs[4096]),)


@pytest.mark.parametrize("rows_per_partition", [4_000_000, 150])  # one task; several partitions
def test_corrupt_frame_counted_neighbours_kept(client: Client, tmp_path: Path,
                                               rows_per_partition: int) -> None:
    raw_cfg, out_cfg = StoreConfig(url=str(tmp_path / "raw")), StoreConfig(url=str(tmp_path / "o"))
    raw = Store(raw_cfg)
    gens = mixed_payloads(seed=5, n_payloads=20)
    key, _ = write_object(raw, SHARD, gens, corrupt=[3, 11], junk=[b"", b"", b"", b"", b"xx"])
    res = build_chunks(client, cfg_for(raw_cfg, out_cfg, [T0], range_bytes=4096,
                                       rows_per_partition=rows_per_partition), [(SHARD, T0)])
    r = res[0]
    assert r.ok, r.error
    assert r.manifest is not None and r.manifest.corrupt_frames == len(r.corrupt) >= 2
    assert len(r.manifest.files) > 1 or rows_per_partition > 150
    assert {k for k, _ in r.corrupt} == {key} and len(set(r.corrupt)) == len(r.corrupt)
    good = [g for i, g in enumerate(gens) if i not in (3, 11)]
    _, t = chunk_table(Store(out_cfg), SHARD, T0)
    assert rows_of(t) == expected(good, SHARD, SMAP, T0)


def test_dedicated_org_cutover(client: Client, tmp_path: Path) -> None:
    """An org moving into its own shard mid-window: split exactly at the cutover."""
    shards_file = tmp_path / "shards.yaml"
    cut = T0 + 3600
    shards_file.write_text(f"shared_shards: 64\ndedicated:\n  - org: 71\n    since: {cut}\n")
    shard_map = parse(shards_file.read_text())
    raw_cfg, out_cfg = StoreConfig(url=str(tmp_path / "raw")), StoreConfig(url=str(tmp_path / "o"))
    raw = Store(raw_cfg)
    gens = mixed_payloads(seed=9, n_payloads=30)
    # ingest routes by payload: before the cutover to org-mod-7, after to org-71
    write_object(raw, SHARD, [g for g in gens if g.org != 71 or g.intake_ns % 2 == 0])
    write_object(raw, "org-71", [g for g in gens if g.org == 71 and g.intake_ns % 2 == 1])
    cfg = BuildConfig(raw=raw_cfg, out=out_cfg, shards=[SHARD, "org-71"], windows=[T0],
                      shards_file=str(shards_file))
    res = build_chunks(client, cfg, [(SHARD, T0), ("org-71", T0)])
    assert all(r.ok for r in res), [r.error for r in res]
    for shard in (SHARD, "org-71"):
        _, t = chunk_table(Store(out_cfg), shard, T0)
        assert rows_of(t) == expected(gens, shard, shard_map, T0)


def test_manifest_lookup_opens_one_file(client: Client, tmp_path: Path) -> None:
    raw_cfg, out_cfg = StoreConfig(url=str(tmp_path / "raw")), StoreConfig(url=str(tmp_path / "o"))
    gens = mixed_payloads(seed=11)
    write_inputs(Store(raw_cfg), gens)
    res = build_chunks(client, cfg_for(raw_cfg, out_cfg, [T0, T0 + W], rows_per_partition=500),
                       [(SHARD, T0), (SHARD, T0 + W)])
    assert all(r.ok for r in res)
    m = res[0].manifest
    assert m is not None and len(m.files) >= 3
    exp = expected(gens, SHARD, SMAP, T0) + expected(gens, SHARD, SMAP, T0 + W)
    org, met, ctx = exp[len(exp) // 3][:3]
    files = sfile_reader.files_for(m, org, met, ctx)
    assert len(files) == 1
    refs = sfile_reader.plan_read(Store(out_cfg), SMAP, org, met, ctx, None, None, W)
    assert [r.file.path for r in refs if r.manifest.window_start == T0] == [files[0].path]
    t = sfile_reader.read_series(out_cfg.url, org, met, ctx)
    assert rows_of(t) == [r for r in exp if r[:3] == (org, met, ctx)]
    t2 = sfile_reader.read_series(out_cfg.url, org, met, None, ts_from=T0 + 60, ts_to=T0 + W + 60)
    assert rows_of(t2) == [r for r in exp if r[:2] == (org, met) and T0 + 60 <= r[3] < T0 + W + 60]
    assert sfile_reader.files_for(m, 2**32 - 1, 0, None) == []
    assert np.all(np.diff(t.column("ts").to_numpy()) > 0)


def test_unit_fused_or_graphed_same_chunks(client: Client, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit built as one task or as the per-stage graph publishes the same chunks.

    The unit's windows have a gap (T0 is not asked for, yet its points share
    byte ranges with the windows around it): they must land in no chunk.
    """
    raw_cfg = StoreConfig(url=str(tmp_path / "raw"))
    gens = mixed_payloads(seed=13, n_payloads=60)
    write_inputs(Store(raw_cfg), gens)
    wins = [T0 - W, T0 + W, T0 + 2 * W]
    got = {}
    for fuse in (True, False):
        out_cfg = StoreConfig(url=str(tmp_path / f"out-{fuse}"))
        with monkeypatch.context() as mp:
            if not fuse:
                mp.setattr(build, "fusable", lambda plans, rows: False)
            res = build_chunks(client, cfg_for(raw_cfg, out_cfg, wins, range_bytes=8192),
                               [(SHARD, w) for w in wins])
        assert all(r.ok for r in res), [r.error for r in res]
        for r, w in zip(res, wins, strict=True):
            m, t = chunk_table(Store(out_cfg), SHARD, w)
            check_contract(m, t)
            assert rows_of(t) == expected(gens, SHARD, SMAP, w)
            got[(fuse, w)] = (m.points, m.duplicates_dropped, m.invalid_payloads, r.rows_in,
                              [i.key for i in m.inputs])
        assert read_manifest(Store(out_cfg), SHARD, T0) is None
    assert all(got[(True, w)] == got[(False, w)] for w in wins), got


@pytest.mark.services  # starts its own LocalCluster
def test_workers_over_their_memory_limit_finish_instead_of_pausing(tmp_path: Path) -> None:
    """In-process workers all measure this one process.  Past 80 % of the limit Dask
    paused them until memory dropped, which unspillable memory never does: the build
    hung for good.  Here every worker starts above 80 % of its limit and must finish."""
    import threading

    import psutil

    from tailor.compute.build import local_cluster

    raw = StoreConfig(url=str(tmp_path / "raw"))
    gens = mixed_payloads(11)
    write_object(Store(raw), SHARD, gens)
    cfg = BuildConfig(raw=raw, out=StoreConfig(url=str(tmp_path / "out")), shards=[SHARD],
                      windows=[T0])
    limit = psutil.Process().memory_info().rss  # already at 100 %
    done: list[bool] = []
    with local_cluster(2, processes=False, memory_limit=limit) as cluster, \
            Client(cluster) as c:
        t = threading.Thread(target=lambda: done.extend(
            r.ok for r in build_chunks(c, cfg, [(SHARD, T0)])), daemon=True)
        t.start()
        t.join(120)
        paused = [w.status.name for w in cluster.workers.values()]
    assert done == [True], f"build did not finish; workers: {paused}"
    _m, table = chunk_table(Store(cfg.out), SHARD, T0)
    assert rows_of(table) == expected(gens, SHARD, ShardMap(), T0)
