"""Build suite: ``tailor build`` as users run it, beside the peers, on the same points.

Every line is a whole process timed from exec to exit and checked bit for
bit before its time counts:

- **first run after install**: a fresh empty numba cache (``NUMBA_CACHE_DIR``),
  filled by ``tailor compile-kernels`` as ``make`` does at install (not
  timed; its seconds are shown), then the timed ``tailor build``;
- **empty numba cache**: ``tailor build`` on a fresh empty cache, what a
  bare ``pip install`` gives (numba compiles every kernel inside the build);
- **warm CLI** (the headline): ``tailor build`` with the numba cache the
  first run of round 1 filled;
- **--scheduler**: ``tailor build --scheduler ADDRESS`` against a ``dask
  scheduler`` and ``dask worker --nworkers 2 --nthreads 1`` that the harness
  started before round 1 (no warm-up build: the cluster is just running);
- every peer as ``python -m benchmarks.peers ENGINE`` (2 threads);
- the in-process figure (:mod:`benchmarks.buildrun`: warm LocalCluster,
  warm-up build, only the build timed) as a labelled extra, for the stage
  timers; it is in no headline ratio.

Start-up share: for each Tailor line, a ``tailor build`` of one chunk of an
empty raw store in the same mode (fresh cache for the first run) right after
the real one, i.e. what a build costs before any point is touched; for a
peer, its wall time less its own clock after imports and session start.
Each line also records the CLI's own ``published in X s``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks import dataset, peers, procs
from benchmarks.buildrun import spawn
from benchmarks.memory import Peak
from benchmarks.names import COLD, FIRST_RUN, IN_PROCESS, SCHEDULER, WARM
from benchmarks.results import Results, Run, Section
from benchmarks.suites import Contender, hive_files, run_rounds, tailor_files
from benchmarks.workload import Prepared, log, synth, write_direct
from tailor.format import layout

_PUBLISHED = re.compile(r"published in ([0-9.]+)\s*s")


def published_seconds(output: str) -> float | None:
    """The CLI's own ``published in X s`` figure, if it printed one."""
    found = _PUBLISHED.findall(output)
    return float(found[-1]) if found else None


def window_range(windows: list[int]) -> str:
    return f"{layout.stamp(windows[0])}..{layout.stamp(windows[-1] + layout.WINDOW_SECONDS)}"


def _worker_env() -> dict[str, str]:
    """The malloc settings Tailor's LocalCluster gives its workers (if it still does)."""
    try:
        from tailor.compute.build import WORKER_MALLOC
    except ImportError:
        return {}
    return dict(WORKER_MALLOC)


def memory_of(peaks: list[Peak], root: str) -> dict[str, float]:
    """Peak RSS of the root process and of the largest child."""
    out = {f"peak_rss {root}": float(max((p.rss for p in peaks if p.label == root),
                                         default=0))}
    kids = [p.rss for p in peaks if p.label == "worker"]
    if kids:
        out["peak_rss worker"] = float(max(kids))
    return out


