"""Peak RSS per process, sampled by a background thread with psutil.

Processes are found anew at every sample: the roots given and all their
descendants (Dask's LocalCluster workers are children of the process that
started the cluster).  Each pid is labelled once, by the ``label`` function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import psutil

Label = Callable[[psutil.Process], str]


def default_label(proc: psutil.Process) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return "other"
    if "multiprocessing" in cmd and "resource_tracker" in cmd:
        return "resource-tracker"
    if "spawn_main" in cmd or "forkserver" in cmd:
        return "worker"
    if "java" in proc.name().lower():
        return "jvm"
    return "other"


@dataclass
class Peak:
    label: str
    pid: int
    rss: int = 0


@dataclass
class RssSampler:
    """``with RssSampler({pid: label}, interval) as s: ...`` then ``s.peaks()``."""

    roots: dict[int, str]
    interval: float = 0.05
    label: Label = default_label
    #: Bytes of RSS the whole tree may hold; above it every process of the tree
    #: is killed and :attr:`exceeded` is set (None: no limit).
    limit: int | None = None
    exceeded: bool = False
    _peaks: dict[int, Peak] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _procs(self) -> list[tuple[psutil.Process, str | None]]:
        out: list[tuple[psutil.Process, str | None]] = []
        for pid, name in self.roots.items():
            try:
                root = psutil.Process(pid)
                out.append((root, name))
                out.extend((c, None) for c in root.children(recursive=True))
            except psutil.Error:
                continue
        return out

    def sample(self) -> None:
        procs = self._procs()
        total = 0
        for proc, name in procs:
            try:
                rss = int(proc.memory_info().rss)
            except psutil.Error:
                continue
            total += rss
            peak = self._peaks.get(proc.pid)
            if peak is None:
                peak = self._peaks[proc.pid] = Peak(name or self.label(proc), proc.pid)
            peak.rss = max(peak.rss, rss)
        if self.limit is not None and total > self.limit:
            self.exceeded = True
            for proc, _ in reversed(procs):
                try:
                    proc.kill()
                except psutil.Error:
                    continue

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def reset(self) -> None:
        """Forget the peaks seen so far (start of a new measured phase)."""
        for p in list(self._peaks.values()):
            p.rss = 0

    def peaks(self) -> list[Peak]:
        return sorted(self._peaks.values(), key=lambda p: (p.label, p.pid))

    def max_by_label(self) -> dict[str, int]:
        """Largest peak RSS among the processes of each label."""
        out: dict[str, int] = {}
        for p in self._peaks.values():
            out[p.label] = max(out.get(p.label, 0), p.rss)
        return out
