"""Rebuilds, concurrent readers, failing chunks, `tailor build` exit codes, `tailor read`."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from distributed import Client

from tailor.cli import main
from tailor.compute import build, build_cli
from tailor.compute.publish import read_manifest
from tailor.config import BuildConfig, StoreConfig
from tailor.errors import StorageError
from tailor.format import layout
from tailor.ops import sfile_reader
from tailor.shards import ShardMap
from tailor.storage import Store

from .rawgen import T0, W, expected, mixed_payloads, rows_of, write_object
from .test_build import SHARD, chunk_table

SMAP = ShardMap()


def test_rebuild_identical_and_reader_sees_complete_chunks(client: Client, raw_store: StoreConfig,
                                                           out_store: StoreConfig) -> None:
    raw, out = Store(raw_store), Store(out_store)
    gens = mixed_payloads(seed=21, n_payloads=80)
    write_object(raw, SHARD, gens[:40])
    cfg = BuildConfig(raw=raw_store, out=out_store, shards=[SHARD], windows=[T0],
                      rows_per_partition=400, range_bytes=8192)
    r1 = build.build_chunks(client, cfg, [(SHARD, T0)])[0]
    assert r1.ok, r1.error
    rows_a = rows_of(chunk_table(out, SHARD, T0)[1])
    assert rows_a == expected(gens[:40], SHARD, SMAP, T0)
    write_object(raw, SHARD, gens[40:])  # new input: the rebuild differs
    rows_b = expected(gens, SHARD, SMAP, T0)
    assert rows_b != rows_a

    # Two readers beside the rebuild.  The straddling one reads the manifest before the
    # rebuild publishes and the files it lists only after: that read overlaps the
    # publish for certain, and must still give the old chunk whole.  The looping one
    # reads whole chunks over and over and must see the old chunk, then the new one
    # (the rebuild starts after its first read), never a mix.
    mkey = layout.manifest_key(SHARD, T0)
    old_manifest = out.get(mkey)
    seen: list[str] = []
    straddle: list[str] = []
    errors: list[BaseException] = []
    first_read, stop = threading.Event(), threading.Event()

    def classify(got: list[tuple[int, int, int, int, int]]) -> str:
        return "a" if got == rows_a else "b" if got == rows_b else "mix"

    def straddling_read() -> None:
        try:
            for _ in range(6000):  # until the rebuild has published (bounded)
                done = stop.is_set()
                if out.get(mkey) != old_manifest:
                    straddle.append(classify(_rows_listed(out, old_manifest)))
                    return
                if done or stop.wait(0.02):
                    return
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def read_loop() -> None:
        for _ in range(10_000):
            try:
                seen.append(classify(rows_of(chunk_table(out, SHARD, T0)[1])))
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return
            first_read.set()
            if stop.wait(0.005) and seen[-1] == "b":
                return

    threads = [threading.Thread(target=straddling_read), threading.Thread(target=read_loop)]
    for t in threads:
        t.start()
    try:
        assert first_read.wait(60)
        r2 = build.build_chunks(client, cfg, [(SHARD, T0)])[0]
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert r2.ok, r2.error
    assert not errors, errors
    assert straddle == ["a"]  # planned before the flip, read after it: the old chunk, whole
    assert "mix" not in seen and seen[0] == "a" and seen[-1] == "b", seen
    assert seen == sorted(seen)  # once the new chunk shows, the old one never comes back
    assert rows_of(chunk_table(out, SHARD, T0)[1]) == rows_b

    # Same inputs again: identical rows, a new attempt; only two generations stay.
    r3 = build.build_chunks(client, cfg, [(SHARD, T0)])[0]
    assert r3.ok and r3.manifest is not None and r2.manifest is not None
    assert r3.manifest.attempt != r2.manifest.attempt
    assert rows_of(chunk_table(out, SHARD, T0)[1]) == rows_b
    assert [f.sha256 for f in r3.manifest.files] == [f.sha256 for f in r2.manifest.files]
    parts = [k for k in out.list(layout.chunk_dir(SHARD, T0) + "/") if k.endswith(".parquet")]
    attempts = {k.rsplit("/", 1)[1][len("part-"):].rsplit("-", 1)[0] for k in parts}
    assert attempts == {r2.manifest.attempt, r3.manifest.attempt}


def _rows_listed(out: Store, manifest: bytes) -> list[tuple[int, int, int, int, int]]:
    """The rows of the files ``manifest`` lists, read in its order (plain JSON and Parquet)."""
    folder = layout.chunk_dir(SHARD, T0)
    tables = [pq.read_table(io.BytesIO(out.get(f"{folder}/{f['path']}")))
              for f in json.loads(manifest)["files"]]
    return rows_of(pa.concat_tables(tables))


def test_failing_chunk_does_not_stop_others(client: Client, tmp_path: Path) -> None:
    raw_cfg, out_cfg = StoreConfig(url=str(tmp_path / "raw")), StoreConfig(url=str(tmp_path / "o"))
    raw = Store(raw_cfg)
    gens = mixed_payloads(seed=4, n_payloads=20)
    write_object(raw, SHARD, gens)
    # a damaged index record in the second window's hours
    raw.put(layout.index_key(SHARD, T0 + W + 3600, "broken"), b"{not json")
    cfg = BuildConfig(raw=raw_cfg, out=out_cfg, shards=[SHARD], windows=[T0, T0 + W],
                      scheduler=client.scheduler.address)
    res = build.build_chunks(client, cfg, [(SHARD, T0), (SHARD, T0 + W)])
    assert res[0].ok and not res[1].ok
    assert res[1].error is not None and "broken" in res[1].error
    out = Store(out_cfg)
    assert read_manifest(out, SHARD, T0 + W) is None
    # the other chunk is built, and right
    assert rows_of(chunk_table(out, SHARD, T0)[1]) == expected(gens, SHARD, SMAP, T0)
    # the CLI entry: exit 1, the failed chunk named
    assert build_cli.run(cfg) == 1
    ok_cfg = cfg.model_copy(update={"windows": [T0]})
    assert build_cli.run(ok_cfg) == 0
    assert rows_of(chunk_table(out, SHARD, T0)[1]) == expected(gens, SHARD, SMAP, T0)
    assert read_manifest(out, SHARD, T0 + W) is None


def test_cli_read_formats(client: Client, tmp_path: Path) -> None:
    raw_cfg, out_cfg = StoreConfig(url=str(tmp_path / "raw")), StoreConfig(url=str(tmp_path / "o"))
    gens = mixed_payloads(seed=8)
    write_object(Store(raw_cfg), SHARD, gens)
    cfg = BuildConfig(raw=raw_cfg, out=out_cfg, shards=[SHARD], windows=[T0, T0 + W])
    assert all(r.ok for r in build.build_chunks(client, cfg, [(SHARD, T0), (SHARD, T0 + W)]))
    exp = expected(gens, SHARD, SMAP, T0) + expected(gens, SHARD, SMAP, T0 + W)
    org, met, ctx = exp[5][:3]
    want = [r for r in exp if r[:3] == (org, met, ctx)]
    args = ["read", "--out", out_cfg.url, "--org", str(org), "--metric", str(met),
            "--context", str(ctx)]
    runner = CliRunner()
    res = runner.invoke(main, [*args, "--format", "parquet"])
    assert res.exit_code == 0, res.output
    assert rows_of(pq.read_table(io.BytesIO(res.stdout_bytes))) == want
    res = runner.invoke(main, [*args, "--format", "csv"])
    assert res.exit_code == 0, res.output
    t = pacsv.read_csv(io.BytesIO(res.stdout_bytes))
    assert t.column("ts").to_pylist() == [r[3] for r in want]
    res = runner.invoke(main, [*args, "--from", str(T0), "--to", str(T0 + W)])
    assert res.exit_code == 0, res.output
    assert f"({len([r for r in want if r[3] < T0 + W])} rows)" in res.output
    # the lookup: exactly one file per chunk is opened for one series
    refs = sfile_reader.plan_read(Store(out_cfg), SMAP, org, met, ctx, T0, T0 + 2 * W, W)
    assert len(refs) <= 2 and len({r.manifest.window for r in refs}) == len(refs)


def test_read_subprocess_exits_cleanly_and_clamps_time_bounds(client: Client,
                                                              tmp_path: Path) -> None:
    """`tailor read` as users run it: exit 0 every time (pyarrow's dataset filter path
    used to abort the interpreter at exit), and --from/--to beyond u32 work."""
    import subprocess
    import sys

    raw_cfg, out_cfg = StoreConfig(url=str(tmp_path / "raw")), StoreConfig(url=str(tmp_path / "o"))
    gens = mixed_payloads(seed=9)
    write_object(Store(raw_cfg), SHARD, gens)
    cfg = BuildConfig(raw=raw_cfg, out=out_cfg, shards=[SHARD], windows=[T0])
    assert all(r.ok for r in build.build_chunks(client, cfg, [(SHARD, T0)]))
    org, met, ctx = expected(gens, SHARD, SMAP, T0)[0][:3]
    n = len([r for r in expected(gens, SHARD, SMAP, T0) if r[:3] == (org, met, ctx)])
    base = [sys.executable, "-m", "tailor", "read", "--out", out_cfg.url, "--org", str(org),
            "--metric", str(met), "--context", str(ctx), "--format", "csv"]
    for extra in ([], ["--from", "0", "--to", str(2**40)], ["--from", str(2**40)]) * 2:
        proc = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        rows = len(proc.stdout.strip().splitlines()) - 1
        assert rows == (0 if extra[:2] == ["--from", str(2**40)] else n)


def test_read_series_of_a_metric_over_windows_is_in_key_order(tmp_path: Path) -> None:
    """Two chunks of one shard, two contexts each: series first, then ts (not chunk order)."""
    import numpy as np

    from tailor.compute.decode import Points
    from tailor.compute.publish import new_attempt, publish, write_part

    out = Store(StoreConfig(url=str(tmp_path)))
    org, met = 1, 5
    shard = f"org-mod-{org % SMAP.shared_shards}"
    for w in (T0, T0 + W):
        pts = Points(np.full(2, org, np.uint32), np.full(2, met, np.uint64),
                     np.array([10, 20], np.uint64), np.full(2, w + 1, np.uint32),
                     np.array([1.0, 2.0]), np.zeros(2, np.uint64), np.zeros(2, np.uint32))
        a = new_attempt()
        f = write_part(out, shard, w, a, 0, pts)
        publish(out, shard, w, W, a, [f], [], min_ts=w + 1, max_ts=w + 1, corrupt=0, invalid=0,
                duplicates=0)
    t = sfile_reader.read_series(str(tmp_path), org, met, None, ts_from=T0, ts_to=T0 + 2 * W,
                           window_seconds=W)
    keys = [r[:4] for r in rows_of(t)]
    assert keys == sorted(keys) and len(keys) == 4


def test_unreadable_manifest_names_its_key(tmp_path: Path) -> None:
    out = Store(StoreConfig(url=str(tmp_path / "out")))
    key = layout.manifest_key(SHARD, T0)
    out.put(key, b'{"shard": "org-mod-7"')  # cut short
    with pytest.raises(StorageError) as ei:
        read_manifest(out, SHARD, T0)
    assert key in str(ei.value) and "tailor build" in str(ei.value)
    assert read_manifest(out, SHARD, T0 + W) is None
