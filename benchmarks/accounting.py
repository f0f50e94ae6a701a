"""Which times count: the benchmark's accounting rules, in one place.

- A run counts only if its process exited 0 *and* its own output was checked
  against the oracle and found equal (every run, every round, every system).
- A system with any run that does not count is left out of every ratio (its
  table line says why); its counted runs are still shown.
- Ratios compare medians of counted runs; "the best peer" is the fastest
  peer that is not left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.results import Run, Section, System
from benchmarks.stats import Runs


def counts(run: Run) -> bool:
    """A run's time counts: exit code 0 and its output checked equal to the oracle."""
    return run.exit_code == 0 and run.checked and not run.problems


def why_not(run: Run) -> str | None:
    """Why ``run`` does not count, or None."""
    if run.exit_code != 0:
        why = f": {run.reason}" if run.reason else ""
        return f"round {run.round}: exit code {run.exit_code}{why}"
    if not run.checked:
        return f"round {run.round}: output not checked"
    if run.problems:
        return f"round {run.round}: output WRONG ({'; '.join(run.problems[:2])})"
    return None


def excluded(system: System) -> str | None:
    """Why ``system`` is left out of the ratios, or None when every run counts."""
    if not system.runs:
        return "no run"
    reasons = [w for w in (why_not(r) for r in system.runs) if w]
    return "; ".join(reasons[:3]) if reasons else None


def seconds(system: System) -> Runs:
    """Wall seconds of the counted runs."""
    return Runs([r.seconds for r in system.runs if counts(r)])


def figure(system: System, key: str) -> Runs:
    """``extra[key]`` of the counted runs that have it."""
    return Runs([r.extra[key] for r in system.runs if counts(r) and key in r.extra])


def eligible(system: System | None) -> bool:
    return system is not None and excluded(system) is None


def best_peer(section: Section) -> System | None:
    """The fastest peer (median of counted runs) among those not left out."""
    ok = [s for s in section.systems if s.kind == "peer" and eligible(s)]
    return min(ok, key=lambda s: seconds(s).median, default=None)


@dataclass(frozen=True, slots=True)
class Ratio:
    """``value`` = a median over b median; ``missing`` says why there is none."""

    value: float
    over: str  # what the ratio is against, e.g. the best peer's name
    missing: str = ""


def _nan(over: str, missing: str) -> Ratio:
    return Ratio(float("nan"), over, missing)


def speedup(section: Section, tailor: str, peer: System | None = None) -> Ratio:
    """Peer median / ``tailor`` median (> 1: Tailor is faster); the best peer by default."""
    t = section.get(tailor)
    if t is None:
        return _nan("", f"{tailor} did not run")
    if (why := excluded(t)) is not None:
        return _nan("", f"{tailor} does not count: {why}")
    p = peer if peer is not None else best_peer(section)
    if p is None:
        return _nan("", "no peer counts")
    if (why := excluded(p)) is not None:
        return _nan(p.name, f"{p.name} does not count: {why}")
    return Ratio(seconds(p).median / seconds(t).median, p.name)


def slowdown(section: Section, a: str, b: str) -> Ratio:
    """``a`` median / ``b`` median, both of Tailor lines (e.g. first run / warm)."""
    sa, sb = section.get(a), section.get(b)
    for name, s in ((a, sa), (b, sb)):
        if s is None:
            return _nan(b, f"{name} did not run")
        if (why := excluded(s)) is not None:
            return _nan(b, f"{name} does not count: {why}")
    assert sa is not None and sb is not None
    return Ratio(seconds(sa).median / seconds(sb).median, b)
