"""Rebalances: revocation flushes and commits what it must, assignment starts afresh.

Revocation flushes whatever holds the revoked partitions, waits until it is
durable (bounded by ``shutdown_deadline_s``), commits, then forgets them.
Records fetched before a rebalance are dropped after it (the epoch bumped
here; Kafka delivers them again from the committed offset).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from aiokafka import ConsumerRebalanceListener, TopicPartition

from tailor import metrics
from tailor.ingest.batcher import TP
from tailor.ingest.commits import Commits
from tailor.ingest.member import fmt_tps, log
from tailor.ingest.write_retry import Writes


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ing: Rebalance) -> None:
        self.ing = ing

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.ing.on_revoked([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.ing.on_assigned([(tp.topic, tp.partition) for tp in assigned])


class Rebalance(Writes, Commits):
    """What aiokafka's rebalance listener calls (:class:`_Listener`)."""

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
        log.info("revoked %s%s", fmt_tps(tps), "" if ok else
                 " (some batches not durable yet: their offsets stay uncommitted)")

    async def on_assigned(self, tps: list[TP]) -> None:
        self.epoch += 1
        self.last_activity = time.monotonic()
        async with self.lock:
            self.batcher.assign(tps)
        self.paused = False
        log.info("assigned %s", fmt_tps(tps))

