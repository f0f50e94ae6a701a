"""Writes of sealed batches: at most ``upload_concurrency`` at once, retried while they fail.

A failed write (any exception: a store error, a missing bucket, a bug) is
counted (``tailor_store_write_failures_total{reason}``) and retried with
capped, jittered exponential backoff (the same keys) for as long as it fails;
it never raises into the loop and never lets offsets advance past its records.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable

from tailor import metrics
from tailor.errors import StorageError
from tailor.format.records import CLOCK_SLACK_NS
from tailor.ingest.batcher import OBJECT, Batch
from tailor.ingest.member import Member, log
from tailor.store_failures import failure_reason

RETRY_BASE_S = 0.25  # a failed write is retried after ~0.5 s, 1 s, 2 s … (jittered) …
RETRY_MAX_S = 30.0  # … up to this, for as long as it keeps failing


class Writes(Member):
    """Scheduling, writing, retrying and draining sealed batches."""

    def _schedule(self, batches: Iterable[Batch]) -> None:
        for b in batches:
            if b.serial not in self.inflight and b.serial in self.batcher.sealed:
                self.inflight[b.serial] = asyncio.create_task(self._write(b))

    def _retry_failed(self) -> None:
        now = time.monotonic()
        self._schedule(b for b in list(self.batcher.sealed.values())
                       if b.attempts and b.retry_at <= now)

    async def _write(self, batch: Batch) -> None:
        try:
            async with self.sem:
                t0 = time.monotonic()
                try:
                    key = await self._blocking(self.writer.write, batch)
                except Exception as exc:  # any failure: retried, never lost or stuck
                    self._failed(batch, exc)
                    return
                metrics.FLUSH_SECONDS.observe(time.monotonic() - t0)
                if batch.kind == OBJECT:
                    metrics.OBJECT_BYTES.observe(batch.nbytes)
                self.stats["objects"] += 1
                log.debug("durable: %s (%d payloads, %d bytes)", key, batch.payloads, batch.nbytes)
                # intake_ns is untrusted: readiness never believes it past the clock.
                self.batcher.done(batch, intake_limit_ns=time.time_ns() + CLOCK_SLACK_NS)
                metrics.BUFFERED_BYTES.set(self.batcher.buffered_bytes)
        finally:
            self.inflight.pop(batch.serial, None)

    def _failed(self, batch: Batch, exc: Exception) -> None:
        """Count a failed write of ``batch`` and set when to retry it (capped
        exponential backoff with jitter, whatever the error)."""
        batch.attempts += 1
        delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** batch.attempts) * random.uniform(0.5, 1.0)
        batch.retry_at = time.monotonic() + delay
        reason = failure_reason(exc)
        metrics.STORE_WRITE_FAILURES.labels(reason).inc()
        self.stats["write_failures"] += 1
        log.warning("write of batch %s (%s %s) failed (%s), attempt %d, retrying in %.1f s; its "
                    "offsets wait until it is durable: %s", batch.batch_id, batch.kind, batch.key,
                    reason, batch.attempts, delay, exc,
                    exc_info=not isinstance(exc, StorageError))

    async def _drain(self, batches: list[Batch], deadline: float) -> bool:
        """Write ``batches`` until all are durable or ``deadline``; True if all are."""
        want = {b.serial for b in batches}
        while True:
            left = [self.batcher.sealed[s] for s in want if s in self.batcher.sealed]
            if not left:
                return True
            if time.monotonic() >= deadline:
                return False
            self._schedule(b for b in left if b.retry_at <= time.monotonic())
            self._update_oldest()
            waiting = [self.inflight[b.serial] for b in left if b.serial in self.inflight]
            timeout = min(0.5, max(0.01, deadline - time.monotonic()))
            if waiting:
                await asyncio.wait(waiting, timeout=timeout)
            else:  # every one backs off: sleep until the first retry is due
                due = min(b.retry_at for b in left) - time.monotonic()
                await asyncio.sleep(min(timeout, max(0.01, due)))

