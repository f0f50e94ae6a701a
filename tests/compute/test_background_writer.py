"""compute/background_writer.py: jobs run in order, at most max_pending at once, none lost,
errors kept."""

from __future__ import annotations

import threading
import time

import pytest

from tailor.compute.background_writer import Writer


def test_jobs_bounded_ordered_and_all_done_on_close() -> None:
    lock = threading.Lock()
    live = 0
    peak = 0
    done: list[int] = []

    def job(i: int) -> int:
        nonlocal live, peak
        with lock:
            live += 1
            peak = max(peak, live)
        time.sleep(0.005)
        with lock:
            live -= 1
            done.append(i)
        return i * i

    with Writer(threads=1, max_pending=2) as w:
        jobs = []
        for i in range(10):
            jobs.append(w.submit(job, i))
            assert i + 1 - len(done) <= 2  # submit blocked: at most 2 unfinished
    assert done == list(range(10))  # leaving the block waited for every job, in order
    assert [j.result() for j in jobs] == [i * i for i in range(10)]
    assert peak == 1


def test_a_failing_job_raises_from_its_result_only() -> None:
    def job(i: int) -> int:
        if i == 1:
            raise OSError("disk full")
        return i

    with Writer() as w:
        jobs = [w.submit(job, i) for i in range(3)]
    assert jobs[0].result() == 0 and jobs[2].result() == 2
    with pytest.raises(OSError, match="disk full"):
        jobs[1].result()
