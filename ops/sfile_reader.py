"""``tailor read`` and :func:`read_series`: points of a series from published chunks.

A reader goes through manifests only: :func:`files_for` bisects a manifest's
files on their key ranges and returns the one file that can hold a series
(or the few that can hold a metric's series); :func:`plan_read` does that for
every chunk of the time range; nothing else is opened.  (The build's read
stage, which reads raw objects, is :mod:`tailor.compute.read`.)
"""

from __future__ import annotations

import bisect
import io
import sys
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tailor import shards
from tailor.compute.encode import SCHEMA
from tailor.compute.publish import published_chunks, read_manifest
from tailor.config import ReadConfig, StoreConfig
from tailor.errors import StorageError
from tailor.format import layout
from tailor.format.records import Manifest, PartFile
from tailor.storage import Store

U64_MAX: Final = 2**64 - 1
U32_MAX: Final = 2**32 - 1
#: Longer --from/--to ranges list the shard's chunks instead of probing each window.
MAX_ENUMERATED_WINDOWS: Final = 64


@dataclass(frozen=True, slots=True)
class FileRef:
    """One part file to open: its key in the output store and its manifest entry."""

    key: str
    file: PartFile
    manifest: Manifest


def files_for(manifest: Manifest, org: int, metric: int, context: int | None) -> list[PartFile]:
    """The manifest's files that can hold series ``(org, metric, context)``.

    ``context`` None means every context of the metric.  Files are in key
    order with disjoint key ranges, so this is a bisection: for one series at
    most one file (a series never spans files).
    """
    lo = (org, metric, 0 if context is None else context)
    hi = (org, metric, U64_MAX if context is None else context)
    files = [f for f in manifest.files if f.rows]
    maxes = [tuple(f.max_key[:3]) for f in files]
    i = bisect.bisect_left(maxes, lo)
    out = []
    while i < len(files) and tuple(files[i].min_key[:3]) <= hi:
        out.append(files[i])
        i += 1
    return out


def _candidate_shards(shard_map: shards.ShardMap, org: int) -> list[str]:
    names = [f"org-mod-{org % shard_map.shared_shards}"]
    if org in shard_map.dedicated:
        names.append(f"org-{org}")
    return names


def _windows(store: Store, shard: str, ts_from: int | None, ts_to: int | None,
             length: int) -> list[int]:
    """Window starts of the chunks that may hold points in ``[ts_from, ts_to)``.

    A short bounded range is enumerated (one manifest GET per window); an open
    or long one lists the shard's chunks instead, so the cost follows what
    exists, never the width of the range.
    """
    if ts_from is not None and ts_to is not None:
        first = layout.window_start(max(ts_from, 0), length)
        if ts_to <= first:
            return []
        if (ts_to - first) // length <= MAX_ENUMERATED_WINDOWS:
            return list(range(first, ts_to, length))
    found = {w for _, w in published_chunks(store, shard)}
    return sorted(w for w in found
                  if (ts_from is None or w + length > ts_from) and (ts_to is None or w < ts_to))


def plan_read(store: Store, shard_map: shards.ShardMap, org: int, metric: int, context: int | None,
              ts_from: int | None, ts_to: int | None, length: int) -> list[FileRef]:
    """The part files to open, found through the chunk manifests only.

    Blocks on the store.  Windows without a manifest are skipped (the chunk
    does not exist for readers).  With no ``ts_from``/``ts_to`` the shard's
    output prefix is listed to find its chunks.
    """
    refs: list[FileRef] = []
    for shard in _candidate_shards(shard_map, org):
        for w in _windows(store, shard, ts_from, ts_to, length):
            m = read_manifest(store, shard, w)
            if m is None:
                continue
            refs += [FileRef(f"{layout.chunk_dir(shard, w)}/{f.path}", f, m)
                     for f in files_for(m, org, metric, context)]
    return refs


def _row_groups(pf: pq.ParquetFile, org: int, metric: int) -> list[int]:
    """Row groups whose statistics allow rows of (org, metric); rows are key-sorted."""
    keep = []
    for g in range(pf.num_row_groups):
        rg = pf.metadata.row_group(g)
        so, sm = rg.column(0).statistics, rg.column(1).statistics
        if so is None or not so.has_min_max or sm is None or not sm.has_min_max:
            keep.append(g)
            continue
        if not so.min <= org <= so.max:
            continue
        if so.min == so.max == org and not sm.min <= metric <= sm.max:
            continue
        keep.append(g)
    return keep


