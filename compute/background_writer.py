"""A bounded background writer: store writes and publishes off a task's compute thread.

A fused build task (:func:`~tailor.compute.graph.t_build_units`) reads,
decodes, sorts and encodes on its own thread, and hands each chunk's part
write and publish to a :class:`Writer`; the next chunk's compute runs while
the store takes the last one's bytes (an fsync of a local directory, a PUT
and the manifest's compare-and-swap on S3).  What is handed over keeps its
order per chunk (part first, then the manifest, as
:mod:`~tailor.compute.publish` requires): one job does both.

Backpressure: :meth:`Writer.submit` blocks while ``max_pending`` jobs are
queued or running, so a task holds at most that many encoded parts beside
its own working set.  Nothing is lost: the owner waits for every job
(:meth:`Writer.close`, or leaving the ``with`` block) before the task
returns, and a job's exception is raised by its :meth:`Job.result`.  Threads
outside a task are not metered: a job returns its own timings for the task
to digest (``context_meter.digest_metric``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")

#: Jobs a task may have queued or running (each holds one encoded part).
MAX_PENDING = 2


class Job(Generic[T]):
    """One submitted job: :meth:`result` waits for it, then returns or raises what it did."""

    def __init__(self, fut: Future[T]) -> None:
        self._fut = fut

    def result(self) -> T:
        """Block until the job ends; its value, or raises its exception."""
        return self._fut.result()


class Writer:
    """``threads`` background threads running at most ``max_pending`` jobs at once.

    Use as a context manager (or call :meth:`close`): leaving waits for every
    job, so no write outlives the task that made it.
    """

    def __init__(self, threads: int = 1, max_pending: int = MAX_PENDING) -> None:
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="tailor-writer")
        self._slots = threading.BoundedSemaphore(max(1, max_pending))

    def submit(self, fn: Callable[..., T], *args: object) -> Job[T]:
        """Queue ``fn(*args)``; blocks while ``max_pending`` jobs are unfinished."""
        self._slots.acquire()

        def run() -> T:
            try:
                return fn(*args)
            finally:
                self._slots.release()
        try:
            return Job(self._pool.submit(run))
        except BaseException:
            self._slots.release()
            raise

    def close(self) -> None:
        """Wait for every job to end (their errors stay with their :class:`Job`)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
