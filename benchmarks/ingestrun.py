"""One timed ``tailor ingest`` process, watched through its Prometheus counters.

The ingester runs as ``python -m tailor ingest ... --exit-when-idle`` with a
metrics port.  A poller reads ``tailor_ingest_payloads_total``,
``tailor_ingest_payload_bytes_total`` and ``tailor_ingest_quarantined_total``
every ``poll_s``; the clock starts at the first sample that shows consumed
records (those records and bytes are not counted, as in the bare fetch loop)
and stops at the last sample where the count grew (normally: every record of
the topics consumed; ``complete`` says whether it was).
The end-to-end time (process start → clean exit, less the idle wait) is
reported too: it includes start-up, the group join and the final flush.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.memory import RssSampler
from benchmarks.stats import Throughput
from tailor.services import free_port, wait_port


@dataclass(frozen=True, slots=True)
class IngestResult(Throughput):
    records: int  # records consumed after the clock started
    value_bytes: int  # valid payload bytes consumed after the clock started
    seconds: float  # first consumed sample → all consumed
    end_to_end_s: float  # spawn → exit, minus the idle wait
    exit_code: int
    peak_rss: int
    consumed: int  # valid + quarantined records the ingester counted in all
    total: int  # records in the topics

    @property
    def complete(self) -> bool:
        return self.consumed >= self.total


def parse_counters(text: str) -> tuple[int, int, int]:
    """``(valid payloads, valid payload bytes, quarantined)`` from a /metrics page."""
    payloads = nbytes = quarantined = 0
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        if name == "tailor_ingest_payloads_total":
            payloads = int(float(value))
        elif name == "tailor_ingest_payload_bytes_total":
            nbytes = int(float(value))
        elif name.startswith("tailor_ingest_quarantined_total"):
            quarantined += int(float(value))
    return payloads, nbytes, quarantined


def _scrape(port: int) -> tuple[int, int, int] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return parse_counters(r.read().decode())
    except OSError:
        return None


def run_ingest(bootstrap: str, topics: Sequence[str], raw_dir: str, group: str,
               total_records: int, *, idle_s: float = 3.0, timeout_s: float = 900.0,
               poll_s: float = 0.05, log_path: str | None = None,
               profile: str | None = None) -> IngestResult:
    """Run one ingester to idle exit; ``profile``: py-spy it into this raw file."""
    port = free_port()
    cmd = [sys.executable, "-m", "tailor", "ingest", "--brokers", bootstrap,
           "--topics", ",".join(topics), "--group", group, "--raw", raw_dir,
           "--exit-when-idle", f"{idle_s}s", "--metrics-port", str(port), "--log-every", "600s"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    log: Any = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    t_spawn = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with RssSampler({proc.pid: "ingester"}, interval=poll_s) as mem:
            wait_port(port, timeout=60)
            spy = None
            if profile:
                from benchmarks.profile import attach

                spy = attach(proc.pid, profile)
            first: tuple[float, int, int] | None = None
            last: tuple[float, int, int] | None = None  # the sample where the count last grew
            deadline = t_spawn + timeout_s
            while proc.poll() is None and time.perf_counter() < deadline:
                c = _scrape(port)
                now = time.perf_counter()
                if c is not None:
                    consumed = c[0] + c[2]
                    if first is None and consumed > 0:
                        first = (now, consumed, c[1])
                    if consumed > 0 and (last is None or consumed > last[1]):
                        last = (now, consumed, c[1])
                time.sleep(poll_s)
            rc = proc.wait(max(1.0, deadline - time.perf_counter()))
            t_exit = time.perf_counter()
            if spy is not None:
                from benchmarks.profile import detach

                detach(spy)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if log_path:
            log.close()
    if first is None or last is None:
        raise RuntimeError(f"ingest consumed nothing of {total_records} records "
                           f"(exit code {rc}; see {log_path})")
    return IngestResult(records=last[1] - first[1], value_bytes=last[2] - first[2],
                        seconds=last[0] - first[0], end_to_end_s=t_exit - t_spawn - idle_s,
                        exit_code=rc, peak_rss=max((p.rss for p in mem.peaks()), default=0),
                        consumed=last[1], total=total_records)
