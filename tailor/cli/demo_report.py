"""``tailor demo``'s last two phases: check every chunk as an outside reader, then the summary.

:func:`first_difference` is the check: a chunk's manifest as plain JSON, its
files read with pyarrow alone in manifest order and compared row for row,
values bit for bit, with the generator's expected outcome.  :func:`verify`
runs it on every chunk and counts what was published; :func:`summary_lines`
is the text the demo prints.  Reads the stores; writes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailor.format.layout import stamp
from tailor.storage import Store

if TYPE_CHECKING:
    from tailor.config import StoreConfig
    from tailor.ops.ready import ReadyReport
    from tailor.shards import ShardMap
    from tailor.testing.produce import ProduceReport


def first_difference(store: Store, shard: str, start: int, want: pa.Table) -> str | None:
    """None when the chunk's files, read in the order its manifest lists them, hold
    ``want``'s rows in ``want``'s order (values bit for bit); else the first difference.

    An outside reader's check: the manifest is read as plain JSON and the files
    with pyarrow alone (no Tailor reader or diff code), so unsorted rows, files
    listed out of order and changed NaN bits all count.
    """
    folder = f"{shard}/{stamp(start)}"
    manifest = json.loads(store.get(f"{folder}/_manifest.json"))
    tables = []
    for f in manifest["files"]:
        t = pq.read_table(pa.BufferReader(store.get(f"{folder}/{f['path']}")))
        if not t.schema.equals(want.schema):
            return f"{f['path']} has schema {t.schema}, expected {want.schema}"
        tables.append(t)
    got = pa.concat_tables(tables) if tables else want.schema.empty_table()
    if got.num_rows != want.num_rows:
        return f"{got.num_rows} rows, expected {want.num_rows}"
    for name in want.column_names:
        a, b = got[name].to_numpy(), want[name].to_numpy()
        if name == "value":
            a, b = a.view(np.uint64), b.view(np.uint64)
        bad = np.flatnonzero(a != b)
        if len(bad):
            return (f"row {int(bad[0])} (in manifest order) has {name} {a[bad[0]]}, expected "
                    f"{b[bad[0]]}; {len(bad)} rows differ")
    return None


def rate(n: float, s: float) -> str:
    r = n / max(s, 1e-9)
    return f"{r / 1e6:.2f} M/s" if r >= 1e6 else f"{r / 1e3:.1f} k/s"


@dataclass
class Verified:
    """What :func:`verify` found: problems (empty: all equal) and the output's totals."""

    problems: list[str] = field(default_factory=list)
    expected: dict[tuple[str, int], pa.Table] = field(default_factory=dict)
    published: int = 0
    points: int = 0
    bytes: int = 0
    duplicates_dropped: int = 0
    invalid_sent: int = 0
    seconds: float = 0.0


def verify(expected_dir: Path, out: StoreConfig, report: ReadyReport, shard_map: ShardMap,
           prep: ProduceReport, quarantined: int) -> Verified:
    """Compare every published chunk with the expected outcome in ``expected_dir``.

    A problem is a chunk not built, published but not expected (or the
    reverse), differing from the expected rows, or a quarantine count other
    than the invalid records sent.
    """
    from tailor.ops.state import list_chunks, load_manifests
    from tailor.testing.oracle import load_expected

    t0 = time.monotonic()
    v = Verified(problems=[f"{o.label}: {o.status} {o.detail}" for o in report.outcomes
                           if o.status != "built"])
    out_store = Store(out)
    v.expected = expected = load_expected(expected_dir).chunks
    published = list_chunks(out_store)
    v.published = len(published)
    for key in sorted(set(published) - set(expected)):
        v.problems.append(f"{key[0]}/{stamp(key[1])}: published but not expected")
    for (shard, start), table in sorted(expected.items()):
        if (shard, start) not in published:
            v.problems.append(f"{shard}/{stamp(start)}: expected but not published")
            continue
        diff = first_difference(out_store, shard, start, table)
        if diff is not None:
            v.problems.append(f"{shard}/{stamp(start)}: {diff}")
    for m in load_manifests(out_store, shard_map.all_shards()).values():
        v.points += m.points
        v.bytes += sum(f.bytes for f in m.files)
        v.duplicates_dropped += m.duplicates_dropped
    v.invalid_sent = sum(prep.invalid.values())
    if quarantined != v.invalid_sent:
        v.problems.append(f"{v.invalid_sent} invalid payloads sent, {quarantined} quarantined")
    v.seconds = time.monotonic() - t0
    return v