class TailorCli:
    """``tailor build`` over every shard and window of the dataset, one process per run."""

    def __init__(self, raw: str, windows: list[int], work: Path) -> None:
        self.raw, self.windows, self.work = raw, windows, work
        self.empty_raw = work / "raw-empty"
        self.empty_raw.mkdir(parents=True, exist_ok=True)
        self._fresh = 0

    def fresh_cache(self) -> str:
        """A new, empty numba cache directory."""
        self._fresh += 1
        d = self.work / f"numba-fresh-{self._fresh}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return str(d)

    def command(self, out: str, scheduler: str | None, *, empty: bool = False) -> list[str]:
        cmd = [sys.executable, "-m", "tailor", "build", "--out", out]
        if empty:
            cmd += ["--raw", str(self.empty_raw), "--shard", "org-mod-0",
                    "--window", layout.stamp(self.windows[0])]
        else:
            cmd += ["--raw", self.raw, "--all-shards", "--windows", window_range(self.windows)]
        return cmd + (["--scheduler", scheduler] if scheduler else [])

    def compile_kernels(self, cache: str) -> procs.Exited:
        """``tailor compile-kernels`` into ``cache``: the install step ``make`` runs."""
        return procs.timed([sys.executable, "-m", "tailor", "compile-kernels"],
                           label="tailor compile-kernels",
                           env=procs.clean_env({"NUMBA_CACHE_DIR": cache}),
                           log_path=self.work / "build.log")

    def run(self, rnd: int, out: str, *, cache: str, startup_cache: str,
            scheduler: str | None, install: bool = False) -> Run:
        """One timed build; ``install``: run compile-kernels into both caches first
        (untimed, as at install)."""
        installed = 0.0
        if install:
            for c in {cache, startup_cache}:
                k = self.compile_kernels(c)
                if k.exit_code != 0:
                    return Run(round=rnd, seconds=0.0, exit_code=k.exit_code,
                               problems=[f"tailor compile-kernels exited {k.exit_code}"])
                installed = installed or k.seconds
        env = procs.clean_env({"NUMBA_CACHE_DIR": cache})
        e = procs.timed(self.command(out, scheduler), label="tailor build", env=env,
                        log_path=self.work / "build.log")
        run = Run(round=rnd, seconds=e.seconds, exit_code=e.exit_code, reason=e.reason,
                  extra=memory_of(e.peaks, "tailor build"))
        pub = published_seconds(e.output)
        if pub is not None:
            run.extra["published_s"] = pub
        if install:
            run.extra["install_s"] = installed
        # start-up: the same command on one chunk of an empty raw store
        eout = str(self.work / "out-empty")
        shutil.rmtree(eout, ignore_errors=True)
        s = procs.timed(self.command(eout, scheduler, empty=True), label="tailor build",
                        env=procs.clean_env({"NUMBA_CACHE_DIR": startup_cache}),
                        log_path=self.work / "build.log")
        if s.exit_code == 0 and tailor_files(eout):
            run.extra["startup_s"] = s.seconds
        shutil.rmtree(eout, ignore_errors=True)
        return run


def peer_contender(engine: str, points: str, work: Path, *, threads: int = 2,
                   runs: int | None = None, keep: str | None = None,
                   scale: str = "1×", res: Results | None = None,
                   rss_limit: int | None = None) -> Contender:
    def run(rnd: int, out: str) -> Run:
        jpath = work / f"peer-{engine}.json"
        jpath.unlink(missing_ok=True)
        e = procs.timed([sys.executable, "-m", "benchmarks.peers", engine, "--points", points,
                         "--out", out, "--threads", str(threads), "--json", str(jpath)],
                        label=engine, log_path=work / "peers.log", rss_limit=rss_limit)
        r = Run(round=rnd, seconds=e.seconds, exit_code=e.exit_code, reason=e.reason,
                extra={"peak_rss": float(max((p.rss for p in e.peaks), default=0))})
        if e.exit_code == 0 and jpath.exists():
            inner = float(json.loads(jpath.read_text())["seconds"])
            r.extra["inner_s"] = inner
            r.extra["startup_s"] = max(0.0, e.seconds - inner)
        if res is not None and e.exit_code == 0:
            res.add_memory(scale, engine, r.extra["peak_rss"])
        return r

    return Contender(engine, "peer", run, hive_files, f"peer-{engine}", runs=runs, keep=keep,
                     startup="imports and session start: wall less the engine's own clock")


def inprocess_contender(raw: str, windows: list[int], warm_raw: str, work: Path,
                        cache: str, section: Section) -> Contender:
    def run(rnd: int, out: str) -> Run:
        br = spawn(raw, out, windows, warm_raw, work,
                   env=procs.clean_env({"NUMBA_CACHE_DIR": cache}))
        for st, v in br.stages.items():
            section.stages.setdefault(st, []).append(v)
        r = Run(round=rnd, seconds=br.seconds if br.seconds == br.seconds else 0.0,
                exit_code=br.exit_code)
        r.extra["cluster_start_s"] = br.cluster_start_s
        return r

    return Contender(IN_PROCESS, "extra", run, tailor_files, "inprocess",
                     startup="none: cluster start, warm-up build and exit are outside its clock")


def warm_store(seed: int, work: Path) -> str:
    """A tiny raw store for the in-process line's warm-up build."""
    warm = synth(20_000, seed + 1)
    valid, _ = dataset.valid_payloads(list(warm.records))
    path = str(work / "raw-warmup")
    write_direct(valid, path)
    return path


