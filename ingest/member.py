"""The state one ingest consumer-group member holds, and what it shows of it.

:class:`Member` declares the attributes :class:`tailor.ingest.consumer.Ingester`
sets up; the parts of the member's job are mixins over it, each in its own
module: :class:`tailor.ingest.write_retry.Writes` (writes and retries),
:class:`tailor.ingest.commits.Commits` (commits and watermarks),
:class:`tailor.ingest.rebalance.Rebalance` (revocation and assignment).  Here:
the store-call executor (:meth:`Member._blocking`) and observability (lag,
oldest unflushed batch, the periodic summary line).  Nothing here raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from tailor import metrics
from tailor.config import IngestConfig
from tailor.ingest.batcher import TP, Batcher, Item
from tailor.ingest.classify import Classifier
from tailor.ingest.watermarks import Watermarks
from tailor.ingest.writer import Writer
from tailor.shards import ShardMap
from tailor.storage import Store

log = logging.getLogger("tailor.ingest")
T = TypeVar("T")


class Member:
    """The attributes of one consumer-group member (set by ``Ingester.__init__``)."""

    cfg: IngestConfig
    store: Store
    shard_map: ShardMap
    writer: Writer
    batcher: Batcher
    classifier: Classifier
    classify_pool: ThreadPoolExecutor  # classifier threads
    # (epoch, items, the fetch's key + value bytes: counted against memory_limit too)
    classifying: list[tuple[int, asyncio.Future[list[Item]], int]]
    lock: asyncio.Lock  # held while the batcher changes (fetches, rebalances)
    sem: asyncio.Semaphore  # at most upload_concurrency writes at once
    inflight: dict[int, asyncio.Task[None]]  # batch serial → its write
    pool: ThreadPoolExecutor  # store calls
    abandoned: bool
    wm: Watermarks
    mark_task: asyncio.Task[None] | None
    next_heartbeat: float
    epoch: int
    paused: bool
    last_activity: float
    last_log: tuple[float, int, int]
    stats: dict[str, int]
    consumer: AIOKafkaConsumer

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


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



def fmt_tps(tps: Iterable[TP]) -> str:
    return "[" + ", ".join(f"{t}/{p}" for t, p in sorted(tps)) + "]"
