"""The aiokafka consumer-group member: fetch → classify → batch → write → commit.

One :class:`Ingester` runs one asyncio loop (:meth:`Ingester.run`):

- ``getmany`` → :meth:`classify.Classifier.classify` in a classifier thread
  (its kernels release the GIL, so up to ``CLASSIFY_AHEAD`` fetches are
  classified while the next ones are fetched) → :class:`batcher.Batcher`, in
  fetch order, under a lock shared with the rebalance listener.
- Sealed batches are written by :class:`writer.Writer` in worker threads, at
  most ``upload_concurrency`` at once.  A failed write (any exception: a
  store error, a missing bucket, a bug) is counted
  (``tailor_store_write_failures_total{reason}``) and retried with capped,
  jittered exponential backoff (the same keys) for as long as it fails; it
  never crashes the loop and never lets offsets advance past its records
  (``tailor_ingest_oldest_unflushed_seconds`` shows how long data has waited).
- After writes become durable the committable offsets are committed, then a
  :class:`tailor.format.records.Watermark` is written per committed partition; every
  ``watermark_interval_s`` the watermark of every assigned partition is
  written again, so a quiet one stays fresh (:mod:`tailor.ingest.watermarks`).
- Backpressure: at ``memory_limit`` bytes (buffered batches plus the fetches
  being classified) the biggest batches are sealed and every assigned
  partition is paused until below 3/4 of it.
- Revocation flushes whatever holds the revoked partitions, waits until it is
  durable (bounded by ``shutdown_deadline_s``), commits, then forgets them.
  Records fetched before a rebalance are dropped after it (Kafka delivers
  them again from the committed offset).
- Stop (``stop`` event or ``exit_when_idle_s``): stop fetching, flush, commit,
  leave the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from tailor import metrics
from tailor.config import IngestConfig
from tailor.errors import StorageError, TailorError
from tailor.format import layout, validate_batch
from tailor.format.records import CLOCK_SLACK_NS, Watermark
from tailor.ingest.batcher import OBJECT, TP, Batch, Batcher, Invalid, Item, item_tps
from tailor.ingest.classify import Classifier
from tailor.ingest.watermarks import Watermarks
from tailor.ingest.writer import Writer
from tailor.shards import ShardMap
from tailor.storage import Store
from tailor.store_failures import failure_reason

log = logging.getLogger("tailor.ingest")
POLL_MS = 200
MAX_RECORDS = 5000
CLASSIFY_THREADS = 2  # classifier kernels release the GIL: fetches classify in parallel
CLASSIFY_AHEAD = 3  # fetches being classified while the next one is fetched
RETRY_BASE_S = 0.25  # a failed write is retried after ~0.5 s, 1 s, 2 s … (jittered) …
RETRY_MAX_S = 30.0  # … up to this, for as long as it keeps failing
T = TypeVar("T")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ing: Ingester) -> None:
        self.ing = ing

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.ing.on_revoked([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.ing.on_assigned([(tp.topic, tp.partition) for tp in assigned])


class Ingester:
    """One member of the ingest consumer group (see module doc)."""

    def __init__(self, cfg: IngestConfig, store: Store, shard_map: ShardMap) -> None:
        self.cfg = cfg
        self.store = store
        self.shard_map = shard_map
        self.writer = Writer(store, part_size=cfg.part_size, concurrency=cfg.upload_concurrency)
        self.batcher = Batcher(cfg.flush)
        self.classifier = Classifier(shard_map)
        # Fetches are classified in parallel and added in fetch order.
        self.cpool = ThreadPoolExecutor(CLASSIFY_THREADS, "tailor-classify")
        # (epoch, items, the fetch's key + value bytes: counted against memory_limit too)
        self.classifying: list[tuple[int, asyncio.Future[list[Item]], int]] = []
        self.lock = asyncio.Lock()
        self.sem = asyncio.Semaphore(cfg.upload_concurrency)
        self.inflight: dict[int, asyncio.Task[None]] = {}
        # Store calls block: they run here, so a stuck one cannot hold up the exit.
        self.pool = ThreadPoolExecutor(cfg.upload_concurrency + 2, "tailor-upload")
        self.abandoned = False  # True when exiting with writes still running
        self.wm = Watermarks(cfg.group, cfg.watermark_interval_s)
        self.mark_task: asyncio.Task[None] | None = None
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
        await asyncio.get_running_loop().run_in_executor(self.cpool, validate_batch.warm)
        try:
            await self.consumer.start()
        except KafkaError as exc:
            with contextlib.suppress(KafkaError):
                await self.consumer.stop()
            self.pool.shutdown(wait=False)
            self.cpool.shutdown(wait=False)
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
            self.cpool.shutdown(wait=False, cancel_futures=True)
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
                    self.cpool, self.classifier.classify, fetch)
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

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # -- rebalance ----------------------------------------------------------------------
    async def on_revoked(self, tps: list[TP]) -> None:
        """Flush what holds ``tps``, wait until durable, commit, forget them."""
        self.epoch += 1
        self.last_activity = time.monotonic()
        async with self.lock:
            pending = self.batcher.seal_for(tps)
            deadline = time.monotonic() + self.cfg.shutdown_deadline_s
            ok = await self._drain(pending, deadline)
            await self._commit(only=set(tps))
            self.batcher.revoke(tps)
            self.wm.forget(tps)
        for t, p in tps:  # no stale lag for partitions another member now owns
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(t, str(p))
        log.info("revoked %s%s", _fmt(tps), "" if ok else
                 " (some batches not durable yet: their offsets stay uncommitted)")

    async def on_assigned(self, tps: list[TP]) -> None:
        self.epoch += 1
        self.last_activity = time.monotonic()
        async with self.lock:
            self.batcher.assign(tps)
        self.paused = False
        log.info("assigned %s", _fmt(tps))

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

    # -- writes ---------------------------------------------------------------------------
    def _schedule(self, batches: Iterable[Batch]) -> None:
        for b in batches:
            if b.serial not in self.inflight and b.serial in self.batcher.sealed:
                self.inflight[b.serial] = asyncio.create_task(self._write(b))

    def _retry_failed(self) -> None:
        now = time.monotonic()
        self._schedule(b for b in list(self.batcher.sealed.values())
                       if b.attempts and b.retry_at <= now)

    async def _write(self, b: Batch) -> None:
        try:
            async with self.sem:
                t0 = time.monotonic()
                try:
                    key = await self._blocking(self.writer.write, b)
                except Exception as exc:  # any failure: retried, never lost or stuck
                    self._failed(b, exc)
                    return
                metrics.FLUSH_SECONDS.observe(time.monotonic() - t0)
                if b.kind == OBJECT:
                    metrics.OBJECT_BYTES.observe(b.nbytes)
                self.stats["objects"] += 1
                log.debug("durable: %s (%d payloads, %d bytes)", key, b.payloads, b.nbytes)
                # intake_ns is untrusted: readiness never believes it past the clock.
                self.batcher.done(b, intake_limit_ns=time.time_ns() + CLOCK_SLACK_NS)
                metrics.BUFFERED_BYTES.set(self.batcher.buffered_bytes)
        finally:
            self.inflight.pop(b.serial, None)

    def _failed(self, b: Batch, exc: Exception) -> None:
        """Count a failed write of ``b`` and set when to retry it (capped
        exponential backoff with jitter, whatever the error)."""
        b.attempts += 1
        delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** b.attempts) * random.uniform(0.5, 1.0)
        b.retry_at = time.monotonic() + delay
        reason = failure_reason(exc)
        metrics.STORE_WRITE_FAILURES.labels(reason).inc()
        self.stats["write_failures"] += 1
        log.warning("write of batch %s (%s %s) failed (%s), attempt %d, retrying in %.1f s; its "
                    "offsets wait until it is durable: %s", b.batch_id, b.kind, b.key, reason,
                    b.attempts, delay, exc, exc_info=not isinstance(exc, StorageError))

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

    # -- commits ----------------------------------------------------------------------------
    async def _commit(self, only: set[TP] | None = None) -> bool:
        """Commit every partition whose durable prefix moved; then its watermark.

        Returns False if the commit failed (rebalancing, broker gone): it is
        tried again next time; never raises on Kafka or store errors.
        """
        offsets = {tp: off for tp, off in self.batcher.committable().items()
                   if only is None or tp in only}
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        offsets = {tp: off for tp, off in offsets.items() if tp in assigned}
        if not offsets:
            return True
        try:
            await self.consumer.commit({TopicPartition(t, p): OffsetAndMetadata(off, "")
                                        for (t, p), off in offsets.items()})
        except KafkaError as exc:  # rebalancing: the next commit (or the new owner) does it
            log.warning("commit of %s failed, will retry: %s", _fmt(list(offsets)), exc)
            return False
        metrics.COMMITS.inc()
        self.stats["commits"] += 1
        now = time.time_ns()
        assigned_now = self.consumer.assignment()  # a rebalance may have run meanwhile
        for tp, off in offsets.items():
            self.batcher.mark_committed(tp, off)
            self.wm.queue(self._mark(tp, off, now, TopicPartition(*tp) in assigned_now), now)
        self._start_marks()
        return True

    def _mark(self, tp: TP, committed: int, now_ns: int, assigned: bool = True) -> Watermark:
        """``tp``'s watermark at ``committed`` (no high-water mark when not ``assigned``)."""
        ktp = TopicPartition(*tp)
        part = self.batcher.parts.get(tp)
        hw = self.consumer.highwater(ktp) if assigned else None
        seen = self.consumer.last_poll_timestamp(ktp) if assigned else None
        return self.wm.make(tp, committed, hw, seen, part.max_intake_ns if part else 0, now_ns)

    async def _heartbeat(self) -> None:
        """Queue the watermark of every assigned partition not written for
        ``watermark_interval_s``: where everything fetched is durable and
        committed, at the partition's position (caught up when the broker's
        fresh high-water mark says so), else at its last commit.  A partition
        this member has neither committed nor found caught up is left alone."""
        if time.monotonic() < self.next_heartbeat:
            return
        self.next_heartbeat = time.monotonic() + self.cfg.watermark_interval_s / 4
        now = time.time_ns()
        for ktp in list(self.consumer.assignment()):  # it may change while awaiting
            tp = (ktp.topic, ktp.partition)
            part = self.batcher.parts.get(tp)
            if part is None or not self.wm.due(tp, now):
                continue
            off = part.committed
            if part.settled() and part.next_offset is not None:
                off = part.next_offset
            elif part.settled():  # nothing fetched since assignment: at its position
                off = await self._position(ktp)
                if self.batcher.parts.get(tp) is not part or not part.settled():
                    continue  # a rebalance or a fetch came in meanwhile
            if off is None:
                continue
            mark = self._mark(tp, off, now)
            # Nothing of ours committed yet: only a caught-up mark says more than
            # the previous owner's (whose max_intake_ns it would otherwise drop).
            if mark.caught_up or part.committed is not None:
                self.wm.queue(mark, now)
        self._start_marks()

    async def _position(self, tp: TopicPartition) -> int | None:
        """The next offset to fetch of ``tp``, if known without waiting."""
        try:
            pos = await asyncio.wait_for(self.consumer.position(tp), 0.05)
        except (TimeoutError, KafkaError):
            return None
        return int(pos)

    def _start_marks(self) -> None:
        if self.wm.pending and (self.mark_task is None or self.mark_task.done()):
            self.mark_task = asyncio.create_task(self._write_marks())

    async def _write_marks(self) -> None:
        """Write the queued watermarks (background: a slow store must not hold
        up fetching).  Failures are retried with the next commit or heartbeat."""
        while self.wm.pending:
            marks = self.wm.take()
            try:
                await asyncio.gather(*(self._blocking(
                    self.store.put, layout.watermark_key(m.group, m.topic, m.partition),
                    m.dumps()) for m in marks.values()))
            except StorageError as exc:
                log.warning("watermark write failed: %s", exc)
                self.wm.put_back(marks)
                return

    # -- observability ----------------------------------------------------------------------
    def _lags(self) -> Iterator[tuple[TopicPartition, int]]:
        """Records behind the high water, per assigned partition with a known position."""
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)
            part = self.batcher.parts.get((tp.topic, tp.partition))
            if hw is not None and part is not None and part.next_offset is not None:
                yield tp, max(0, hw - part.next_offset)

    def _update_oldest(self) -> None:
        """``tailor_ingest_oldest_unflushed_seconds``: the oldest batch not durable."""
        b = self.batcher
        oldest = min((x.created for x in (*b.open.values(), *b.sealed.values())), default=None)
        metrics.OLDEST_UNFLUSHED.set(0.0 if oldest is None else time.monotonic() - oldest)

    def _update_lag(self) -> None:
        for tp, n in self._lags():
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(n)

    def lag(self) -> int:
        """Records behind the high water, over partitions with a known position."""
        return sum(n for _, n in self._lags())

    def _log_summary(self) -> None:
        s = self.stats
        now = time.monotonic()
        dt = max(1e-3, now - self.last_log[0])
        rate = (s["payloads"] - self.last_log[1]) / dt
        brate = (s["bytes"] - self.last_log[2]) / dt
        self.last_log = (now, s["payloads"], s["bytes"])
        log.info("payloads=%d (%.0f/s) bytes=%d (%.0f/s) quarantined=%d objects=%d commits=%d "
                 "write_failures=%d buffered=%d open=%d sealed=%d partitions=%d lag=%d%s",
                 s["payloads"], rate, s["bytes"], brate, s["quarantined"], s["objects"],
                 s["commits"],
                 s["write_failures"], self.batcher.buffered_bytes, len(self.batcher.open),
                 len(self.batcher.sealed), len(self.consumer.assignment()), self.lag(),
                 " paused" if self.paused else "")


def fetch_bytes(memory_limit: int) -> int:
    """Bytes one fetch may return: small against the bound, since a fetch is held
    up to about four times over while it is classified (records, their values
    joined, their frames, each shard's part of those)."""
    return max(1 << 20, min(64 << 20, memory_limit // 32))


def _record_bytes(fetch: list[tuple[TP, Any]]) -> int:
    return sum(len(r.value or b"") + len(r.key or b"") for _, recs in fetch for r in recs)


def _fmt(tps: Iterable[TP]) -> str:
    return "[" + ", ".join(f"{t}/{p}" for t, p in sorted(tps)) + "]"
