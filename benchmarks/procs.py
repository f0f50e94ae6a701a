"""Timing a command as a user runs it: a fresh process, from exec to exit.

:func:`timed` starts the command, samples the peak RSS of its process tree,
waits for it to exit and returns the wall seconds, the exit code and what it
printed.  :class:`DaskCluster` is a ``dask scheduler`` plus a ``dask worker``
process started by the harness (what ``tailor build --scheduler`` runs
against), closed by the pids it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from benchmarks.memory import Peak, RssSampler

REPO = Path(__file__).resolve().parent.parent


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``TAILOR_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update(extra or {})
    return env


@dataclass(frozen=True, slots=True)
class Exited:
    """One process run: wall seconds from exec to exit, exit code, output, peak RSS."""

    seconds: float
    exit_code: int
    output: str
    peaks: list[Peak]

    @property
    def reason(self) -> str:
        """The last line printed by a failed run (empty after exit 0), at most 240 characters."""
        if self.exit_code == 0:
            return ""
        lines = [ln.strip() for ln in self.output.splitlines() if ln.strip()]
        return lines[-1][:240] if lines else ""


def timed(cmd: Sequence[str], *, label: str, env: Mapping[str, str] | None = None,
          log_path: str | Path | None = None, timeout_s: float = 3600,
          rss_limit: int | None = None) -> Exited:
    """Run ``cmd`` to its exit; stdout and stderr are kept (and appended to ``log_path``).

    A process still running after ``timeout_s``, or whose process tree holds
    more than ``rss_limit`` bytes of RSS at a sample, is killed and reported
    with exit code -9 and the reason as the last line of its output (as is a
    SIGKILL from elsewhere, such as the kernel's OOM killer): it never counts.
    """
    out_path = Path(f"/tmp/bench-proc-{os.getpid()}-{time.monotonic_ns()}.out")
    with open(out_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else clean_env(),
                                cwd=str(REPO))
        try:
            timed_out = False
            with RssSampler({proc.pid: label}, limit=rss_limit) as mem:
                try:
                    rc = proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    rc, timed_out = -9, True
                seconds = time.perf_counter() - t0
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    text = out_path.read_text(errors="replace")
    out_path.unlink()
    if mem.exceeded:
        rc = -9
        gib = (rss_limit or 0) / 2**30
        text += f"\n[killed: the process tree held more than {gib:.1f} GiB of RSS]\n"
    elif timed_out:
        text += f"\n[killed: still running after {timeout_s:g} s]\n"
    elif rc == -9:
        text += ("\n[killed by a SIGKILL from outside the harness: on Linux usually the "
                 "kernel's OOM killer (dmesg says)]\n")
    if log_path is not None:
        with open(log_path, "a") as log:
            log.write(f"$ {' '.join(cmd)}\n{text}\n[exit {rc} after {seconds:.2f} s]\n")
    return Exited(seconds, rc, text, mem.peaks())


class DaskCluster:
    """``dask scheduler`` and ``dask worker --nworkers N --nthreads 1`` on loopback.

    The processes are the harness's own; :meth:`close` ends them by pid.
    """

    def __init__(self, workers: int, env: Mapping[str, str], log_path: str | Path) -> None:
        from tailor.testing.services import free_port

        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self._log = open(log_path, "ab")  # noqa: SIM115  # closed in close()
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                 "--port", str(port), "--no-dashboard"],
                stdout=self._log, stderr=subprocess.STDOUT, env=dict(env), cwd=str(REPO)))
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", self.address,
                 "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard",
                 "--host", "127.0.0.1"],
                stdout=self._log, stderr=subprocess.STDOUT, env=dict(env), cwd=str(REPO)))
            self._wait(workers)
        except BaseException:
            self.close()
            raise

    def _wait(self, workers: int, timeout_s: float = 120) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout_s) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(workers, timeout=timeout_s)

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._log.close()

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
