"""``python -m benchmarks``: Tailor side by side with its peers, in one run.

    python -m benchmarks [run] [options]     run the suites, write results.json + RESULTS.md
    python -m benchmarks render results.json [-o RESULTS.md]

Steps of ``run``, all in one run so that every ratio compares numbers
measured together (see each suite's module for what it times and checks):

1. dataset: ``tailor.testing.stream`` (default 10M points, 2 windows, 64 shards); its
   valid payloads decoded once to one Parquet file of raw points for the peers;
2. ingest (:mod:`benchmarks.suites.ingest`): a Tansu broker, the records
   produced once, then per round one ``tailor ingest`` and the bare fetch loops;
3. build (:mod:`benchmarks.suites.build`): per round ``tailor build`` as a
   fresh process (first run after install, warm CLI, ``--scheduler``), every
   peer as a fresh process, and the in-process figure as a labelled extra;
4. size; optionally the 10× dataset with its peers and the memory bound
   (``--scale10``) and py-spy profiles (``--profile``);
5. the results as JSON (rewritten after every phase) and RESULTS.md rendered
   from it (:mod:`benchmarks.render`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from pathlib import Path

from benchmarks import names, peers, render
from benchmarks.accounting import excluded
from benchmarks.results import Results
from benchmarks.suites import build, ingest, memory, profile, scale, size
from benchmarks.workload import facts, log, prepare, write_direct

HERE = Path(__file__).resolve().parent


def machine() -> list[str]:
    import psutil

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
    for pkg in ("dask", "distributed", "numba", "pyarrow", "duckdb", "polars", "chdb",
                "datafusion", "pyspark", "aiokafka"):
        try:
            versions.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            versions.append(f"{pkg} (not installed)")
    return [f"CPU: {cpu}, {psutil.cpu_count()} logical cores; "
            f"RAM {psutil.virtual_memory().total / 2**30:.0f} GiB; {platform.platform()}",
            ", ".join(versions)]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000, help="points at 1× (default 10M)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per system (≥3 for medians)")
    ap.add_argument("--peers", default=",".join(peers.ENGINES),
                    help="peer engines, comma-separated (default: %(default)s)")
    ap.add_argument("--tailor-lines", default=",".join(names.LINES),
                    help="Tailor build lines: first (empty numba cache), warm (the headline), "
                         "scheduler (running cluster), inprocess (labelled extra); "
                         "default: %(default)s")
    ap.add_argument("--no-spark", action="store_true", help="drop spark from --peers")
    ap.add_argument("--spark-runs", type=int, default=None, help="PySpark runs (default --runs)")
    ap.add_argument("--scale10", action="store_true",
                    help="also build 10× the points (Tailor and --scale-peers) and show the "
                         "worker memory bound")
    ap.add_argument("--runs10", type=int, default=3, help="timed rounds at 10×")
    ap.add_argument("--scale-peers", default="duckdb,polars,chdb,datafusion",
                    help="peers at 10× (default: %(default)s; PySpark takes many minutes)")
    ap.add_argument("--memory-rpp", type=int, default=1_000_000,
                    help="with --scale10: one more build at 1× and at 10× with this "
                         "--rows-per-partition (0: none), to show the worker memory bound")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/tailor-bench", help="scratch directory (replaced)")
    ap.add_argument("--raw-via", choices=("ingest", "direct"), default="ingest",
                    help="raw objects for the build from the real ingest (default) or "
                         "written directly")
    ap.add_argument("--no-ingest", action="store_true", help="skip the ingest benchmark")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy one extra 1× build and one ingest (needs: pip install py-spy)")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"), help="markdown written here")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="results written here")
    return ap


def run(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    if a.no_spark:
        a.peers = ",".join(e for e in a.peers.split(",") if e.strip() != "spark")
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    res = Results(command="python -m benchmarks " + " ".join(argv), args=vars(a),
                  machine=machine())
    res.load.append(os.getloadavg()[0])

    def save() -> None:
        res.save(a.json)
        Path(a.results).write_text(render.render(res))

    log(f"dataset: {a.points:,} points")
    prep = prepare(a.points, a.seed, work, "1x")
    res.dataset = facts(prep)
    log(f"dataset: {len(prep.records):,} records, {prep.points:,} points, "
        f"{prep.rows:,} S-file rows")
    save()
    raw: str | None = None
    notes: list[str] = []
    if a.raw_via == "ingest" or not a.no_ingest:
        raw = ingest.run(a, prep, work, res, save)
        if raw is None and a.raw_via == "ingest":
            notes.append("no ingest round was complete: raw objects written directly")
    if a.raw_via == "direct" or raw is None:
        if raw:
            shutil.rmtree(raw, ignore_errors=True)
        raw = str(work / "raw-direct")
        n = write_direct(prep.valid, raw)
        notes.append(f"raw objects written directly by the harness ({n} objects; same framing "
                     "and index records as ingest)")
    else:
        notes.append("raw objects from the first complete `tailor ingest` round")
    save()
    build.run(a, prep, raw, work, res, save)
    assert res.build is not None
    res.build.notes[:0] = notes
    save()
    size.run(prep, work, res)
    save()
    warm_raw = str(work / "raw-warmup")
    if not Path(warm_raw).exists():
        warm_raw = build.warm_store(a.seed, work)
    if a.profile:
        res.profile = profile.run(raw, prep.windows, warm_raw, work)
        save()
    if a.scale10:
        windows = prep.windows
        del prep
        sc = scale.run(a, work, warm_raw, res, save)
        if a.memory_rpp:
            memory.run(a.memory_rpp, {"1×": raw, "10×": sc.raw}, windows, warm_raw, work, res)
        shutil.rmtree(sc.raw, ignore_errors=True)
        save()
    res.load.append(os.getloadavg()[0])
    save()
    log(f"wrote {a.json} and {a.results}")
    wrong = [s.name for sec in (res.ingest, res.build, res.scale) if sec for s in sec.systems
             if s.kind == "tailor" and excluded(s)]
    if wrong:
        log(f"Tailor lines that do not count: {', '.join(wrong)}")
    return 1 if wrong else 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["render"]:
        ap = argparse.ArgumentParser(prog="python -m benchmarks render",
                                     description="RESULTS.md from a results JSON file.")
        ap.add_argument("json", help="results.json of a run")
        ap.add_argument("-o", "--out", default=None, help="write here (default: stdout)")
        r = ap.parse_args(args[1:])
        md = render.render(Results.load_file(r.json))
        if r.out:
            Path(r.out).write_text(md)
        else:
            sys.stdout.write(md)
        return 0
    if args[:1] == ["run"]:
        args = args[1:]
    return run(args)
