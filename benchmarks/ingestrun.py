"""One timed ``tailor ingest`` process: the clock ends when the last offset is committed.

The ingester runs as ``python -m tailor ingest ...`` with a metrics port.  A
poller reads ``tailor_ingest_payloads_total``,
``tailor_ingest_payload_bytes_total`` and ``tailor_ingest_quarantined_total``
every ``poll_s``; the clock starts at the first sample that shows consumed
records (those records and bytes are not counted, as in the bare fetch loop).
Those counters rise when a payload joins a batch, before it is durable, so
they never stop the clock: when they show every record consumed the harness
stops the ingester (SIGTERM: seal, write, commit, exit, as on any stop), and
the clock stops at the first poll where the consumer group's offsets
*committed on the broker* reach the producer's acknowledged end offsets on
every partition (the broker's own end offsets are not trusted: Tansu's
ListOffsets(latest) may under-report).  ``complete`` says whether that
happened and the process exited 0; a round that is not complete never counts.

The end-to-end time (process start → exit) is reported too: it includes
start-up, kernel loading, the group join and the final flush.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.memory import RssSampler
from benchmarks.stats import Throughput
from tailor.testing.services import free_port, wait_port

TP = tuple[str, int]


@dataclass(frozen=True, slots=True)
class IngestResult(Throughput):
    records: int  # records consumed after the clock started
    value_bytes: int  # valid payload bytes consumed after the clock started
    seconds: float  # first consumed sample → last offset committed (NaN if never)
    end_to_end_s: float  # spawn → exit
    exit_code: int
    peak_rss: int
    consumed: int  # valid + quarantined records the ingester counted in all
    total: int  # records produced (acknowledged)
    committed: dict[TP, int]  # the group's committed offsets at the end
    ends: dict[TP, int]  # the producer's acknowledged end offsets

    @property
    def all_committed(self) -> bool:
        return all(self.committed.get(tp, -1) >= end for tp, end in self.ends.items())

    @property
    def complete(self) -> bool:
        return self.exit_code == 0 and self.consumed >= self.total and self.all_committed

    def problems(self) -> list[str]:
        """Why this round does not count (empty when complete)."""
        out = []
        if self.exit_code != 0:
            out.append(f"exit code {self.exit_code}")
        if self.consumed < self.total:
            out.append(f"consumed only {self.consumed:,} of {self.total:,} records")
        short = {tp: (self.committed.get(tp, -1), end) for tp, end in self.ends.items()
                 if self.committed.get(tp, -1) < end}
        if short:
            tp, (got, end) = min(short.items())
            out.append(f"{len(short)} partition(s) not committed to the end "
                       f"(e.g. {tp[0]}/{tp[1]}: {got} of {end})")
        return out


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


class CommittedOffsets:
    """The offsets a consumer group has committed, read from the broker (OffsetFetch).

    Through a consumer of the group that never subscribes, so it never joins
    the group (aiokafka's coordinator waits for a subscription before it
    joins) and cannot disturb the ingester's assignment; aiokafka's admin
    client's OffsetFetch is not understood by Tansu.  Synchronous, on an
    event loop of its own; :meth:`close` when done.
    """

    def __init__(self, bootstrap: str, group: str, partitions: Sequence[TP]) -> None:
        self.bootstrap, self.group = bootstrap, group
        self.partitions = list(partitions)
        self._loop = asyncio.new_event_loop()
        self._consumer: Any = None

    async def _read(self) -> dict[TP, int]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self._consumer is None:
            c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                 enable_auto_commit=False, request_timeout_ms=5000)
            await c.start()
            self._consumer = c
        tps = [TopicPartition(t, p) for t, p in self.partitions]
        got = await asyncio.gather(*(self._consumer.committed(tp) for tp in tps))
        return {(tp.topic, tp.partition): int(off) for tp, off in zip(tps, got, strict=True)
                if off is not None}

    def read(self) -> dict[TP, int]:
        """The committed offsets; ``{}`` while the broker has none (or does not answer)."""
        from aiokafka.errors import KafkaError

        try:
            return self._loop.run_until_complete(asyncio.wait_for(self._read(), 10))
        except (KafkaError, OSError, TimeoutError):
            return {}

    def close(self) -> None:
        if self._consumer is not None:
            self._loop.run_until_complete(self._consumer.stop())
        self._loop.close()


def run_ingest(bootstrap: str, topics: Sequence[str], raw_dir: str, group: str,
               ends: Mapping[TP, int], *, idle_s: float = 60.0, timeout_s: float = 900.0,
               poll_s: float = 0.05, log_path: str | None = None,
               profile: str | None = None) -> IngestResult:
    """Run one ingester until the group has committed ``ends`` (or it gives up).

    ``ends``: the producer's acknowledged end offset (last offset + 1) per
    (topic, partition).  ``idle_s`` is only a backstop (``--exit-when-idle``)
    for an ingester that never consumes everything.  ``profile``: py-spy the
    process into this raw file.
    """
    total = sum(ends.values())
    port = free_port()
    cmd = [sys.executable, "-m", "tailor", "ingest", "--brokers", bootstrap,
           "--topics", ",".join(topics), "--group", group, "--raw", raw_dir,
           "--exit-when-idle", f"{idle_s}s", "--metrics-port", str(port), "--log-every", "600s"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    log: Any = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    offsets = CommittedOffsets(bootstrap, group, sorted(ends))
    first: tuple[float, int, int] | None = None  # (time, consumed, bytes) of the first sample
    seen = (0, 0)  # (consumed, valid bytes) of the last sample
    t_committed: float | None = None
    committed: dict[TP, int] = {}

    def done(c: dict[TP, int]) -> bool:
        return all(c.get(tp, -1) >= end for tp, end in ends.items())

    t_spawn = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with RssSampler({proc.pid: "ingester"}, interval=poll_s) as mem:
            wait_port(port, timeout=60)
            spy = None
            if profile:
                from benchmarks.profile import attach

                spy = attach(proc.pid, profile)
            stopped = False
            deadline = t_spawn + timeout_s
            while proc.poll() is None and time.perf_counter() < deadline:
                c = _scrape(port)
                now = time.perf_counter()
                if c is not None:
                    seen = (c[0] + c[2], c[1])
                    if first is None and seen[0] > 0:
                        first = (now, seen[0], seen[1])
                if first is not None and t_committed is None:
                    committed = offsets.read()
                    if done(committed):
                        t_committed = time.perf_counter()
                if not stopped and seen[0] >= total:
                    proc.send_signal(signal.SIGTERM)  # all consumed: seal, write, commit, exit
                    stopped = True
                time.sleep(poll_s)
            if proc.poll() is None:
                proc.kill()
            rc = proc.wait(30)
            t_exit = time.perf_counter()
            if spy is not None:
                from benchmarks.profile import detach

                detach(spy)
        committed = offsets.read() or committed
        if t_committed is None and first is not None and done(committed):
            t_committed = t_exit  # committed between the last poll and the exit
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        offsets.close()
        if log_path:
            log.close()
    if first is None:
        raise RuntimeError(f"ingest consumed nothing of {total} records "
                           f"(exit code {rc}; see {log_path})")
    return IngestResult(
        records=seen[0] - first[1], value_bytes=seen[1] - first[2],
        seconds=(t_committed - first[0]) if t_committed is not None else float("nan"),
        end_to_end_s=t_exit - t_spawn, exit_code=rc,
        peak_rss=max((p.rss for p in mem.peaks()), default=0), consumed=seen[0], total=total,
        committed=committed, ends=dict(ends))
