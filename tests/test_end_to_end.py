"""Issue 3's end to end: real broker → `tailor ingest` → moto S3 → `tailor build`
(CLI, LocalCluster) → S files equal to the generator's expected outcome.

The stream spans three windows and holds late points, re-sent points, duplicate
deliveries and invalid payloads of every kind.  The output is read back the way
an outside reader would (tests/contract.py) and with DuckDB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import fsspec
import numpy as np
import pyarrow as pa

from tailor.config import ProduceConfig, StoreConfig
from tailor.testing.services import Broker, S3Server
from tailor.testing.stream import generate
from tests.contract import read_chunk
from tests.pipeline import ingest, send

START = 1767225600  # 2026-01-01T00


def _same(a: pa.Table, b: pa.Table) -> bool:
    if a.num_rows != b.num_rows:
        return False
    for c in ("org_id", "metric_id", "context_key", "ts"):
        if not np.array_equal(a[c].to_numpy(), b[c].to_numpy()):
            return False
    va = a["value"].to_numpy().view(np.uint64)
    vb = b["value"].to_numpy().view(np.uint64)
    return bool(np.array_equal(va, vb))


def test_produce_ingest_build_on_s3_matches_the_oracle(
    broker: Broker, topics: list[str], s3: S3Server, bucket: str, raw_store: StoreConfig,
    out_store: StoreConfig, tmp_path: Path,
) -> None:
    pcfg = ProduceConfig(brokers=broker.bootstrap, topics=topics, partitions=4, points=30_000,
                         orgs=40, hours=11, seed=3, invalid_rate=0.03)
    synth = generate(pcfg)
    kinds = synth.kind_counts()
    assert kinds.get("duplicate", 0) > 0
    send(broker.bootstrap, synth.records)
    ingest(broker.bootstrap, topics, raw_store, shards_file=None, group="e2e")

    env = {**os.environ, "TAILOR_S3_ENDPOINT_URL": s3.endpoint_url}
    proc = subprocess.run(
        [sys.executable, "-m", "tailor", "build", "--raw", raw_store.url, "--out", out_store.url,
         "--all-shards", "--windows", "2026-01-01T00..2026-01-01T12", "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dashboard" in (proc.stdout + proc.stderr).lower()

    expected = synth.expected()
    assert {w for _, w in expected} == {START, START + 4 * 3600, START + 8 * 3600}
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3.endpoint_url},
                           skip_instance_cache=True)
    out_root = out_store.url[len("s3://"):]
    got_points = 0
    for shard in [f"org-mod-{i}" for i in range(64)]:
        for start, stamp in ((START, "2026-01-01T00"), (START + 14400, "2026-01-01T04"),
                             (START + 28800, "2026-01-01T08")):
            table = read_chunk(fs, f"{out_root}/{shard}/{stamp}")
            want = expected.get((shard, start))
            if want is None:
                assert table.num_rows == 0, (shard, stamp)
                continue
            assert _same(table, want.select(table.column_names)), (shard, stamp)
            got_points += table.num_rows
    assert got_points == sum(t.num_rows for t in expected.values())

    # Plain Parquet for other readers: DuckDB counts one chunk's rows.
    shard, start = next(k for k in sorted(expected) if expected[k].num_rows > 0)
    stamp = {START: "2026-01-01T00", START + 14400: "2026-01-01T04",
             START + 28800: "2026-01-01T08"}[start]
    files = [p for p in fs.ls(f"{out_root}/{shard}/{stamp}") if p.endswith(".parquet")]
    for i, path in enumerate(files):
        (tmp_path / f"{i}.parquet").write_bytes(fs.cat_file(path))
    rows = duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/*.parquet')").fetchall()
    assert rows[0][0] == expected[(shard, start)].num_rows
