"""RESULTS.md from a results document: ``python -m benchmarks render results.json``.

Pure: reads :class:`benchmarks.results.Results`, measures nothing.  Every
median and ratio comes from :mod:`benchmarks.accounting` (only counted runs;
systems with a run that does not count are in no ratio) and every target
from :mod:`benchmarks.targets`.
"""

from __future__ import annotations

from typing import Any

from benchmarks import accounting as acc
from benchmarks import peers, targets
from benchmarks.names import (
    BARE,
    BARE_VALID,
    COLD,
    FIRST_RUN,
    IN_PROCESS,
    INGEST,
    SCHEDULER,
    WARM,
)
from benchmarks.results import Profile, Results, Section, System
from benchmarks.stats import Runs, fmt_ratio, mib, ratio

MALLOC_NOTE = ", Dask's malloc settings"


def _runs_cell(s: System) -> str:
    n_ok = sum(1 for r in s.runs if acc.counts(r))
    return f"{n_ok}/{len(s.runs)}"


def _share(s: System) -> str:
    st = acc.figure(s, "startup_s")
    wall = acc.seconds(s)
    if not st.n or not wall.n:
        return "–"
    return f"{st.median:.2f} s ({100 * ratio(st.median, wall.median):.0f}%)"


def _published(s: System) -> str:
    p = acc.figure(s, "published_s")
    return p.fmt() if p.n else "–"


def _name(s: System) -> str:
    why = acc.excluded(s)
    return s.name if why is None else f"{s.name} (**does not count**: {why})"


def _ratio_line(label: str, r: acc.Ratio, target: targets.Target | None = None, *,
                show_over: bool = True) -> str:
    if r.missing:
        return f"- {label}: – ({r.missing})"
    against = f" ({r.over})" if r.over and show_over else ""
    return f"- {label}{against}: " + (target.verdict(r.value) if target else fmt_ratio(r.value))


def build_table(sec: Section) -> list[str]:
    out = ["| system | runs that count | wall seconds | points/s | start-up (share) | "
           "\"published in\" |", "|---|---|---|---|---|---|"]
    for s in sec.systems:
        secs = acc.seconds(s)
        pps = f"{sec.points / secs.median:,.0f}" if secs.n and secs.median > 0 else "–"
        wall = secs.fmt()
        ran = Runs([r.seconds for r in s.runs if r.exit_code == 0])
        if not secs.n and ran.n:  # shown for the record, in no median or ratio
            wall = f"*{ran.fmt()}, not counted*"
        out.append(f"| {_name(s)} | {_runs_cell(s)} | {wall} | {pps} | {_share(s)} | "
                   f"{_published(s)} |")
    return out


def correctness(sections: list[tuple[str, Section]]) -> list[str]:
    out = ["| suite | system | runs checked | chunks | rows | every run equal to the oracle, "
           "bit for bit |", "|---|---|---|---|---|---|"]
    for label, sec in sections:
        for s in sec.systems:
            checked = sum(1 for r in s.runs if r.checked)
            why = acc.excluded(s)
            out.append(f"| {label} | {s.name} | {checked}/{len(s.runs)} | {s.chunks} | "
                       f"{s.rows:,} | {'yes' if why is None else 'NO: ' + why} |")
    return out


def build_ratios(sec: Section) -> list[str]:
    out = ["Ratios (medians of counted runs; peer / Tailor, > 1 means Tailor is faster):", ""]
    best = acc.best_peer(sec)
    out.append(_ratio_line("**warm CLI vs the best peer**", acc.speedup(sec, WARM),
                           targets.BUILD_WARM))
    out.append(_ratio_line("first run after install / warm CLI (lower is better)",
                           acc.slowdown(sec, FIRST_RUN, WARM), targets.BUILD_FIRST_RUN,
                           show_over=False))
    out.append(_ratio_line("--scheduler (running cluster) vs the best peer",
                           acc.speedup(sec, SCHEDULER), targets.BUILD_SCHEDULER))
    out.append(_ratio_line("first run after install vs the best peer",
                           acc.speedup(sec, FIRST_RUN)))
    if sec.get(COLD) is not None:
        out.append(_ratio_line("empty numba cache / warm CLI", acc.slowdown(sec, COLD, WARM),
                               show_over=False))
    spark = sec.get("spark")
    if spark is not None:
        out.append(_ratio_line("warm CLI vs PySpark", acc.speedup(sec, WARM, spark),
                               targets.BUILD_VS_SPARK))
    for s in sec.systems:
        if s.kind == "peer" and s is not best and s.name != "spark":
            out.append(_ratio_line(f"warm CLI vs {s.name}", acc.speedup(sec, WARM, s),
                                   show_over=False))
    if sec.get(IN_PROCESS) is not None:
        out.append(_ratio_line("extra, not a headline: in-process build vs the best peer",
                               acc.speedup(sec, IN_PROCESS)))
    return out


