"""Offset commits and the partition watermarks written after them.

After writes become durable the committable offsets are committed, then a
:class:`tailor.format.records.Watermark` is written per committed partition; every
``watermark_interval_s`` the watermark of every assigned partition is written
again, so a quiet one stays fresh (:mod:`tailor.ingest.watermarks`).
Watermarks are written in a background task; Kafka and store errors are
logged and retried, never raised.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from tailor import metrics
from tailor.errors import StorageError
from tailor.format import layout
from tailor.format.records import Watermark
from tailor.ingest.batcher import TP
from tailor.ingest.member import Member, fmt_tps, log


class Commits(Member):
    """Commits, watermark heartbeats and watermark writes."""

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
            log.warning("commit of %s failed, will retry: %s", fmt_tps(list(offsets)), exc)
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

