"""``python -m benchmarks``: Tailor side by side with its peers (issue 5).

Steps, all in one run so that every ratio compares numbers measured together:

1. dataset: ``tailor.synth.generate`` (default 10M points, 2 windows, 64 shards);
   its valid payloads decoded once to one Parquet file of raw points for the peers;
2. ingest: a Tansu broker, the records produced once, then per round one
   ``tailor ingest`` into a fresh raw store and one bare aiokafka fetch loop;
3. build: per round one ``tailor build`` (own process, LocalCluster of 2
   single-threaded workers) and each peer on the decoded points; round 1's
   outputs are checked against the synth oracle before any time counts;
4. size, memory, stages; optionally the 10× dataset (``--scale10``) and a py-spy
   profile of one build (``--profile``);
5. ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks import dataset, gorilla, peers, verify
from benchmarks.stats import Runs, fmt_ratio, mib, ratio
from tailor import layout

TOPICS = ("bench-points-0", "bench-points-1")
PARTITIONS = 4
PEERS = ("duckdb", "polars", "spark")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- dataset --------------------------------------------------------------------------


@dataclass
class Prepared:
    points_target: int
    records: list[Any]
    valid: list[dataset.Valid]
    invalid: int
    reference: dict[verify.ChunkKey, Any]
    windows: list[int]
    raw_points: str
    points: int
    payload_bytes: int
    record_bytes: int
    gen_s: float


def synth(points: int, seed: int) -> Any:
    from tailor.config import ProduceConfig
    from tailor.synth import generate

    cfg = ProduceConfig(brokers="127.0.0.1:9", topics=list(TOPICS), partitions=PARTITIONS,
                        points=points, seed=seed)
    return generate(cfg)


def reference_chunks(s: Any) -> dict[verify.ChunkKey, Any]:
    return {(verify.shard_number(sh), int(ws)): t for (sh, ws), t in s.expected().items()}


def prepare(points: int, seed: int, work: Path, tag: str) -> Prepared:
    t0 = time.perf_counter()
    s = synth(points, seed)
    records = list(s.records)
    gen_s = time.perf_counter() - t0
    valid, invalid = dataset.valid_payloads(records)
    ref = reference_chunks(s)
    raw_points = str(work / f"points-{tag}.parquet")
    n = dataset.write_raw_points(valid, raw_points)
    windows = sorted({ws for _, ws in ref})
    return Prepared(points, records, valid, invalid, ref, windows, raw_points, n,
                    sum(len(v.value) for v in valid),
                    sum(len(r.value or b"") for r in records), gen_s)


def write_direct(prep: Prepared, raw_dir: str) -> int:
    from tailor.config import StoreConfig
    from tailor.shards import ShardMap
    from tailor.storage import Store

    shutil.rmtree(raw_dir, ignore_errors=True)
    return dataset.write_raw_objects(prep.valid, Store(StoreConfig(url=raw_dir)), ShardMap())


# -- build ----------------------------------------------------------------------------


@dataclass
class BuildRun:
    seconds: float
    exit_code: int
    stages: dict[str, float]
    peaks: list[dict[str, Any]]
    cluster_start_s: float
    profiles: list[tuple[str, str]] = field(default_factory=list)  # (role, raw py-spy file)


def tailor_build(raw: str, out: str, windows: list[int], warmup_raw: str | None,
                 work: Path, *, workers: int = 2, profile: str | None = None,
                 rows_per_partition: int | None = None, dask_malloc: bool = False) -> BuildRun:
    shutil.rmtree(out, ignore_errors=True)
    res_path = work / f"buildrun-{uuid.uuid4().hex[:8]}.json"
    cmd = [sys.executable, "-m", "benchmarks.buildrun", "--raw", raw, "--out", out,
           "--windows", ",".join(map(str, windows)), "--workers", str(workers),
           "--json", str(res_path)]
    if warmup_raw:
        cmd += ["--warmup-raw", warmup_raw]
    if profile:
        cmd += ["--profile", profile]
    if rows_per_partition:
        cmd += ["--rows-per-partition", str(rows_per_partition)]
    if dask_malloc:
        cmd += ["--dask-malloc"]
    with open(work / "build.log", "ab") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, timeout=3600,
                              cwd=str(Path(__file__).resolve().parent.parent), check=False)
    if proc.returncode != 0 or not res_path.exists():
        raise RuntimeError(f"build run failed (exit {proc.returncode}); see {work / 'build.log'}")
    doc = json.loads(res_path.read_text())
    res_path.unlink()
    return BuildRun(doc["seconds"], doc["exit_code"], doc.get("stages", {}), doc["peaks"],
                    doc.get("cluster_start_s", 0.0),
                    [(str(r), str(p)) for r, p in doc.get("profiles", [])])


# -- results --------------------------------------------------------------------------


@dataclass
class Results:
    args: dict[str, Any]
    command: str
    dataset: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Runs] = field(default_factory=dict)
    build_notes: list[str] = field(default_factory=list)
    checks: dict[str, verify.Check] = field(default_factory=dict)
    stages: dict[str, Runs] = field(default_factory=dict)
    stages10: dict[str, Runs] = field(default_factory=dict)
    cli_build: tuple[float, int, str] | None = None
    path: str | None = None  # RESULTS.md, rewritten after every phase
    ingest: dict[str, dict[str, Runs]] = field(default_factory=dict)
    ingest_notes: list[str] = field(default_factory=list)
    size: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, dict[str, Runs]] = field(default_factory=dict)
    scale10: dict[str, Any] = field(default_factory=dict)
    profile: list[tuple[str, float]] = field(default_factory=list)
    profile_inclusive: list[tuple[str, float]] = field(default_factory=list)
    ingest_profile: list[tuple[str, float]] = field(default_factory=list)
    ingest_profile_inclusive: list[tuple[str, float]] = field(default_factory=list)
    profile_note: str = ""
    load: list[float] = field(default_factory=list)


def save(res: Results) -> None:
    """Write RESULTS.md with what is measured so far (a crash keeps earlier phases)."""
    if res.path:
        Path(res.path).write_text(render(res))


def _mem(res: Results, scale: str, run: BuildRun) -> None:
    m = res.memory.setdefault(scale, {})
    for p in run.peaks:
        if p["label"] in ("resource-tracker", "other"):
            continue
        m.setdefault(p["label"], Runs()).add(p["rss"])


# -- the run --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000, help="points at 1× (default 10M)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per system (≥3 for medians)")
    ap.add_argument("--scale10", action="store_true", help="also build 10× the points")
    ap.add_argument("--runs10", type=int, default=3, help="timed builds at 10×")
    ap.add_argument("--memory-rpp", type=int, default=1_000_000,
                    help="with --scale10: one more build at 1× and at 10× with this "
                         "--rows-per-partition, to show the worker memory bound")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/tailor-bench", help="scratch directory (replaced)")
    ap.add_argument("--raw-via", choices=("ingest", "direct"), default="ingest",
                    help="raw objects from the real ingest (default) or written directly")
    ap.add_argument("--no-ingest", action="store_true", help="skip the ingest benchmark")
    ap.add_argument("--no-spark", action="store_true", help="skip PySpark")
    ap.add_argument("--spark-runs", type=int, default=None, help="PySpark runs (default --runs)")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy one extra 1× build and one ingest (needs: pip install py-spy)")
    ap.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    a = ap.parse_args(argv)

    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    res = Results(vars(a), "python -m benchmarks " + " ".join(argv if argv is not None
                                                                  else sys.argv[1:]))
    res.load.append(os.getloadavg()[0])
    res.path = a.results
    run_all(a, work, res)
    res.load.append(os.getloadavg()[0])
    save(res)
    log(f"wrote {a.results}")
    failed = [c for c in res.checks.values() if not c.ok and c.name == "tailor"]
    return 1 if failed else 0


def run_all(a: argparse.Namespace, work: Path, res: Results) -> None:
    log(f"dataset: {a.points:,} points")
    prep = prepare(a.points, a.seed, work, "1x")
    res.dataset = {
        "points_target": a.points, "records": len(prep.records), "valid": len(prep.valid),
        "invalid": prep.invalid, "points": prep.points, "payload_bytes": prep.payload_bytes,
        "record_bytes": prep.record_bytes, "gen_s": prep.gen_s,
        "rows": sum(t.num_rows for t in prep.reference.values()),
        "chunks": sum(1 for t in prep.reference.values() if t.num_rows),
        "windows": [layout.stamp(w) for w in prep.windows],
        "raw_points_bytes": os.path.getsize(prep.raw_points),
    }
    log(f"dataset: {len(prep.records):,} records, {prep.points:,} points, "
        f"{res.dataset['rows']:,} S-file rows")

    warm = synth(20_000, a.seed + 1)
    warm_valid, _ = dataset.valid_payloads(list(warm.records))
    warm_raw = str(work / "raw-warmup")
    from tailor.config import StoreConfig
    from tailor.shards import ShardMap
    from tailor.storage import Store
    dataset.write_raw_objects(warm_valid, Store(StoreConfig(url=warm_raw)), ShardMap())

    raw_dirs: list[str] = []
    if a.raw_via == "ingest" or not a.no_ingest:
        raw_dirs = ingest_bench(a, prep, work, res)
    if a.raw_via == "direct":
        for d in raw_dirs:
            shutil.rmtree(d, ignore_errors=True)
        raw_dirs = []
    if not raw_dirs:
        raw = str(work / "raw-direct")
        n = write_direct(prep, raw)
        res.build_notes.append(f"raw objects written directly by the harness ({n} objects; "
                               "same framing and index records as ingest)")
        raw_dirs = [raw]
    else:
        res.build_notes.append("raw objects from the real `tailor ingest` run of round 1")
    save(res)
    build_bench(a, prep, raw_dirs[0], warm_raw, work, res)
    save(res)
    size_bench(prep, work, res)
    save(res)
    if a.profile:
        profile_build(prep, raw_dirs[0], warm_raw, work, res)
        save(res)
    if a.scale10:
        del prep
        scale10(a, work, warm_raw, res, raw_dirs[0])


def ingest_bench(a: argparse.Namespace, prep: Prepared, work: Path, res: Results) -> list[str]:
    from benchmarks import kafka
    from benchmarks.ingestrun import run_ingest
    from tailor import services

    raw_dirs: list[str] = []
    b = services.start_broker(str(work / "tansu.log"))
    try:
        import asyncio
        asyncio.run(services.create_topics(b.bootstrap, list(TOPICS), PARTITIONS))
        t0 = time.perf_counter()
        kafka.produce(b.bootstrap, prep.records)
        log(f"produced {len(prep.records):,} records in {time.perf_counter() - t0:.1f} s")
        if a.no_ingest:
            r = run_ingest(b.bootstrap, TOPICS, str(work / "raw-ingest-0"), "bench-0",
                           len(prep.records), log_path=str(work / "ingest.log"))
            if not r.complete:
                res.build_notes.append(f"tailor ingest consumed only {r.consumed:,} of "
                                       f"{r.total:,} records")
                return []
            return [str(work / "raw-ingest-0")]
        ing = res.ingest.setdefault("tailor ingest", {})
        bare = res.ingest.setdefault("bare aiokafka fetch", {})
        valid = res.ingest.setdefault("bare fetch + validation", {})
        for i in range(a.runs):
            raw = str(work / f"raw-ingest-{i}")
            r = run_ingest(b.bootstrap, TOPICS, raw, f"bench-{uuid.uuid4().hex[:8]}",
                           len(prep.records), log_path=str(work / "ingest.log"))
            if r.exit_code != 0:
                res.ingest_notes.append(f"round {i + 1}: tailor ingest exited {r.exit_code}")
            if not r.complete:
                res.ingest_notes.append(
                    f"round {i + 1}: tailor ingest INCOMPLETE: consumed {r.consumed:,} of "
                    f"{r.total:,} records before going idle (the bare loop reads them all); "
                    "its raw store is not used for the build")
            for k, v in (("MB/s", r.mb_per_s), ("payloads/s", r.payloads_per_s),
                         ("seconds", r.seconds), ("end-to-end s", r.end_to_end_s),
                         ("peak RSS", r.peak_rss)):
                ing.setdefault(k, Runs()).add(v)
            f = kafka.bare_fetch(b.bootstrap, TOPICS)
            for k, v in (("MB/s", f.mb_per_s), ("payloads/s", f.payloads_per_s),
                         ("seconds", f.seconds)):
                bare.setdefault(k, Runs()).add(v)
            fv = kafka.bare_fetch(b.bootstrap, TOPICS, validate=True)
            for k, v in (("MB/s", fv.mb_per_s), ("payloads/s", fv.payloads_per_s),
                         ("seconds", fv.seconds)):
                valid.setdefault(k, Runs()).add(v)
            log(f"ingest round {i + 1}: tailor {r.mb_per_s:.1f} MB/s "
                f"({r.payloads_per_s:,.0f}/s, {r.consumed:,}/{r.total:,} records), "
                f"bare {f.mb_per_s:.1f} MB/s ({f.total_records:,} records), "
                f"bare + validation {fv.mb_per_s:.1f} MB/s")
            if r.complete:
                raw_dirs.append(raw)
            else:
                shutil.rmtree(raw, ignore_errors=True)
        for extra in raw_dirs[1:]:
            shutil.rmtree(extra, ignore_errors=True)
        if a.profile:
            from benchmarks.profile import inclusive, top_frames

            prof = str(work / "ingest.pyspy.txt")
            try:
                pr = run_ingest(b.bootstrap, TOPICS, str(work / "raw-ingest-profile"),
                                f"bench-{uuid.uuid4().hex[:8]}", len(prep.records),
                                log_path=str(work / "ingest.log"), profile=prof)
            except (OSError, RuntimeError) as exc:
                res.ingest_notes.append(f"py-spy profile of ingest failed: {exc}")
                return raw_dirs[:1]
            finally:
                shutil.rmtree(work / "raw-ingest-profile", ignore_errors=True)
            res.ingest_profile = top_frames(prof, 12)
            res.ingest_profile_inclusive = inclusive(
                prof, r"\((consumer|batcher|writer|quarantine|payload|framing|storage|"
                      r"fetcher|group_coordinator)\.py\)", 15)
            res.ingest_notes.append(
                f"py-spy profile: one extra ingest ({pr.mb_per_s:.1f} MB/s under the profiler), "
                f"raw stacks in {prof}")
        res.memory.setdefault("1×", {})["ingester"] = ing["peak RSS"]
    finally:
        b.close()
    return raw_dirs[:1]


def build_bench(a: argparse.Namespace, prep: Prepared, raw: str, warm_raw: str, work: Path,
                res: Results) -> None:
    spark_why = "skipped (--no-spark)" if a.no_spark else peers.spark_missing()
    systems = ["tailor", "duckdb", "polars"] + ([] if spark_why else ["spark"])
    if spark_why:
        res.build_notes.append(f"PySpark: {spark_why}")
    spark: Any = None
    con = peers.duckdb_connect()
    if "spark" in systems:
        spark = peers.spark_session()
        spark.sparkContext.setLogLevel("ERROR")
        # warm the JVM on a tiny input, as Tailor's build is warmed
        peers.run_spark(peers.Job(_tiny_points(prep, work), str(work / "spark-warm")), spark)
    spark_runs = a.spark_runs if a.spark_runs is not None else a.runs
    try:
        for i in range(a.runs):
            for name in systems:
                if name == "spark" and i >= spark_runs:
                    continue
                out = str(work / f"out-{name}")
                t0 = time.perf_counter()
                if name == "tailor":
                    br = tailor_build(raw, out, prep.windows, warm_raw, work)
                    secs = br.seconds
                    if br.exit_code != 0:
                        res.build_notes.append(f"round {i + 1}: tailor build exit {br.exit_code}")
                    for st, v in br.stages.items():
                        res.stages.setdefault(st, Runs()).add(v)
                    _mem(res, "1×", br)
                else:
                    job = peers.Job(prep.raw_points, out)
                    if name == "duckdb":
                        peers.run_duckdb(job, con)
                    elif name == "polars":
                        peers.run_polars(job)
                    else:
                        peers.run_spark(job, spark)
                    secs = time.perf_counter() - t0
                if i == 0:
                    files = (verify.tailor_files(out) if name == "tailor"
                             else verify.hive_files(out))
                    chk = verify.compare(name, files, prep.reference,
                                         exact_nan=name == "tailor")
                    res.checks[name] = chk
                    log(f"check {name}: {'OK' if chk.ok else 'FAILED'} {chk.chunks} chunks "
                        f"{chk.rows:,} rows {chk.problems[:2]}")
                    if name in ("tailor", "duckdb"):
                        keep = work / f"keep-{name}"
                        shutil.rmtree(keep, ignore_errors=True)
                        shutil.copytree(out, keep)
                res.build.setdefault(name, Runs()).add(secs)
                res.load.append(os.getloadavg()[0])
                log(f"build round {i + 1} {name}: {secs:.2f} s (load {res.load[-1]:.2f})")
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if spark is not None:
            spark.stop()
        con.close()
    # One end-to-end CLI run for reference: interpreter, imports, LocalCluster start included.
    out = str(work / "out-cli")
    w0, w1 = layout.stamp(prep.windows[0]), layout.stamp(prep.windows[-1] + layout.WINDOW_SECONDS)
    cmd = [sys.executable, "-m", "tailor", "build", "--raw", raw, "--out", out, "--all-shards",
           "--windows", f"{w0}..{w1}"]
    t0 = time.perf_counter()
    with open(work / "build.log", "ab") as logf:
        rc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, timeout=3600,
                            check=False).returncode
    res.cli_build = (time.perf_counter() - t0, rc, " ".join(["tailor", *cmd[3:]]))
    log(f"CLI tailor build: {res.cli_build[0]:.2f} s, exit {rc}")
    shutil.rmtree(out, ignore_errors=True)


def _tiny_points(prep: Prepared, work: Path) -> str:
    import pyarrow.parquet as pq

    path = str(work / "points-tiny.parquet")
    pf = pq.ParquetFile(prep.raw_points)
    pq.write_table(pf.read_row_group(0).slice(0, 20_000), path)
    return path


def size_bench(prep: Prepared, work: Path, res: Results) -> None:
    tfiles = verify.tailor_files(work / "keep-tailor")
    dfiles = verify.hive_files(work / "keep-duckdb")
    rows = sum(t.num_rows for t in prep.reference.values())
    g = gorilla.GorillaSize(0, 0, 0)
    for (_shard, ws), t in sorted(prep.reference.items()):
        if not t.num_rows:
            continue
        t = verify.normalize(t)
        org, metric, ctx, ts, val = (t.column(c).to_numpy() for c in verify.COLUMNS)
        g = g + gorilla.encode_size(org, metric, ctx, ts, val, ws)
    s_bytes = verify.files_bytes(tfiles)
    res.size = {
        "rows": rows, "series_blocks": g.series_blocks,
        "tailor": s_bytes, "gorilla_streams": g.stream_bytes, "gorilla_keys": g.key_bytes,
        "gorilla_total": g.total_bytes, "duckdb": verify.files_bytes(dfiles),
        "tailor_files": sum(len(v) for v in tfiles.values()),
    }
    shutil.rmtree(work / "keep-duckdb", ignore_errors=True)


def profile_build(prep: Prepared, raw: str, warm_raw: str, work: Path, res: Results) -> None:
    """One extra (untimed) 1× build with py-spy on both workers and the scheduler."""
    from benchmarks.profile import inclusive, merge, top_frames

    out = str(work / "out-profile")
    try:
        br = tailor_build(raw, out, prep.windows, warm_raw, work,
                          profile=str(work / "build.pyspy"))
    except (RuntimeError, OSError) as exc:
        res.profile_note = f"py-spy profile failed: {exc}"
        return
    workers = merge([p for r, p in br.profiles if r == "worker"],
                    str(work / "build.pyspy-workers.txt"))
    res.profile = top_frames(workers, 15)
    res.profile_inclusive = inclusive(workers, r"\((decode|read|merge|encode|publish|graph|"
                                               r"plan|framing|payload|storage)\.py\)", 20)
    res.profile_note = (f"`py-spy record --rate 100` attached to both workers during one "
                        f"extra build of the 1× data ({br.seconds:.2f} s; on-CPU samples only, "
                        f"merged: {workers}).  Shares are of all worker samples.")
    shutil.rmtree(out, ignore_errors=True)


#: Label suffix of the memory builds whose workers run with Dask's malloc settings.
MALLOC_NOTE = ", Dask's malloc settings"


def scale10(a: argparse.Namespace, work: Path, warm_raw: str, res: Results, raw1: str) -> None:
    """Tailor alone on 10× the points over the same windows.

    One synth stream of 10× the points does not fit this machine's memory
    (synth holds every point and record at once), so the 10× dataset is ten
    independent synth streams (seeds ``seed .. seed+9``, each ``--points``)
    written one after the other into one raw store, with one Kafka offset
    sequence per partition.  Their series ids are random u64s, so streams do
    not share points; the oracle is :func:`tailor.synth.oracle` over the union
    of their valid payloads, computed 8 shards at a time to bound memory.
    """
    import numpy as np

    from tailor.config import StoreConfig
    from tailor.shards import ShardMap
    from tailor.storage import Store
    from tailor.synth import oracle

    n = a.points * 10
    log(f"10× dataset: {n:,} points as 10 synth streams of {a.points:,}")
    raw = str(work / "raw-10x")
    shutil.rmtree(raw, ignore_errors=True)
    store, smap = Store(StoreConfig(url=raw)), ShardMap()
    offsets: dict[tuple[str, int], int] = {}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    n_obj = records = 0
    t0 = time.perf_counter()
    for k in range(10):
        s = synth(a.points, a.seed + k)
        n_obj += dataset.write_raw_objects(dataset.iter_valid(s.records), store, smap,
                                           offsets=offsets)
        records += len(s.records)
        parts.append((s.points, np.asarray(s.pay_org), np.asarray(s.pay_intake_ns),
                      np.asarray(s.pay_n)))
        del s
        log(f"10× dataset: stream {k + 1}/10 written")
    ref: dict[verify.ChunkKey, Any] = {}
    groups = 8
    for g in range(groups):
        pts, org, intake, cnt = [], [], [], []
        for p_pts, p_org, p_intake, p_n in parts:
            sel = (p_org % smap.shared_shards) % groups == g
            pts.append(p_pts[np.repeat(sel, p_n)])
            org.append(p_org[sel])
            intake.append(p_intake[sel])
            cnt.append(p_n[sel])
        got = oracle(np.concatenate(pts), np.concatenate(org), np.concatenate(intake),
                     np.concatenate(cnt), smap, layout.WINDOW_SECONDS)
        ref.update({(verify.shard_number(sh), int(ws)): t for (sh, ws), t in got.items()})
    del parts
    gen_s = time.perf_counter() - t0
    rows = sum(t.num_rows for t in ref.values())
    windows = sorted({ws for _, ws in ref})
    log(f"10× dataset: {records:,} records, {rows:,} S-file rows, {n_obj} raw objects "
        f"(prepared in {gen_s:.0f} s)")
    runs = Runs()
    for i in range(a.runs10):
        out = str(work / "out-10x")
        br = tailor_build(raw, out, windows, warm_raw, work)
        runs.add(br.seconds)
        _mem(res, "10×", br)
        for st, v in br.stages.items():
            res.stages10.setdefault(st, Runs()).add(v)
        res.load.append(os.getloadavg()[0])
        if i == 0:
            chk = verify.compare("tailor 10×", verify.tailor_files(out), ref)
            res.checks["tailor 10×"] = chk
            log(f"check tailor 10×: {'OK' if chk.ok else 'FAILED'} {chk.problems[:2]}")
        log(f"10× build round {i + 1}: {br.seconds:.2f} s")
        shutil.rmtree(out, ignore_errors=True)
        res.scale10 = {"points": n, "rows": rows, "records": records, "build": runs,
                       "raw": f"written directly by the harness from 10 synth streams "
                              f"(seeds {a.seed}..{a.seed + 9}, {a.points:,} points each; "
                              f"{n_obj} objects; no Kafka at 10×)"}
        save(res)
    if a.memory_rpp:
        for dask_malloc in (False, True):
            label = f"--rows-per-partition {a.memory_rpp:,}" + (MALLOC_NOTE if dask_malloc
                                                                 else "")
            for scale, src in (("1×", raw1), ("10×", raw)):
                out = str(work / "out-mem")
                br = tailor_build(src, out, windows, warm_raw, work,
                                  rows_per_partition=a.memory_rpp, dask_malloc=dask_malloc)
                _mem(res, f"{scale}, {label}", br)
                log(f"memory build {scale} {label}: {br.seconds:.2f} s, exit {br.exit_code}")
                shutil.rmtree(out, ignore_errors=True)
        save(res)
    shutil.rmtree(raw, ignore_errors=True)


# -- RESULTS.md -----------------------------------------------------------------------


def _machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = [f"python {platform.python_version()}"]
    for pkg in ("dask", "distributed", "numba", "pyarrow", "duckdb", "polars", "pyspark",
                "aiokafka"):
        try:
            versions.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            versions.append(f"{pkg} (not installed)")
    return [f"- CPU: {cpu}, {psutil.cpu_count()} logical cores; "
            f"RAM {psutil.virtual_memory().total / 2**30:.0f} GiB; {platform.platform()}",
            f"- {', '.join(versions)}"]


def render(res: Results) -> str:
    d = res.dataset
    L: list[str] = ["# Benchmarks: Tailor side by side with its peers", "",
                    "Tables generated by `python -m benchmarks` (issue 5); a re-run replaces this "
                    "file.  A hand-written reading of the run may follow the tables.", "",
                    "## Command", "", f"    {res.command}", "",
                    "(`make bench BENCH_ARGS='...'` runs the same.)", "", "## Machine", ""]
    L += _machine()
    if res.load:
        L.append(f"- load average (1 min), sampled at start, after every timed build and at "
                 f"the end: {min(res.load):.2f}–{max(res.load):.2f} (median "
                 f"{Runs(res.load).median:.2f}); 4 other engineers share these 2 cores, so "
                 "every timing carries their noise")
    L += ["", "## Dataset", ""]
    if d:
        L += [f"- `tailor.synth` seed {res.args['seed']}: {d['points_target']:,} points asked, "
              f"{d['records']:,} Kafka records ({d['valid']:,} valid, {d['invalid']:,} invalid), "
              f"{d['points']:,} points in valid payloads (duplicates included), "
              f"{d['rows']:,} S-file rows in {d['chunks']} chunks",
              f"- windows {', '.join(d['windows'])} (4 h), 64 shared shards; "
              f"{d['payload_bytes'] / 1e6:.1f} MB of valid payloads (zstd), "
              f"decoded points Parquet for the peers {d['raw_points_bytes'] / 1e6:.1f} MB",
              f"- generation took {d['gen_s']:.1f} s (not timed in anything below)"]
    L += ["", "## Correctness (before any time counts)", "",
          "| system | chunks | rows | same rows as the oracle, sorted, unique |",
          "|---|---|---|---|"]
    for name, c in res.checks.items():
        nan = (f" (but {c.nan_payload_rows} values lost their bits: NaN payload or -0.0 sign)"
               if c.nan_payload_rows else "")
        L.append(f"| {name} | {c.chunks} | {c.rows:,} | "
                 f"{'yes' + nan if c.ok else 'NO: ' + '; '.join(c.problems[:3])} |")
    L += ["", "Tailor is checked bit for bit (NaN payloads and -0.0 included, as contracts.md "
          "asks); a peer that canonicalises such values (DuckDB's aggregation does) is noted, "
          "not failed."]
    L += ["", "## Build", "",
          "Wall seconds from raw objects / decoded points to the per-shard/window sorted, "
          "deduplicated Parquet output; median of the runs (min–max).  Tailor runs "
          "`tailor.compute.build.run` against a warm LocalCluster (2 worker processes × "
          "1 thread) and decodes zstd frames itself; the peers start from the decoded "
          "points (decoding not counted).  Cluster / JVM start-up is excluded for all.", "",
          "| system | runs | seconds | points/s (median) |", "|---|---|---|---|"]
    pts = d.get("points", 0)
    for name, r in res.build.items():
        ok = res.checks.get(name)
        flag = "" if ok is None or ok.ok else " (output WRONG: time does not count)"
        L.append(f"| {name}{flag} | {r.n} | {r.fmt()} | "
                 f"{pts / r.median:,.0f} |" if r.n else f"| {name} | 0 | – | – |")
    L += [f"- {n}" for n in res.build_notes]
    if res.cli_build:
        secs, rc, cmd = res.cli_build
        L.append(f"- one end-to-end `{cmd}` (interpreter, imports and its own LocalCluster "
                 f"start included): {secs:.2f} s, exit code {rc}")
    t = res.build.get("tailor")
    if t and t.n:
        fast = [res.build[p].median for p in ("duckdb", "polars") if p in res.build]
        L += ["", "Ratios (peer median / Tailor median; > 1 means Tailor is faster):", ""]
        for p in PEERS:
            if p in res.build:
                L.append(f"- vs {p}: {fmt_ratio(ratio(res.build[p].median, t.median))}")
        if fast:
            L.append(f"- vs the faster of DuckDB/Polars: "
                     f"{fmt_ratio(ratio(min(fast), t.median))} (target ≥ 3×)")
        if "spark" in res.build:
            L.append(f"- vs PySpark: {fmt_ratio(ratio(res.build['spark'].median, t.median))} "
                     "(target ≥ 15×)")
    if res.stages:
        L += ["", "## Build stages", "",
              "Seconds per `context_meter` label summed over both workers (Dask fine "
              "performance metrics, `execute` activities), per run: median (min–max).  "
              "Worker-seconds: with 2 workers the wall time is about half the sum.", "",
              "Tailor's own stages are the labels of tailor/metrics.py; the rest are Dask's: "
              "`thread-cpu` / `thread-noncpu` is task time outside any Tailor meter, "
              "`executor` / `other` is Dask overhead around tasks.", "",
              "| stage | worker-seconds | share |", "|---|---|---|"]
        from tailor.metrics import STAGES

        total = sum(r.median for r in res.stages.values())
        for st, r in sorted(res.stages.items(), key=lambda kv: -kv[1].median):
            name = f"**{st}**" if st in STAGES else f"{st} (dask)"
            L.append(f"| {name} | {r.fmt()} | {100 * ratio(r.median, total):.1f}% |")
    if res.profile:
        L += ["", "## Profile of one build (py-spy)", "", res.profile_note, "",
              "| self time | function |", "|---|---|"]
        L += [f"| {100 * share:.1f}% | `{fn}` |" for fn, share in res.profile]
        if res.profile_inclusive:
            L += ["", "Tailor functions by share of all samples they are on (inclusive):", "",
                  "| inclusive | function |", "|---|---|"]
            L += [f"| {100 * share:.1f}% | `{fn}` |" for fn, share in res.profile_inclusive]
    if res.ingest:
        L += ["", "## Ingest", "",
              "Per round: one `tailor ingest --exit-when-idle` process (fresh consumer group, "
              "fresh raw store: a local directory), one bare aiokafka fetch loop "
              "(`getmany`, no processing) and the same loop also running the contract's "
              "payload checks on every fetch (`tailor.batchcheck.check` inline: zstd "
              "decompression of every payload, header/key/org checks; no writes) over the "
              "same topics of one Tansu broker.  "
              "Throughput from the first consumed records to the last (the records of the "
              "first observation are not counted); MB are 10^6 bytes of zstd payloads "
              "(valid payloads for ingest, every record for the bare loop).  "
              "End-to-end: process start to clean exit (durable, committed) less the idle wait.",
              "", "| system | MB/s | payloads/s | seconds | end-to-end s |",
              "|---|---|---|---|---|"]
        for name, m in res.ingest.items():
            def f(k: str, unit: str = "", digits: int = 1, m: dict[str, Runs] = m) -> str:
                return m[k].fmt(unit, digits) if k in m else "–"
            L.append(f"| {name} | {f('MB/s')} | {f('payloads/s', '', 0)} | {f('seconds', 's', 2)} "
                     f"| {f('end-to-end s', 's', 2)} |")
        ti, bf = res.ingest.get("tailor ingest", {}), res.ingest.get("bare aiokafka fetch", {})
        if "MB/s" in ti and "MB/s" in bf:
            L.append("")
            L.append(f"Ratio tailor ingest / bare fetch (MB/s medians): "
                     f"{fmt_ratio(ratio(ti['MB/s'].median, bf['MB/s'].median))} "
                     "(target ≥ 0.8×)")
        bv = res.ingest.get("bare fetch + validation", {})
        if "MB/s" in ti and "MB/s" in bv:
            L.append(f"Ratio tailor ingest / bare fetch + validation (MB/s medians): "
                     f"{fmt_ratio(ratio(ti['MB/s'].median, bv['MB/s'].median))}")
        L += [f"- {n}" for n in res.ingest_notes]
        if res.ingest_profile:
            L += ["", "Ingester profile (py-spy, on-CPU, whole process), self time:", "",
                  "| self | function |", "|---|---|"]
            L += [f"| {100 * sh:.1f}% | `{fn}` |" for fn, sh in res.ingest_profile]
            L += ["", "Inclusive:", "", "| inclusive | function |", "|---|---|"]
            L += [f"| {100 * sh:.1f}% | `{fn}` |" for fn, sh in res.ingest_profile_inclusive]
    if res.size:
        s = res.size
        rows = s["rows"]
        L += ["", "## Size", "",
              f"Bytes per point over the {rows:,} S-file rows ({s['series_blocks']:,} "
              "series × window blocks).  Gorilla: the paper's scheme per series and "
              "window, each stream padded to a byte (benchmarks/gorilla.py); "
              "\"+ keys\" adds the 20-byte series key per block that an S file also carries.",
              "", "| encoding | bytes | bytes/point |", "|---|---|---|",
              f"| Tailor S files ({s['tailor_files']} Parquet files) | {s['tailor']:,} | "
              f"{s['tailor'] / rows:.3f} |",
              f"| Gorilla streams only | {s['gorilla_streams']:,} | "
              f"{s['gorilla_streams'] / rows:.3f} |",
              f"| Gorilla + keys | {s['gorilla_total']:,} | {s['gorilla_total'] / rows:.3f} |",
              f"| DuckDB default Parquet (same chunks) | {s['duckdb']:,} | "
              f"{s['duckdb'] / rows:.3f} |", "",
              f"- S files / Gorilla + keys: {fmt_ratio(ratio(s['tailor'], s['gorilla_total']))}; "
              f"/ Gorilla streams only: {fmt_ratio(ratio(s['tailor'], s['gorilla_streams']))} "
              "(target ≤ 1.0×)",
              f"- S files / DuckDB default Parquet: "
              f"{fmt_ratio(ratio(s['tailor'], s['duckdb']))}"]
    if res.memory:
        L += ["", "## Memory", "",
              "Peak RSS per process (psutil, sampled every 50 ms), median over runs of the "
              "largest process of each role.  scheduler+client: the build process "
              "(LocalCluster scheduler and the client); worker: each Dask worker process.", "",
              "| points | process | peak RSS |", "|---|---|---|"]
        for scale, m in res.memory.items():
            for label, r in sorted(m.items()):
                L.append(f"| {scale} | {label} | {mib(r.median)} "
                         f"({mib(r.lo)}–{mib(r.hi)}) |")
        L.append("")
        rpp = f", --rows-per-partition {res.args.get('memory_rpp') or 0:,}"
        for suffix in ("", rpp, rpp + MALLOC_NOTE):
            w1 = res.memory.get(f"1×{suffix}", {}).get("worker")
            w10 = res.memory.get(f"10×{suffix}", {}).get("worker")
            if w1 and w10:
                L.append(f"- worker peak 10× / 1×{suffix or ' (defaults)'}: "
                         f"{fmt_ratio(ratio(w10.median, w1.median))} (target: flat)")
        if rpp.strip(", ") and any(MALLOC_NOTE in k for k in res.memory):
            L += ["", "A task holds at most about `--rows-per-partition` points, so with the "
                  "bound below the biggest chunk at both scales the data a worker holds is "
                  "the same.  Tailor starts its workers with `MALLOC_MMAP_THRESHOLD_=16MiB` "
                  "(arrays reuse heap pages instead of faulting in fresh mmaps: faster, see "
                  "compute/build.py) and ends every heavy task with `malloc_trim`; what "
                  "growth remains is heap fragmentation inside a task.  The last builds run "
                  "with Dask's settings (every array above 128 KiB its own mmap) to separate "
                  "the two.  With the defaults, 1× has no task near the bound, so its peak "
                  "is lower than the bound, not the 10× peak higher."]
    if res.scale10:
        s10 = res.scale10
        b10: Runs = s10["build"]
        L += ["", "## 10× points", "",
              f"{s10['points']:,} points asked, {s10['rows']:,} S-file rows; raw objects "
              f"{s10['raw']}.", "", "| points | build seconds |", "|---|---|"]
        if t:
            L.append(f"| 1× | {t.fmt()} |")
        L.append(f"| 10× | {b10.fmt()} |")
        if t and t.n:
            L += ["", f"Time 10× / 1×: {fmt_ratio(ratio(b10.median, t.median))} "
                      "(target ≤ 11×)"]
        if res.stages10:
            L += ["", "Stages at 10× (worker-seconds, median):", "",
                  "| stage | 1× | 10× | 10× / 1× |", "|---|---|---|---|"]
            for st, r in sorted(res.stages10.items(), key=lambda kv: -kv[1].median):
                one = res.stages.get(st)
                L.append(f"| {st} | {one.fmt() if one else '–'} | {r.fmt()} | "
                         f"{fmt_ratio(ratio(r.median, one.median)) if one else '–'} |")
    L.append("")
    return "\n".join(L)
