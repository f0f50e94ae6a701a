"""The aiokafka consumer-group member: fetch → classify → batch → write → commit.

One :class:`Ingester` runs one asyncio loop (:meth:`Ingester.run`); the
parts of its job live in mixins (:mod:`tailor.ingest.member` declares the
state they share):

- ``getmany`` → :meth:`classify.Classifier.classify` in a classifier thread
  (its kernels release the GIL, so up to ``CLASSIFY_AHEAD`` fetches are
  classified while the next ones are fetched) → :class:`batcher.Batcher`, in
  fetch order, under a lock shared with the rebalance listener (here).
- Sealed batches are written by :class:`writer.Writer` in worker threads, at
  most ``upload_concurrency`` at once; a failed write is retried for as long
  as it fails and never lets offsets advance past its records
  (:mod:`tailor.ingest.write_retry`; ``tailor_ingest_oldest_unflushed_seconds``
  shows how long data has waited).
- After writes become durable the committable offsets are committed, then a
  watermark is written per committed partition, and every
  ``watermark_interval_s`` per assigned partition (:mod:`tailor.ingest.commits`).
- Backpressure (here): at ``memory_limit`` bytes (buffered batches plus the
  fetches being classified) the biggest batches are sealed and every
  assigned partition is paused until below 3/4 of it.
- Revocation flushes, waits until durable, commits, then forgets the
  partitions; records fetched before a rebalance are dropped after it
  (:mod:`tailor.ingest.rebalance`).
- Stop (``stop`` event or ``exit_when_idle_s``, here): stop fetching, flush,
  commit, leave the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from tailor import metrics
from tailor.config import IngestConfig
from tailor.errors import TailorError
from tailor.format import validate_batch
from tailor.ingest.batcher import TP, Batcher, Invalid, Item, item_tps
from tailor.ingest.classify import Classifier, Record
from tailor.ingest.member import log
from tailor.ingest.rebalance import Rebalance, _Listener
from tailor.ingest.watermarks import Watermarks
from tailor.ingest.writer import Writer
from tailor.shards import ShardMap
from tailor.storage import Store

POLL_MS = 200
MAX_RECORDS = 5000
CLASSIFY_THREADS = 2  # classifier kernels release the GIL: fetches classify in parallel
CLASSIFY_AHEAD = 3  # fetches being classified while the next one is fetched


class Ingester(Rebalance):
    """One member of the ingest consumer group (see module doc)."""

    def __init__(self, cfg: IngestConfig, store: Store, shard_map: ShardMap) -> None:
        self.cfg = cfg
        self.store = store
        self.shard_map = shard_map
        self.writer = Writer(store, part_size=cfg.part_size, concurrency=cfg.upload_concurrency)
        self.batcher = Batcher(cfg.flush)
        self.classifier = Classifier(shard_map)
        # Fetches are classified in parallel and added in fetch order.
        self.classify_pool = ThreadPoolExecutor(CLASSIFY_THREADS, "tailor-classify")
        # (epoch, items, the fetch's key + value bytes: counted against memory_limit too)
        self.classifying = []
        self.lock = asyncio.Lock()
        self.sem = asyncio.Semaphore(cfg.upload_concurrency)
        self.inflight = {}
        # Store calls block: they run here, so a stuck one cannot hold up the exit.
        self.pool = ThreadPoolExecutor(cfg.upload_concurrency + 2, "tailor-upload")
        self.abandoned = False  # True when exiting with writes still running
        self.wm = Watermarks(cfg.group, cfg.watermark_interval_s)
        self.mark_task = None
        self.next_heartbeat = 0.0  # monotonic
        self.epoch = 0  # bumped on every assignment change
        self.paused = False
        self.last_activity = time.monotonic()
        self.last_log = (time.monotonic(), 0, 0)  # (when, payloads, bytes) at the last summary
        self.stats = {"payloads": 0, "bytes": 0, "quarantined": 0, "objects": 0,
                      "commits": 0, "write_failures": 0}
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.brokers, group_id=cfg.group, enable_auto_commit=False,
            auto_offset_reset="earliest", metadata_max_age_ms=int(cfg.metadata_max_age_s * 1000),
            client_id=f"tailor-ingest-{socket.gethostname()}-{os.getpid()}",
            fetch_max_bytes=fetch_bytes(cfg.memory_limit),
            max_partition_fetch_bytes=max(1 << 18, min(8 << 20, cfg.memory_limit // 128)),
        )

    # -- lifecycle ------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        """Consume until ``stop`` is set (or idle for ``exit_when_idle_s``).

        Returns 0 when everything consumed is durable and committed on exit,
        1 when the shutdown deadline passed first (those offsets stay
        uncommitted and are delivered again).  Raises only on bugs and on
        Kafka errors at start (bad brokers).
        """
        # Compile the classifier's kernels before joining the group.
        await asyncio.get_running_loop().run_in_executor(self.classify_pool, validate_batch.warm)
        try:
            await self.consumer.start()
        except KafkaError as exc:
            with contextlib.suppress(KafkaError):
                await self.consumer.stop()
            self.pool.shutdown(wait=False)
            self.classify_pool.shutdown(wait=False)
            raise TailorError("cannot reach the Kafka brokers", brokers=self.cfg.brokers,
                              reason=f"{type(exc).__name__}: {exc}",
                              fix="check --brokers and that the brokers are up") from None
        try:
            listener = _Listener(self)
            if self.cfg.topics:
                self.consumer.subscribe(topics=self.cfg.topics, listener=listener)
            else:
                self.consumer.subscribe(pattern=self.cfg.topic_pattern, listener=listener)
            await self._loop(stop)
            return await self._shutdown()
        finally:
            for t in self.inflight.values():
                t.cancel()
            if self.mark_task is not None and not self.mark_task.done():
                self.mark_task.cancel()
                self.abandoned = True
            self.abandoned |= bool(self.inflight)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.classify_pool.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(KafkaError, asyncio.CancelledError):
                await self.consumer.stop()

    async def _loop(self, stop: asyncio.Event) -> None:
        idle_s = self.cfg.exit_when_idle_s
        next_log = time.monotonic() + self.cfg.log_every_s
        while not stop.is_set():
            # Wait for Kafka only when nothing is being classified; else take
            # what is already fetched, or wait for the oldest classification.
            busy = bool(self.classifying)
            data = {}
            if len(self.classifying) < CLASSIFY_AHEAD:
                data = await self.consumer.getmany(timeout_ms=0 if busy else POLL_MS,
                                                   max_records=MAX_RECORDS)
            now = time.monotonic()
            if data:
                self.last_activity = now
                for tp, recs in data.items():
                    if recs:
                        self.batcher.fetched((tp.topic, tp.partition), recs[0].offset,
                                             recs[-1].offset + 1)
                fetch = [((tp.topic, tp.partition), recs) for tp, recs in data.items()]
                # Records are of the current assignment: remember its epoch.
                fut = asyncio.get_running_loop().run_in_executor(
                    self.classify_pool, self.classifier.classify, fetch)
                self.classifying.append((self.epoch, fut, _record_bytes(fetch)))
            elif busy:
                await asyncio.wait([self.classifying[0][1]])
            await self._take_classified()
            self._schedule(self.batcher.due(time.monotonic()))
            self._backpressure()
            self._retry_failed()
            await self._commit()
            await self._heartbeat()
            self._update_lag()
            self._update_oldest()
            if now >= next_log:
                self._log_summary()
                next_log = now + self.cfg.log_every_s
            # Idle = nothing fetched for idle_s *and* caught up: a slow broker or a
            # rebalance pause with records still behind the high water is not idle,
            # nor is a backpressure pause (its high-water marks are not refreshed).
            if (idle_s is not None and now - self.last_activity >= idle_s and self.lag() == 0
                    and not self.classifying and not self.paused):
                log.info("nothing new for %.1f s and caught up: stopping", idle_s)
                return
        while self.classifying:  # stopping: keep what was fetched
            await asyncio.wait([self.classifying[0][1]])
            await self._take_classified()

    async def _take_classified(self) -> None:
        """Add the items of every finished classification at the head, in order."""
        while self.classifying and self.classifying[0][1].done():
            epoch, fut, _n = self.classifying.pop(0)
            items = fut.result()
            async with self.lock:
                # A rebalance since the fetch reset positions to the committed
                # offsets: these records come again, so drop them now.
                if epoch == self.epoch:
                    self._add(items, time.monotonic())

    async def _shutdown(self) -> int:
        deadline = time.monotonic() + max(1.0, self.cfg.shutdown_deadline_s - 3.0)
        self.consumer.pause(*self.consumer.assignment())
        async with self.lock:
            pending = self.batcher.seal_all()
            ok = await self._drain(pending, deadline)
            committed = await self._commit()
        if self.mark_task is not None:
            await asyncio.wait([self.mark_task], timeout=max(0.1, deadline - time.monotonic()))
        self._log_summary()
        if not ok:
            left = len(self.batcher.sealed)
            log.error("shutdown deadline passed with %d batch(es) not durable; their offsets "
                      "were not committed and will be delivered again", left)
            return 1
        if not committed:
            log.error("the final commit failed: durable records will be delivered again")
            return 1
        return 0

    # -- records ------------------------------------------------------------------------
    def _add(self, items: list[Item], now: float) -> None:
        """Add one fetch's items; all of them or (a partition not assigned) none."""
        if any(tp not in self.batcher.parts for it in items for tp in item_tps(it)):
            log.debug("dropping a fetch of partitions no longer assigned")
            return
        payloads = nbytes = 0
        for it in items:
            self.batcher.add(it, now)
            if isinstance(it, Invalid):
                metrics.QUARANTINED.labels(it.reason).inc()
                self.stats["quarantined"] += 1
            else:
                payloads += it.payloads
                nbytes += it.value_bytes
        metrics.PAYLOADS.inc(payloads)
        metrics.PAYLOAD_BYTES.inc(nbytes)
        self.stats["payloads"] += payloads
        self.stats["bytes"] += nbytes
        metrics.BUFFERED_BYTES.set(self.batcher.buffered_bytes)

    @property
    def ahead_bytes(self) -> int:
        """Bytes of the fetches being classified (at most ``CLASSIFY_AHEAD``)."""
        return sum(n for _e, _f, n in self.classifying)

    def _backpressure(self) -> None:
        """Pause fetching while buffered batches plus the fetches being classified
        hold ``memory_limit`` bytes; resume below 3/4 of it."""
        limit = self.cfg.memory_limit
        held = self.batcher.buffered_bytes + self.ahead_bytes
        if held >= limit:
            self._schedule(self.batcher.seal_biggest(limit // 4))
            if not self.paused:
                metrics.PAUSES.inc()
                self.wm.pause_began()
                log.warning("buffered %d bytes (+%d being classified) >= memory limit %d: "
                            "pausing fetch", self.batcher.buffered_bytes, self.ahead_bytes, limit)
            self.paused = True
        elif self.paused and held < limit * 3 // 4:
            self.paused = False
            self.wm.resumed(time.time_ns())
            self.last_activity = time.monotonic()  # not idle before fresh fetches
            self.consumer.resume(*self.consumer.assignment())
            log.info("buffered %d bytes: resuming fetch", held)
        if self.paused:  # new assignments start unpaused: pause them too
            self.consumer.pause(*self.consumer.assignment())


def fetch_bytes(memory_limit: int) -> int:
    """Bytes one fetch may return: small against the bound, since a fetch is held
    up to about four times over while it is classified (records, their values
    joined, their frames, each shard's part of those)."""
    return max(1 << 20, min(64 << 20, memory_limit // 32))


def _record_bytes(fetch: Sequence[tuple[TP, Sequence[Record]]]) -> int:
    return sum(len(r.value or b"") + len(r.key or b"") for _, recs in fetch for r in recs)
