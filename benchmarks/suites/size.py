"""Size suite: bytes per point of the S files against Gorilla and DuckDB's default Parquet.

Reads the outputs the build suite kept (round 1 of the warm CLI line and of
DuckDB, both checked equal to the oracle) and encodes the oracle's chunks
with the Gorilla scheme (:mod:`benchmarks.gorilla`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks import gorilla, verify
from benchmarks.results import Results
from benchmarks.workload import Prepared, log


def run(prep: Prepared, work: Path, res: Results) -> None:
    keep_t, keep_d = work / "keep-tailor", work / "keep-duckdb"
    if not keep_t.exists():
        log("size: no checked Tailor output kept (the warm CLI line did not count): skipped")
        return
    tfiles = verify.tailor_files(keep_t)
    g = gorilla.GorillaSize(0, 0, 0)
    for (_shard, ws), t in sorted(prep.reference.items()):
        if not t.num_rows:
            continue
        t = verify.normalize(t)
        org, metric, ctx, ts, val = (t.column(c).to_numpy() for c in verify.COLUMNS)
        g = g + gorilla.encode_size(org, metric, ctx, ts, val, ws)
    res.size = {
        "rows": prep.rows, "series_blocks": g.series_blocks,
        "tailor": verify.files_bytes(tfiles), "gorilla_streams": g.stream_bytes,
        "gorilla_keys": g.key_bytes, "gorilla_total": g.total_bytes,
        "tailor_files": sum(len(v) for v in tfiles.values()),
    }
    if keep_d.exists():
        res.size["duckdb"] = verify.files_bytes(verify.hive_files(keep_d))
    shutil.rmtree(keep_d, ignore_errors=True)