def stages(sec: Section, title: str) -> list[str]:
    if not sec.stages:
        return []
    from tailor.metrics import STAGES

    runs = {k: Runs(v) for k, v in sec.stages.items()}
    total = sum(r.median for r in runs.values())
    out = ["", title, "",
           "Seconds per `context_meter` label summed over both workers (Dask fine performance "
           "metrics, `execute` activities) of the in-process builds, per run: median "
           "(min–max).  Worker-seconds: with 2 workers the wall time is about half the sum.  "
           "Tailor's own stages are the labels of tailor/metrics.py; the rest are Dask's: "
           "`thread-cpu` / `thread-noncpu` is task time outside any Tailor meter, `executor` / "
           "`other` is Dask overhead around tasks.", "",
           "| stage | worker-seconds | share |", "|---|---|---|"]
    for st, r in sorted(runs.items(), key=lambda kv: -kv[1].median):
        name = f"**{st}**" if st in STAGES else f"{st} (dask)"
        out.append(f"| {name} | {r.fmt()} | {100 * ratio(r.median, total):.1f}% |")
    return out


def profile(p: Profile | None, title: str, pattern_note: str) -> list[str]:
    if p is None:
        return []
    out = ["", title, "", p.note]
    if p.self_time:
        out += ["", "| self time | function |", "|---|---|"]
        out += [f"| {100 * share:.1f}% | `{fn}` |" for fn, share in p.self_time]
    if p.inclusive:
        out += ["", pattern_note, "", "| inclusive | function |", "|---|---|"]
        out += [f"| {100 * share:.1f}% | `{fn}` |" for fn, share in p.inclusive]
    return out


def ingest(sec: Section) -> list[str]:
    out = ["", "## Ingest", "",
           "Per round: one `tailor ingest` process (fresh consumer group, fresh raw store: a "
           "local directory), one bare aiokafka fetch loop (`getmany`, no processing) and the "
           "same loop also running the contract's payload checks on every fetch "
           "(`tailor.format.validate_batch.check` inline, its kernels loaded before the clock "
           "as the ingester loads them before it joins; no writes) over the same topics of one "
           "Tansu "
           "broker.  `tailor ingest`'s clock runs from its first consumed records (read from "
           "its counters; those records are not counted) to the moment the broker shows the "
           "group's committed offsets at the producer's acknowledged end of every partition: "
           "it includes making the data durable.  The harness stops the ingester (SIGTERM) as "
           "soon as its counters show every record consumed; it then seals, writes and "
           "commits as on any stop.  A round counts only if the ingester exited 0, committed "
           "every acknowledged offset, and its raw store holds every valid payload and its "
           "quarantine every invalid one; a bare loop's only if it read every record.  MB "
           "are 10^6 bytes of zstd payloads (valid payloads for ingest, every record for the "
           "bare loops).  End-to-end: process start to exit.", "",
           "| system | runs that count | MB/s | payloads/s | seconds | end-to-end s |",
           "|---|---|---|---|---|---|"]
    for s in sec.systems:
        def f(k: str, unit: str = "", digits: int = 1, s: System = s) -> str:
            r = acc.figure(s, k)
            return r.fmt(unit, digits) if r.n else "–"
        out.append(f"| {_name(s)} | {_runs_cell(s)} | {f('mb_per_s')} | "
                   f"{f('payloads_per_s', '', 0)} | {acc.seconds(s).fmt()} | "
                   f"{f('end_to_end_s', 's', 2)} |")
    ti, bf, bv = sec.get(INGEST), sec.get(BARE), sec.get(BARE_VALID)
    out.append("")
    if acc.eligible(ti) and acc.eligible(bf):
        assert ti is not None and bf is not None
        r = ratio(acc.figure(ti, "mb_per_s").median, acc.figure(bf, "mb_per_s").median)
        out.append(f"- tailor ingest / bare fetch (MB/s medians): "
                   f"{targets.INGEST_VS_BARE.verdict(r)}")
    if acc.eligible(ti) and acc.eligible(bv):
        assert ti is not None and bv is not None
        r = ratio(acc.figure(ti, "mb_per_s").median, acc.figure(bv, "mb_per_s").median)
        out.append(f"- tailor ingest / bare fetch + validation (MB/s medians): {fmt_ratio(r)}")
    out += [f"- {n}" for n in sec.notes]
    return out


