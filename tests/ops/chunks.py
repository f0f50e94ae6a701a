"""Write S-file chunks by hand (docs/contracts.md, "S files"), independent of the builder."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailor.format.layout import WINDOW_SECONDS, chunk_dir, manifest_key, stamp
from tailor.format.records import Manifest, PartFile
from tailor.storage import Store

SCHEMA = pa.schema([("org_id", pa.uint32()), ("metric_id", pa.uint64()),
                    ("context_key", pa.uint64()), ("ts", pa.uint32()), ("value", pa.float64())])


def write_chunk(store: Store, shard: str, start: int, rows: list[tuple[int, int, int, int, float]],
                *, files: int = 2, sort: bool = True) -> None:
    """Sort ``rows`` by key (unless ``sort`` is false: a broken builder's output) and
    publish them as ``files`` part files plus a manifest."""
    if sort:
        rows = sorted(rows, key=lambda r: r[:4])
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(5)]
    table = pa.Table.from_arrays([pa.array(np.asarray(c, dtype=t.to_pandas_dtype()), t)
                                  for c, t in zip(cols, SCHEMA.types, strict=True)],
                                 schema=SCHEMA)
    parts: list[PartFile] = []
    step = max(1, -(-len(rows) // files))
    for i, off in enumerate(range(0, len(rows), step)):
        t = table.slice(off, step)
        buf = io.BytesIO()
        pq.write_table(t, buf)
        name = f"part-x-{i:05d}.parquet"
        store.put(f"{chunk_dir(shard, start)}/{name}", buf.getvalue())
        parts.append(PartFile(path=name, rows=t.num_rows, row_offset=off,
                              bytes=len(buf.getvalue()), sha256="",
                              min_key=list(rows[off][:4]),
                              max_key=list(rows[off + t.num_rows - 1][:4])))
    m = Manifest(shard=shard, window=stamp(start), window_start=start,
                 window_end=start + WINDOW_SECONDS, attempt="x", files=parts, points=len(rows),
                 min_ts=min((r[3] for r in rows), default=None),
                 max_ts=max((r[3] for r in rows), default=None), inputs=[], built_ns=0,
                 tailor_version="test")
    store.put(manifest_key(shard, start), m.dumps())
