"""An outside reader's check of docs/contracts.md, "S files", using no Tailor code.

It reads ``_manifest.json`` as plain JSON, opens the Parquet files in the order
listed, and checks column names/types/order, global key order and uniqueness.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("org_id", pa.uint32()), ("metric_id", pa.uint64()),
                    ("context_key", pa.uint64()), ("ts", pa.uint32()), ("value", pa.float64())])


def chunk_path(root: str, shard: str, start: int) -> str:
    """``{root}/{shard}/{YYYY-MM-DDTHH}``: where a chunk lives (docs/contracts.md, "S files")."""
    return f"{root}/{shard}/{datetime.fromtimestamp(start, UTC):%Y-%m-%dT%H}"


def read_chunk(fs: Any, chunk_dir: str) -> pa.Table:
    """The chunk's rows, files read in manifest order; asserts the contract."""
    manifest = json.loads(fs.cat_file(f"{chunk_dir}/_manifest.json"))
    paths = [f["path"] for f in manifest["files"]]
    assert paths, "a published chunk has one or more Parquet files"
    tables = []
    for p in paths:
        with fs.open(f"{chunk_dir}/{p}", "rb") as f:
            t = pq.read_table(f)
        assert t.schema.equals(SCHEMA), t.schema
        tables.append(t)
    table = pa.concat_tables(tables)
    assert_sorted_unique(table)
    return table


def assert_sorted_unique(t: pa.Table) -> None:
    """Rows strictly increasing in (org_id, metric_id, context_key, ts)."""
    if t.num_rows < 2:
        return
    cols = [t[c].to_numpy() for c in ("org_id", "metric_id", "context_key", "ts")]
    greater = np.zeros(t.num_rows - 1, bool)
    equal = np.ones(t.num_rows - 1, bool)
    for c in cols:
        a, b = c[:-1], c[1:]
        greater |= equal & (b > a)
        equal &= b == a
    assert greater.all(), "rows are not strictly increasing in the key"


def first_difference(got: pa.Table, want: pa.Table) -> str | None:
    """None when ``got`` holds ``want``'s rows in ``want``'s order, values compared bit
    for bit; else a description of the first difference."""
    if got.num_rows != want.num_rows:
        return f"{got.num_rows} rows, expected {want.num_rows}"
    for name in SCHEMA.names:
        a, b = got[name].to_numpy(), want[name].to_numpy()
        if name == "value":
            a, b = a.view(np.uint64), b.view(np.uint64)
        bad = np.flatnonzero(a != b)
        if len(bad):
            i = int(bad[0])
            return f"row {i}: {name} {a[i]!r}, expected {b[i]!r} ({len(bad)} rows differ)"
    return None


def mismatches(fs: Any, root: str, expected: Mapping[tuple[str, int], pa.Table]) -> list[str]:
    """Chunks under ``root`` that differ from ``expected`` (empty: all equal).

    Every expected chunk must be published and equal its table row for row; a
    published chunk that is not expected must hold no rows.
    """
    bad = []
    wanted = {chunk_path(root, s, w): t for (s, w), t in expected.items()}
    for d, want in sorted(wanted.items()):
        if not fs.exists(f"{d}/_manifest.json"):
            bad.append(f"{d}: not published")
            continue
        diff = first_difference(read_chunk(fs, d), want.select(SCHEMA.names))
        if diff is not None:
            bad.append(f"{d}: {diff}")
    for m in sorted(fs.glob(f"{root}/*/*/_manifest.json")):
        d = m.rsplit("/", 1)[0]
        if d not in wanted and (n := read_chunk(fs, d).num_rows):
            bad.append(f"{d}: published with {n} rows, none expected")
    return bad