def size(s: dict[str, Any]) -> list[str]:
    rows = int(s["rows"])
    t, gs, gt = (int(s[k]) for k in ("tailor", "gorilla_streams", "gorilla_total"))
    out = ["", "## Size", "",
           f"Bytes per point over the {rows:,} S-file rows ({s['series_blocks']:,} series × "
           "window blocks).  Gorilla: the paper's scheme per series and window, each stream "
           "padded to a byte (benchmarks/gorilla.py); \"+ keys\" adds the 20-byte series key "
           "per block that an S file also carries.", "",
           "| encoding | bytes | bytes/point |", "|---|---|---|",
           f"| Tailor S files ({s['tailor_files']} Parquet files) | {t:,} | {t / rows:.3f} |",
           f"| Gorilla streams only | {gs:,} | {gs / rows:.3f} |",
           f"| Gorilla + keys | {gt:,} | {gt / rows:.3f} |"]
    if "duckdb" in s:
        d = int(s["duckdb"])
        out.append(f"| DuckDB default Parquet (same chunks) | {d:,} | {d / rows:.3f} |")
    out += ["", f"- S files / Gorilla streams only: "
                f"{targets.SIZE_VS_GORILLA.verdict(ratio(t, gs))}; / Gorilla + keys: "
                f"{fmt_ratio(ratio(t, gt))}"]
    if "duckdb" in s:
        out.append(f"- S files / DuckDB default Parquet: "
                   f"{fmt_ratio(ratio(t, int(s['duckdb'])))}")
    return out


def memory(res: Results) -> list[str]:
    out = ["", "## Memory", "",
           "Peak RSS per process (psutil, sampled every 50 ms), median over runs (min–max).  "
           "`tailor build`: the CLI process of the warm line (scheduler, client and, with "
           "the CLI's default thread workers, the workers); worker: a Dask worker process "
           "(the memory builds, and the CLI's with `--processes`); a peer: the largest process of "
           "its tree (the JVM for PySpark); scheduler+client / worker with "
           "`--rows-per-partition`: the in-process memory builds.", "",
           "| points | process | peak RSS |", "|---|---|---|"]
    for scale_, m in res.memory.items():
        for label, v in sorted(m.items()):
            r = Runs(v)
            out.append(f"| {scale_} | {label} | {mib(r.median)} ({mib(r.lo)}–{mib(r.hi)}) |")
    rpp = f", --rows-per-partition {res.args.get('memory_rpp') or 0:,}"
    out.append("")
    for suffix in ("", rpp, rpp + MALLOC_NOTE):
        w1 = res.memory.get(f"1×{suffix}", {}).get("worker")
        w10 = res.memory.get(f"10×{suffix}", {}).get("worker")
        if w1 and w10:
            out.append(f"- worker peak 10× / 1×{suffix or ' (defaults)'}: "
                       f"{fmt_ratio(ratio(Runs(w10).median, Runs(w1).median))} (target: flat)")
    return out


def scale(res: Results) -> list[str]:
    sec = res.scale
    if sec is None:
        return []
    f = sec.facts
    out = ["", "## 10× points", "",
           f"{f.get('points_target', 0):,} points asked, {f.get('rows', 0):,} S-file rows; raw "
           f"objects {f.get('raw', '')}.  Every run checked bit for bit against the 10× "
           "oracle; a peer that fails (out of memory, a crash, a wrong output) is shown with "
           "its reason and is not the best peer.", ""]
    out += build_table(sec)
    out += ["", _ratio_line("**warm CLI at 10× vs the best peer that completes**",
                            acc.speedup(sec, WARM), targets.SCALE_VS_PEER)]
    one = res.build.get(WARM) if res.build else None
    ten = sec.get(WARM)
    if acc.eligible(one) and acc.eligible(ten):
        assert one is not None and ten is not None
        t = ratio(acc.seconds(ten).median, acc.seconds(one).median)
        out.append(f"- warm CLI time 10× / 1×: {targets.SCALE_TIME.verdict(t)}")
    failed = [s.name for s in sec.systems if s.kind == "peer" and acc.excluded(s)]
    if failed:
        out.append(f"- peers that did not complete or count at 10×: {', '.join(failed)}")
    out += [f"- {n}" for n in sec.notes]
    out += stages(sec, "### Stages at 10× (in-process build)")
    return out


def headline(res: Results) -> list[str]:
    out = ["## Targets", "", "| target | measured |", "|---|---|"]
    b, s = res.build, res.scale
    rows: list[tuple[targets.Target, acc.Ratio | None]] = [
        (targets.BUILD_WARM, acc.speedup(b, WARM) if b else None),
        (targets.BUILD_FIRST_RUN, acc.slowdown(b, FIRST_RUN, WARM) if b else None),
        (targets.BUILD_SCHEDULER, acc.speedup(b, SCHEDULER) if b else None),
        (targets.SCALE_VS_PEER, acc.speedup(s, WARM) if s else None),
    ]
    for t, r in rows:
        if r is None:
            cell = "not run"
        elif r.missing:
            cell = f"– ({r.missing})"
        else:
            cell = t.verdict(r.value) + (f" against {r.over}" if r.over and t is not
                                         targets.BUILD_FIRST_RUN else "")
        out.append(f"| {t.what} | {cell} |")
    return out


