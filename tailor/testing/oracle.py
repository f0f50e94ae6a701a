"""The reference outcome of a synthetic stream, computed without Tailor's build.

:func:`oracle` turns the valid payloads of a stream into the S-file rows per
``(shard, window)`` (docs/contracts.md, "S files") with plain numpy: sort,
keep the last copy of each point, route by org and point ts.
:func:`load_expected` reads back what
:meth:`tailor.testing.stream.Synth.write_expected` wrote.  Pure but for
:func:`load_expected`, which reads files.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailor.format.layout import parse_stamp
from tailor.shards import ShardMap

#: Columns of an S file (docs/contracts.md, "S files"), also the oracle's columns.
POINT_SCHEMA: Final = pa.schema([
    ("org_id", pa.uint32()), ("metric_id", pa.uint64()), ("context_key", pa.uint64()),
    ("ts", pa.uint32()), ("value", pa.float64()),
])
@dataclass(frozen=True)
class Expected:
    """An expected outcome read back by :func:`load_expected`."""

    summary: dict[str, Any]
    chunks: dict[tuple[str, int], pa.Table]
    payloads: pa.Table | None


def load_expected(directory: str | Path) -> Expected:
    """Read what :meth:`tailor.testing.stream.Synth.write_expected` wrote.

    Raises ``OSError`` if absent.
    """
    root = Path(directory)
    summary = json.loads((root / "summary.json").read_text())
    chunks: dict[tuple[str, int], pa.Table] = {}
    for f in sorted((root / "points").glob("*/*.parquet")):
        chunks[(f.parent.name, parse_stamp(f.stem))] = pq.read_table(f, schema=POINT_SCHEMA)
    pay = root / "payloads.parquet"
    return Expected(summary, chunks, pq.read_table(pay) if pay.exists() else None)



def oracle(points: np.ndarray, pay_org: np.ndarray, pay_intake_ns: np.ndarray,
           pay_n: np.ndarray, shard_map: ShardMap, window_seconds: int
           ) -> dict[tuple[str, int], pa.Table]:
    """Reference S-file rows of valid payloads (:meth:`tailor.testing.stream.Synth.expected`).

    ``points`` concatenates the payloads' records (:data:`tailor.format.payload.RECORD_DTYPE`).
    """
    n = len(points)
    pay_n = np.asarray(pay_n, dtype=np.int64)
    org = np.repeat(np.asarray(pay_org, dtype=np.uint32), pay_n)
    intake = np.repeat(np.asarray(pay_intake_ns, dtype=np.uint64), pay_n)
    starts = np.cumsum(pay_n) - pay_n
    idx = np.arange(n, dtype=np.int64) - np.repeat(starts, pay_n)
    metric = points["metric_id"].astype(np.uint64)
    ctx = points["context_key"].astype(np.uint64)
    ts = points["ts"].astype(np.uint32)
    order = np.lexsort((idx, intake, ts, ctx, metric, org))
    last = np.ones(n, dtype=bool)
    if n > 1:
        o, m, c, t = org[order], metric[order], ctx[order], ts[order]
        last[:-1] = (o[1:] != o[:-1]) | (m[1:] != m[:-1]) | (c[1:] != c[:-1]) | (t[1:] != t[:-1])
    sel = order[last]
    org, metric, ctx, ts = org[sel], metric[sel], ctx[sel], ts[sel]
    value = points["value"][sel].astype(np.float64)
    # Shard per point by point ts (shard_for semantics), window by point ts.
    code = (org % np.uint32(shard_map.shared_shards)).astype(np.int64)
    names = [f"org-mod-{i}" for i in range(shard_map.shared_shards)]
    for d in shard_map.dedicated.values():
        mask = (org == d.org) & d.active(ts.astype(np.int64))
        code[mask] = len(names)
        names.append(f"org-{d.org}")
    win = ts.astype(np.int64) - ts.astype(np.int64) % window_seconds
    grp = np.lexsort((win, code))  # stable: key order kept inside each chunk
    code, win = code[grp], win[grp]
    cut = np.flatnonzero((code[1:] != code[:-1]) | (win[1:] != win[:-1])) + 1
    bounds = [0, *cut.tolist(), len(grp)] if len(grp) else [0]
    out: dict[tuple[str, int], pa.Table] = {}
    for a, b in itertools.pairwise(bounds):
        rows = grp[a:b]
        out[(names[int(code[a])], int(win[a]))] = pa.table(
            [org[rows], metric[rows], ctx[rows], ts[rows], value[rows]], schema=POINT_SCHEMA)
    return out
