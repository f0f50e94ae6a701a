"""What a benchmark run measured, as one JSON document (``results.json``).

The run writes it after every phase; :mod:`benchmarks.render` turns it into
RESULTS.md, so the tables can be redrawn without running anything again.

A :class:`Run` is one timed run of one system with the outcome of the check
of *that* run's output; :mod:`benchmarks.accounting` decides from these
which times count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

Kind = Literal["tailor", "peer", "extra", "reference"]


class Run(BaseModel):
    """One timed run.  ``checked`` with no ``problems``: its output equals the oracle."""

    round: int
    seconds: float
    exit_code: int = 0
    checked: bool = False
    problems: list[str] = Field(default_factory=list)
    #: Why a run with a non-zero exit failed: the last line it printed.
    reason: str = ""
    #: Per-run figures beside the wall time: ``startup_s`` (empty-build or import
    #: time), ``inner_s`` (the process's own clock), ``published_s``, ``peak_rss``,
    #: ``mb_per_s`` ...
    extra: dict[str, float] = Field(default_factory=dict)


class System(BaseModel):
    """Every timed run of one system (one line of a table)."""

    name: str
    kind: Kind
    runs: list[Run] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    chunks: int = 0  # of the last checked run
    rows: int = 0
    startup: str = ""  # how its start-up share is measured


class Section(BaseModel):
    """One suite's systems (in the order they are shown), notes and extra figures."""

    points: int = 0
    systems: list[System] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    #: Worker-seconds per stage label, one value per in-process run.
    stages: dict[str, list[float]] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict)

    def system(self, name: str, kind: Kind) -> System:
        """The system called ``name``, added (last) if new."""
        for s in self.systems:
            if s.name == name:
                return s
        s = System(name=name, kind=kind)
        self.systems.append(s)
        return s

    def get(self, name: str) -> System | None:
        return next((s for s in self.systems if s.name == name), None)


class Profile(BaseModel):
    note: str = ""
    self_time: list[tuple[str, float]] = Field(default_factory=list)
    inclusive: list[tuple[str, float]] = Field(default_factory=list)


class Results(BaseModel):
    command: str
    args: dict[str, Any] = Field(default_factory=dict)
    machine: list[str] = Field(default_factory=list)
    load: list[float] = Field(default_factory=list)
    dataset: dict[str, Any] = Field(default_factory=dict)
    build: Section | None = None
    ingest: Section | None = None
    size: dict[str, Any] = Field(default_factory=dict)
    #: scale label → process label → peak RSS of each run (bytes)
    memory: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    scale: Section | None = None
    profile: Profile | None = None
    ingest_profile: Profile | None = None

    def add_memory(self, scale: str, label: str, rss: float) -> None:
        """One peak; a zero (the process ended before its first sample) is no figure."""
        if rss <= 0:
            return
        self.memory.setdefault(scale, {}).setdefault(label, []).append(float(rss))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load_file(cls, path: str | Path) -> Results:
        return cls.model_validate_json(Path(path).read_text())