def render(res: Results) -> str:
    d = res.dataset
    out: list[str] = [
        "# Benchmarks: Tailor side by side with its peers", "",
        "Generated by `python -m benchmarks` from `results.json` (`python -m benchmarks render "
        "results.json` redraws it); a re-run replaces this file.  A hand-written reading of "
        "the run may follow the tables.", "",
        "## Command", "", f"    {res.command}", "",
        "(`make bench BENCH_ARGS='...'` runs the same.)", "", "## Machine", ""]
    out += [f"- {m}" for m in res.machine]
    if res.load:
        r = Runs(res.load)
        out.append(f"- load average (1 min), sampled at start, after every timed run and at the "
                   f"end: {r.lo:.2f}–{r.hi:.2f} (median {r.median:.2f}); other work on the "
                   "machine adds its noise to every timing")
    out += ["", "## Dataset", ""]
    if d:
        out += [f"- `tailor.testing.stream` seed {res.args.get('seed', 0)}: "
                f"{d['points_target']:,} points "
                f"asked, {d['records']:,} Kafka records ({d['valid']:,} valid, "
                f"{d['invalid']:,} invalid), {d['points']:,} points in valid payloads "
                f"(duplicates included), {d['rows']:,} S-file rows in {d['chunks']} chunks",
                f"- windows {', '.join(d['windows'])} (4 h), 64 shared shards; "
                f"{d['payload_bytes'] / 1e6:.1f} MB of valid payloads (zstd), decoded points "
                f"Parquet for the peers {d['raw_points_bytes'] / 1e6:.1f} MB",
                f"- generation took {d['gen_s']:.1f} s (not timed in anything below)"]
    out += ["", *headline(res)]
    secs = [(lbl, sec) for lbl, sec in (("build", res.build), ("10×", res.scale)) if sec]
    if secs:
        out += ["", "## Correctness (before any time counts)", "",
                "Every timed run's output is read back (Tailor's through its manifests, in "
                "manifest order; a peer's per chunk directory) and compared row for row and "
                "bit for bit (NaN payloads and -0.0 included) with the synth oracle before its "
                "time counts.  A run with a non-zero exit or a wrong output never counts, and "
                "its system is in no ratio.", ""]
        out += correctness(secs)
    if res.build:
        sec = res.build
        out += ["", "## Build", "",
                "Wall seconds of a whole process, exec to exit, from raw objects (Tailor) or "
                "decoded points (the peers; decoding not counted) to the per-shard/window "
                "sorted, deduplicated Parquet output; median of the counted runs (min–max).  "
                "Systems run round by round, the order rotating each round.  "
                f"Tailor lines: *{FIRST_RUN}*: a fresh empty numba cache (`NUMBA_CACHE_DIR`) "
                "filled by `tailor compile-kernels` as `make` does at install (not timed; "
                "\"install\" below), then the timed build; "
                f"*{COLD}*: a fresh empty cache, as a bare `pip install` leaves it (numba "
                "compiles inside the build); "
                f"*{WARM}*: the cache round 1's install step filled; "
                f"*{SCHEDULER}*: `tailor build --scheduler` against a `dask scheduler` and "
                "`dask worker` the harness started before round 1.  The CLI lines run with "
                "the CLI's defaults (its own LocalCluster, started inside their time); the "
                "peers run on 2 threads.  "
                "Start-up: for a Tailor line, the same command on one chunk of an empty raw "
                "store (its fixed cost); for a peer, wall less its own clock after imports and "
                "session start.  \"published in\": the CLI's own figure (cluster start "
                "included, interpreter start and exit not).", ""]
        out += build_table(sec)
        out += [f"- {n}" for n in sec.notes]
        first = sec.get(FIRST_RUN)
        inst = acc.figure(first, "install_s") if first is not None else Runs()
        if inst.n:
            out.append(f"- install step (`tailor compile-kernels` into an empty cache, not "
                       f"timed in any line): {inst.fmt()}")
        out += ["", *build_ratios(sec)]
        out += ["", "### Peers: how each is written, and its pitfalls", ""]
        out += [f"- **{e}**: {text}" for e, text in peers.PITFALLS.items()
                if sec.get(e) is not None or e in res.args.get("peers", "")]
        out += stages(sec, "## Build stages (in-process extra)")
    out += profile(res.profile, "## Profile of one in-process build (py-spy, extra)",
                   "Tailor functions by share of all samples they are on (inclusive):")
    if res.ingest:
        out += ingest(res.ingest)
        out += profile(res.ingest_profile, "### Ingester profile (py-spy, on-CPU, whole process)",
                       "Inclusive:")
    if res.size:
        out += size(res.size)
    if res.memory:
        out += memory(res)
    out += scale(res)
    out.append("")
    return "\n".join(out)
