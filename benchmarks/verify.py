"""Read every system's output as chunks and check they hold the same rows.

A chunk is ``(shard_number, window_start)``; its rows are the five S-file
columns in file order.  Tailor's output is read through its manifests (files
in the order listed); a peer's output is a hive-partitioned directory
``{root}/shard=N/win=T/*.parquet`` read in file-name order.  Values are
compared bit for bit (NaN payloads included).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tailor.format.layout import parse_stamp

COLUMNS = ("org_id", "metric_id", "context_key", "ts", "value")
SCHEMA = pa.schema([("org_id", pa.uint32()), ("metric_id", pa.uint64()),
                    ("context_key", pa.uint64()), ("ts", pa.uint32()), ("value", pa.float64())])
ChunkKey = tuple[int, int]  # (shard number, window start)
_SHARD_RE = re.compile(r"org-mod-(\d+)\Z")


def shard_number(shard: str) -> int:
    m = _SHARD_RE.match(shard)
    if m is None:
        raise ValueError(f"benchmarks use shared shards only, got {shard!r}")
    return int(m.group(1))


def normalize(table: pa.Table) -> pa.Table:
    """The five columns, in order, with the S-file types (Spark reads uint64 as decimal)."""
    cols = []
    for f in SCHEMA:
        col = table.column(f.name)
        if col.type != f.type:
            if pa.types.is_decimal(col.type):
                col = pc.cast(pc.cast(col, pa.decimal128(20, 0)), f.type)
            else:
                col = pc.cast(col, f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def tailor_files(out: str | Path) -> dict[ChunkKey, list[str]]:
    """Chunk → its Parquet files in manifest order (only chunks with a manifest)."""
    root = Path(out)
    found: dict[ChunkKey, list[str]] = {}
    for shard_dir in sorted(root.iterdir()) if root.exists() else []:
        if not shard_dir.is_dir() or not _SHARD_RE.match(shard_dir.name):
            continue
        for win_dir in sorted(shard_dir.iterdir()):
            man = win_dir / "_manifest.json"
            if not man.exists():
                continue
            doc = json.loads(man.read_text())
            key = (shard_number(shard_dir.name), parse_stamp(win_dir.name))
            found[key] = [str(win_dir / f["path"]) for f in doc["files"]]
    return found


def hive_files(out: str | Path) -> dict[ChunkKey, list[str]]:
    """Chunk → Parquet files of a ``shard=N/win=T`` partitioned directory, by name."""
    root = Path(out)
    found: dict[ChunkKey, list[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        parts = dict(p.split("=", 1) for p in Path(dirpath).relative_to(root).parts if "=" in p)
        pq_files = sorted(f for f in files if f.endswith(".parquet"))
        if "shard" in parts and "win" in parts and pq_files:
            key = (int(parts["shard"]), int(parts["win"]))
            found[key] = [os.path.join(dirpath, f) for f in pq_files]
    return found


def read_chunk(files: list[str]) -> pa.Table:
    tables = [pq.read_table(f, columns=list(COLUMNS)) for f in files]
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables([normalize(t) for t in tables])


def files_bytes(chunks: dict[ChunkKey, list[str]]) -> int:
    return sum(os.path.getsize(f) for fs in chunks.values() for f in fs)


def is_strictly_sorted(t: pa.Table) -> bool:
    """Rows strictly increasing on (org_id, metric_id, context_key, ts)."""
    if t.num_rows < 2:
        return True
    inc: np.ndarray | None = None
    for name in reversed(("org_id", "metric_id", "context_key", "ts")):
        c = t.column(name).to_numpy()
        gt, eq = c[1:] > c[:-1], c[1:] == c[:-1]
        inc = gt if inc is None else gt | (eq & inc)
    assert inc is not None
    return bool(inc.all())


def row_diffs(a: pa.Table, b: pa.Table) -> tuple[int, int]:
    """``(rows that differ, rows whose values differ only in their bits)``.

    "Only in their bits": both NaN with other payloads, or 0.0 against -0.0.

    Tables of different lengths differ in every row of the longer one.
    """
    if a.num_rows != b.num_rows:
        return max(a.num_rows, b.num_rows), 0
    bad = np.zeros(a.num_rows, dtype=bool)
    for name in COLUMNS[:-1]:
        bad |= a.column(name).to_numpy() != b.column(name).to_numpy()
    x, y = a.column("value").to_numpy(), b.column("value").to_numpy()
    vbad = x.view(np.uint64) != y.view(np.uint64)
    nan_only = vbad & ((np.isnan(x) & np.isnan(y)) | (x == y)) & ~bad
    bad |= vbad & ~nan_only
    return int(bad.sum()), int(nan_only.sum())


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Equal row for row, values compared by their bits."""
    return row_diffs(a, b) == (0, 0)


@dataclass
class Check:
    """Outcome of comparing one system's chunks with the reference."""

    name: str
    chunks: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    nan_payload_rows: int = 0  # NaN payloads / -0.0 signs that were not kept

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(problem)


def iter_chunks(chunks: dict[ChunkKey, list[str]]) -> Iterator[tuple[ChunkKey, pa.Table]]:
    for key in sorted(chunks):
        yield key, read_chunk(chunks[key])


def compare(name: str, got: dict[ChunkKey, list[str]], reference: dict[ChunkKey, pa.Table],
            *, exact_nan: bool = True) -> Check:
    """Check ``got`` against reference chunk tables (sorted, unique, same rows).

    A chunk absent from the reference must be empty.  With ``exact_nan``
    False, a value whose bits changed but not its float meaning (a NaN's
    payload, the sign of -0.0) is counted in ``nan_payload_rows`` instead of
    failing the check.
    """
    chk = Check(name)
    for k in sorted({k for k, t in reference.items() if t.num_rows} - set(got)):
        chk.add(f"chunk {k} missing")
    for key, t in iter_chunks(got):
        chk.chunks += 1
        chk.rows += t.num_rows
        ref = reference.get(key)
        if ref is None:
            if t.num_rows:
                chk.add(f"unexpected chunk {key} with {t.num_rows} rows")
            continue
        if not is_strictly_sorted(t):
            chk.add(f"chunk {key}: rows not strictly sorted by key")
        bad, nan_only = row_diffs(t, normalize(ref))
        if nan_only and exact_nan:
            bad += nan_only
        elif nan_only:
            chk.nan_payload_rows += nan_only
        if bad:
            chk.add(f"chunk {key}: {bad} of {t.num_rows} rows differ from the reference's "
                    f"{ref.num_rows}")
    return chk


def load_chunks(chunks: dict[ChunkKey, list[str]]) -> dict[ChunkKey, pa.Table]:
    return dict(iter_chunks(chunks))
