"""An outside reader's check of contracts.md section 2, using no Tailor code.

It reads ``_manifest.json`` as plain JSON, opens the Parquet files in the order
listed, and checks column names/types/order, global key order and uniqueness.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("org_id", pa.uint32()), ("metric_id", pa.uint64()),
                    ("context_key", pa.uint64()), ("ts", pa.uint32()), ("value", pa.float64())])


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
