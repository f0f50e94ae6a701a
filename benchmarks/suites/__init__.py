"""The suites of ``python -m benchmarks``, one module each, and their shared round runner.

Every suite fills one part of :class:`benchmarks.results.Results`:
:mod:`.build` (1× build: Tailor's CLI lines and the peers), :mod:`.ingest`,
:mod:`.size`, :mod:`.scale` (10× points), :mod:`.memory` (the worker memory
bound) and :mod:`.profile` (py-spy).

:func:`run_rounds` is how a suite times systems: round by round, each system
once per round (the order rotates by one each round so that no system always
runs right after the same neighbour), every run's output checked against the
oracle before the next starts (:mod:`benchmarks.accounting` decides what
counts).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import verify
from benchmarks.results import Kind, Results, Run, Section
from benchmarks.workload import log

Files = Callable[[str], dict[verify.ChunkKey, list[str]]]


@dataclass
class Contender:
    """One system of a suite: how to run it once into ``out``, and how to read its output."""

    name: str
    kind: Kind
    run: Callable[[int, str], Run]  # (round, output dir) → the run, not yet checked
    files: Files
    slug: str
    runs: int | None = None  # at most this many rounds (None: every round)
    keep: str | None = None  # copy round 1's output here (when it counts)
    startup: str = ""


def tailor_files(out: str) -> dict[verify.ChunkKey, list[str]]:
    return verify.tailor_files(out)


def hive_files(out: str) -> dict[verify.ChunkKey, list[str]]:
    return verify.hive_files(out)


def check_run(run: Run, files: dict[verify.ChunkKey, list[str]],
              reference: dict[verify.ChunkKey, Any], name: str) -> verify.Check | None:
    """Check ``run``'s output bit for bit, unless it already failed (a non-zero exit)."""
    if run.exit_code != 0:
        return None
    chk = verify.compare(name, files, reference)
    run.checked = True
    run.problems = list(chk.problems)
    return chk


def run_rounds(section: Section, contenders: list[Contender], rounds: int,
               reference: dict[verify.ChunkKey, Any], work: Path, res: Results,
               save: Callable[[], None]) -> None:
    for c in contenders:
        section.system(c.name, c.kind).startup = c.startup
    for i in range(rounds):
        k = i % max(1, len(contenders))
        for c in contenders[k:] + contenders[:k]:
            if c.runs is not None and i >= c.runs:
                continue
            out = str(work / f"out-{c.slug}")
            shutil.rmtree(out, ignore_errors=True)
            run = c.run(i + 1, out)
            chk = check_run(run, c.files(out), reference, c.name)
            system = section.system(c.name, c.kind)
            system.runs.append(run)
            if chk is not None:
                system.chunks, system.rows = chk.chunks, chk.rows
            if c.keep and i == 0 and run.checked and not run.problems:
                shutil.rmtree(c.keep, ignore_errors=True)
                shutil.copytree(out, c.keep)
            res.load.append(os.getloadavg()[0])
            verdict = (f"exit {run.exit_code}" if run.exit_code else
                       "OK" if not run.problems else f"WRONG {run.problems[:2]}")
            log(f"round {i + 1} {c.name}: {run.seconds:.2f} s, {verdict} "
                f"(load {res.load[-1]:.2f})")
            shutil.rmtree(out, ignore_errors=True)
            save()
