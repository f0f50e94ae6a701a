"""Scale suite: 10× the points (100M at the default), the warm CLI beside the peers.

The 10× dataset is ten synth streams written straight to a raw store (no
Kafka) and to one points file for the peers (:func:`benchmarks.workload.
prepare_scaled`).  Every run is checked bit for bit against the 10× oracle.
A peer that fails (out of memory, a crash, a wrong output) is shown with its
reason and left out of the ratio, which is against the best peer that
completes; a peer above :data:`PEER_RSS_LIMIT` of RSS is stopped there.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from benchmarks import peers
from benchmarks.names import IN_PROCESS, WARM
from benchmarks.results import Results, Section
from benchmarks.suites import Contender, run_rounds, tailor_files
from benchmarks.suites.build import TailorCli, inprocess_contender, peer_contender
from benchmarks.workload import Scaled, log, prepare_scaled

#: A peer whose process tree holds more RSS than this at 10× is stopped and shown
#: as not completing: the machine has 24 GiB, and the rest is the OS's and the
#: harness's (the kernel's OOM killer stopped DataFusion at 18.6 GiB of anon RSS
#: in one run, with 20 GiB here).
PEER_RSS_LIMIT = 18 * 2**30


def run(a: argparse.Namespace, work: Path, warm_raw: str, res: Results,
        save: Callable[[], None]) -> Scaled:
    k = 10
    log(f"{k}× dataset: {a.points * k:,} points as {k} synth streams of {a.points:,}")
    engines = [e for e in a.scale_peers.split(",") if e.strip()]
    sc = prepare_scaled(a.points, k, a.seed, work, points_file=bool(engines))
    sec = res.scale = Section(points=sc.points)
    sec.facts = {"points_target": sc.points_target, "rows": sc.rows, "records": sc.records,
                 "objects": sc.objects, "gen_s": sc.gen_s,
                 "raw": f"written directly by the harness from {k} synth streams (seeds "
                        f"{a.seed}..{a.seed + k - 1}, {a.points:,} points each; "
                        f"{sc.objects} objects; no Kafka at {k}×)"}
    log(f"{k}× dataset: {sc.records:,} records, {sc.rows:,} S-file rows, {sc.objects} raw "
        f"objects (prepared in {sc.gen_s:.0f} s)")
    cache = str(work / "numba-cache")
    os.makedirs(cache, exist_ok=True)
    cli = TailorCli(sc.raw, sc.windows, work)
    contenders = [Contender(WARM, "tailor",
                            lambda rnd, o: cli.run(rnd, o, cache=cache, startup_cache=cache,
                                                   scheduler=None),
                            tailor_files, "warm-10x",
                            startup="one chunk of an empty raw store, warm numba cache")]
    contenders.append(inprocess_contender(sc.raw, sc.windows, warm_raw, work, cache, sec))
    for e in engines:
        why = peers.missing(e)
        if why:
            sec.notes.append(f"{e}: not run, {why}")
            continue
        contenders.append(peer_contender(e, sc.raw_points, work, scale=f"{k}×", res=res,
                                         rss_limit=PEER_RSS_LIMIT))
    run_rounds(sec, contenders, a.runs10, sc.reference, work, res, save)
    w = sec.get(WARM)
    for r in w.runs if w else []:
        for key, v in r.extra.items():
            if key.startswith("peak_rss "):
                res.add_memory(f"{k}×", key.removeprefix("peak_rss "), v)
    if sec.get(IN_PROCESS) is None:
        sec.notes.append("no in-process build at 10×: no stage timers")
    if sc.raw_points:
        os.unlink(sc.raw_points)
    return sc
