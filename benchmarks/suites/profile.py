"""Profile suite: py-spy on both workers of one extra (untimed) in-process 1× build."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.buildrun import spawn
from benchmarks.profile import inclusive, merge, top_frames
from benchmarks.results import Profile


def run(raw: str, windows: list[int], warm_raw: str, work: Path) -> Profile:
    out = str(work / "out-profile")
    try:
        br = spawn(raw, out, windows, warm_raw, work, profile=str(work / "build.pyspy"))
    except OSError as exc:
        return Profile(note=f"py-spy profile failed: {exc}")
    shutil.rmtree(out, ignore_errors=True)
    if br.exit_code != 0:
        return Profile(note=f"py-spy profile failed: the build exited {br.exit_code}")
    workers = merge([p for r, p in br.profiles if r == "worker"],
                    str(work / "build.pyspy-workers.txt"))
    return Profile(
        note=(f"`py-spy record --rate 100` attached to the workers of one extra, untimed "
              f"in-process build of the 1× data (`python -m benchmarks.buildrun`, a labelled "
              f"extra, not a user's `tailor build` process; {br.seconds:.2f} s; on-CPU "
              f"samples only, merged: {workers}).  Shares are of all worker samples."),
        self_time=top_frames(workers, 15),
        inclusive=inclusive(workers, r"\((decode|read|merge|encode|publish|graph|plan|framing|"
                                     r"payload|storage)\.py\)", 20))