def tailor_contenders(cli: TailorCli, lines: list[str], cache: str, cluster: str | None,
                      keep: str | None) -> list[Contender]:
    """The CLI lines.  ``cache`` is filled by round 1 of the first-run line (its
    install step) before any line uses it warm."""
    out: list[Contender] = []

    def make(scheduler: str | None, cache_for: Callable[[int], str],
             startup_for: Callable[[int], str], install: bool = False
             ) -> Callable[[int, str], Run]:
        return lambda rnd, o: cli.run(rnd, o, cache=cache_for(rnd), startup_cache=startup_for(rnd),
                                      scheduler=scheduler, install=install)

    def warm(rnd: int) -> str:
        return cache

    if "first" in lines:
        out.append(Contender(
            FIRST_RUN, "tailor",
            make(None, lambda rnd: cache if rnd == 1 else cli.fresh_cache(),
                 lambda rnd: cli.fresh_cache(), install=True),
            tailor_files, "first",
            startup="one chunk of an empty raw store, right after its own compile-kernels"))
    if "cold" in lines:
        out.append(Contender(COLD, "tailor", make(None, lambda rnd: cli.fresh_cache(),
                                                  lambda rnd: cli.fresh_cache()),
                             tailor_files, "cold",
                             startup="one chunk of an empty raw store, empty numba cache"))
    if "warm" in lines:
        out.append(Contender(WARM, "tailor", make(None, warm, warm), tailor_files, "warm",
                             keep=keep,
                             startup="one chunk of an empty raw store, warm numba cache"))
    if "scheduler" in lines and cluster:
        out.append(Contender(SCHEDULER, "tailor", make(cluster, warm, warm),
                             tailor_files, "scheduler",
                             startup="one chunk of an empty raw store on the same cluster"))
    return out


def run(a: argparse.Namespace, prep: Prepared, raw: str, work: Path, res: Results,
        save: Callable[[], None]) -> None:
    sec = res.build = res.build or Section(points=prep.points)
    sec.points = prep.points
    lines = [x.strip() for x in a.tailor_lines.split(",") if x.strip()]
    cache = work / "numba-cache"  # empty until round 1's first run fills it
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    cli = TailorCli(raw, prep.windows, work)
    if "first" not in lines:  # nothing else fills the warm cache: install it, untimed
        k = cli.compile_kernels(str(cache))
        sec.notes.append(f"numba cache filled by `tailor compile-kernels` before round 1 "
                         f"({k.seconds:.1f} s, exit {k.exit_code})")
    keep_tailor = str(work / "keep-tailor")
    engines = [e for e in a.peers.split(",") if e.strip()]
    contenders: list[Contender] = []
    cluster = None
    try:
        if "scheduler" in lines:
            env = procs.clean_env({"NUMBA_CACHE_DIR": str(cache), **_worker_env()})
            cluster = procs.DaskCluster(2, env, work / "cluster.log")
            sec.notes.append(f"--scheduler: `dask scheduler` and `dask worker --nworkers 2 "
                             f"--nthreads 1` started before round 1 (workers with the malloc "
                             f"settings of Tailor's LocalCluster, {_worker_env() or 'none'})")
        contenders += tailor_contenders(cli, lines, str(cache),
                                        cluster.address if cluster else None, keep_tailor)
        if "inprocess" in lines:
            contenders.append(inprocess_contender(raw, prep.windows, warm_store(a.seed, work),
                                                  work, str(cache), sec))
        for e in engines:
            why = peers.missing(e)
            if why:
                sec.notes.append(f"{e}: not run, {why}")
                continue
            contenders.append(peer_contender(
                e, prep.raw_points, work, runs=a.spark_runs if e == "spark" else None,
                keep=str(work / "keep-duckdb") if e == "duckdb" else None, res=res))
        log(f"build: {len(contenders)} systems × {a.runs} rounds on {prep.points:,} points")
        run_rounds(sec, contenders, a.runs, prep.reference, work, res, save)
    finally:
        if cluster is not None:
            cluster.close()
    w = sec.get(WARM)
    if w is not None:
        for r in w.runs:
            for k, v in r.extra.items():
                if k.startswith("peak_rss ") or k == "peak_rss worker":
                    res.add_memory("1×", k.removeprefix("peak_rss "), v)