def read_file(store: Store, ref: FileRef, org: int, metric: int, context: int | None,
              ts_from: int | None, ts_to: int | None) -> pa.Table:
    """Rows of the series in one part file (row groups pruned by statistics).

    Reads through ``ParquetFile`` and filters with compute kernels, not the
    dataset engine: pyarrow's dataset filter path can abort the interpreter
    at exit ("terminate called without an active exception").
    """
    with store.fs.open(store.path(ref.key), "rb") as f:
        pf = pq.ParquetFile(f)
        t = pf.read_row_groups(_row_groups(pf, org, metric))
    mask = pc.and_(pc.equal(t["org_id"], pa.scalar(org, pa.uint32())),
                   pc.equal(t["metric_id"], pa.scalar(metric, pa.uint64())))
    if context is not None:
        mask = pc.and_(mask, pc.equal(t["context_key"], pa.scalar(context, pa.uint64())))
    if ts_from is not None and ts_from > 0:  # ts is u32: clamp the bounds to its range
        lo = pa.scalar(min(ts_from, U32_MAX), pa.uint32())
        mask = pc.and_(mask, pc.greater_equal(t["ts"], lo) if ts_from <= U32_MAX
                       else pc.less(t["ts"], 0))
    if ts_to is not None and ts_to <= U32_MAX:
        mask = pc.and_(mask, pc.less(t["ts"], pa.scalar(max(ts_to, 0), pa.uint32())))
    return t.filter(mask).cast(SCHEMA)


#: Times :func:`read_series` plans again when a file vanished under it.
READ_TRIES = 3


def read_series(out: str, org: int, metric: int, context: int | None = None, *,
                ts_from: int | None = None, ts_to: int | None = None,
                s3_endpoint_url: str | None = None, shards_file: str | None = None,
                window_seconds: int = layout.WINDOW_SECONDS) -> pa.Table:
    """Points of one series (or of every series of a metric) as an Arrow table.

    Columns and order as in the S files; rows sorted by (org, metric,
    context, ts); ``ts`` in ``[ts_from, ts_to)`` when given.  Raises
    :class:`~tailor.errors.StorageError` if the store fails and
    :class:`~tailor.errors.ConfigError` for a bad shards file.
    """
    store = Store(StoreConfig(url=out, s3_endpoint_url=s3_endpoint_url))
    shard_map = shards.load(shards_file)
    for attempt in range(READ_TRIES):
        refs = plan_read(store, shard_map, org, metric, context, ts_from, ts_to, window_seconds)
        try:
            tables = [read_file(store, r, org, metric, context, ts_from, ts_to) for r in refs]
            break
        except FileNotFoundError:
            # A chunk was republished twice since its manifest was read: the files of
            # the generation before the previous one are deleted.  Read afresh.
            if attempt == READ_TRIES - 1:
                raise StorageError("chunks keep being republished while reading",
                                   store=out, reason=f"{READ_TRIES} tries",
                                   fix="read again once the rebuilds are done") from None
            store.invalidate()
    if not tables:
        return SCHEMA.empty_table()
    t = pa.concat_tables(tables)
    # Each chunk is in key order; several shards, or a metric's series over several
    # windows (series then ts), interleave and need one sort.
    chunks = {(r.manifest.shard, r.manifest.window_start) for r in refs}
    if len({s for s, _ in chunks}) > 1 or (context is None and len(chunks) > 1):
        t = t.sort_by([(c, "ascending") for c in ("org_id", "metric_id", "context_key", "ts")])
    return t


def _print_table(table: pa.Table) -> None:
    names = SCHEMA.names
    cols = [table.column(n).to_pylist() for n in names]
    rows = [[repr(v) if isinstance(v, float) else str(v) for v in r] for r in zip(*cols,
                                                                                    strict=True)]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    print("  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True)))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))
    print(f"({len(rows)} rows)")


def run(cfg: ReadConfig, fmt: str) -> None:
    """Print the series to stdout as ``table``, ``csv`` or ``parquet`` (binary)."""
    t = read_series(cfg.out.url, cfg.org, cfg.metric, cfg.context, ts_from=cfg.ts_from,
                    ts_to=cfg.ts_to, s3_endpoint_url=cfg.out.s3_endpoint_url,
                    shards_file=cfg.shards_file, window_seconds=cfg.window_seconds)
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(t, buf, compression="zstd")
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
    elif fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(t, buf)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
    else:
        _print_table(t)