@dataclass
class Run:
    """What the phases before the check did, for :func:`summary_lines`."""

    raw_url: str
    out_url: str
    endpoint: str | None
    shards_path: Path
    moved_org: int
    moved_at: int
    prep: ProduceReport
    quarantined: int
    ingest_s: float
    cluster_s: float
    kernels_s: float
    build_s: float
    built: int
    stages: dict[str, float]
    dashboard: str
    started: float  # time.monotonic() when the demo started


def summary_lines(r: Run, v: Verified) -> list[str]:
    """The demo's closing summary: verdict, counts, timings and commands to try."""
    big = max(v.expected.items(), key=lambda kv: kv[1].num_rows)
    row = big[1].slice(0, 1).to_pylist()[0]
    s3flag = f" --s3-endpoint-url {r.endpoint}" if r.endpoint else ""
    read_cmd = (f"tailor read --out {r.out_url}{s3flag} --shards {r.shards_path} "
                f"--org {row['org_id']} --metric {row['metric_id']} "
                f"--context {row['context_key']}")
    prep, n_out, problems = r.prep, v.points, v.problems
    ing_s, b_s = r.ingest_s, r.build_s
    lines = [
        "",
        "=" * 72,
        ("VERIFIED: every chunk equals the generator's expected outcome" if not problems
         else f"MISMATCH: {len(problems)} problem(s)"),
        *[f"  ! {p}" for p in problems[:20]],
        f"points in    {prep.points} in {prep.valid} valid payloads "
        f"(+{prep.duplicates} duplicate deliveries)",
        f"invalid      {v.invalid_sent} sent, {r.quarantined} quarantined "
        f"(under {r.raw_url}/quarantine)",
        f"points out   {n_out} unique points in {v.published} chunks "
        f"({v.duplicates_dropped} duplicate points dropped)",
        f"size         {v.bytes} bytes of Parquet: {v.bytes / max(n_out, 1):.2f} bytes/point",
        f"produce      {prep.seconds:.1f} s ({rate(prep.points, prep.seconds)} points)",
        f"ingest       {ing_s:.1f} s wall incl. group join and 3 s idle exit "
        f"({rate(prep.points, ing_s)} points)",
        f"start-up     {r.cluster_s + r.kernels_s:.1f} s before the build, once "
        f"per process: Dask cluster {r.cluster_s:.2f} s, numba kernels loaded "
        f"{r.kernels_s:.2f} s",
        f"build        {b_s:.1f} s for {r.built} chunks: {n_out} points "
        f"at {rate(n_out, b_s)} (start-up not included)",
    ]
    work = sum(r.stages.values())
    if work > 0:
        lines.append(f"  throughput {rate(n_out, work)} points per worker-second of stage "
                     f"time ({work:.2f} worker-s); the rest of the build is planning, "
                     "scheduling and publishing, a cost per chunk, not per point")
    if r.stages:
        lines.append("  stages     " + ", ".join(f"{k} {x:.2f} s" for k, x in r.stages.items())
                     + " (task time summed over workers)")
    lines += [
        f"verify       {v.seconds:.1f} s",
        f"resharding   org {r.moved_org} moves to org-{r.moved_org} at "
        f"{stamp(r.moved_at)}:00Z (mid-window; see shards.yaml)",
        f"S files      {r.out_url}",
        f"dashboard    {r.dashboard} (closes with the demo)",
        f"status       tailor status --raw {r.raw_url} --out {r.out_url}{s3flag} "
        f"--shards {r.shards_path}",
        f"read         {read_cmd}",
    ]
    if r.endpoint:
        lines.append("             (S3 commands work while a moto server runs there; "
                     "this one stops with the demo)")
    lines += [f"total        {time.monotonic() - r.started:.1f} s", "=" * 72]
    return lines
