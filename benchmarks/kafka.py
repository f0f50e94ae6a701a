"""Kafka side of the ingest benchmark: the bare aiokafka fetch loop (the client's
ceiling), and sending the dataset's records with ``tailor.testing.produce``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.stats import Throughput

# Same fetch sizes for the bare loop as a tuned consumer would use.
FETCH_MAX_BYTES = 64 * 2**20
PARTITION_FETCH_BYTES = 8 * 2**20


@dataclass(frozen=True, slots=True)
class FetchResult(Throughput):
    records: int  # after the first non-empty fetch (which starts the clock)
    value_bytes: int
    seconds: float  # first non-empty fetch → last record of the end offsets
    total_records: int  # every record read, the first fetch included


async def _bare_fetch(bootstrap: str, ends: Mapping[tuple[str, int], int], timeout_s: float,
                      validate: bool) -> FetchResult:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from tailor.format.validate_batch import check, warm

    if validate:
        warm()  # load the kernels before the clock, as the ingester does before it joins

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t, p in sorted(ends)]
        for t in sorted({t for t, _ in ends}):
            await _partitions(consumer, t)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        # The producer's acknowledged ends, not ListOffsets(latest): Tansu's may under-report.
        end = {tp: ends[(tp.topic, tp.partition)] for tp in parts}
        begin = await consumer.beginning_offsets(parts)
        left = {tp: end[tp] - begin[tp] for tp in parts if end[tp] > begin[tp]}
        records = value_bytes = total = 0
        t_first: float | None = None
        deadline = time.perf_counter() + timeout_s
        while left:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"bare fetch: {sum(left.values())} records left after "
                                   f"{timeout_s} s")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            first = t_first is None and any(batches.values())
            if validate:  # the contract's checks, inline, one thread: no writes, no Kafka commits
                recs = [m for msgs in batches.values() for m in msgs]
                check([m.key for m in recs], [m.value for m in recs])
            for tp, msgs in batches.items():
                total += len(msgs)
                if not first:
                    records += len(msgs)
                    value_bytes += sum(len(m.value) for m in msgs if m.value is not None)
                if tp in left and msgs:
                    left[tp] = end[tp] - (msgs[-1].offset + 1)
                    if left[tp] <= 0:
                        del left[tp]
            if first:
                t_first = time.perf_counter()
        t_end = time.perf_counter()
        return FetchResult(records, value_bytes, t_end - (t_first or t_end), total)
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    for _ in range(50):
        ps = consumer.partitions_for_topic(topic)
        if ps:
            return set(ps)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic!r} has no partitions")


def bare_fetch(bootstrap: str, ends: Mapping[tuple[str, int], int], timeout_s: float = 600, *,
               validate: bool = False) -> FetchResult:
    """Read every record up to ``ends`` (per topic/partition) once with a plain consumer.

    ``ends``: the producer's acknowledged end offsets (see :func:`produce`).

    ``validate``: also run the contract's payload checks on every fetch
    (:func:`tailor.format.validate_batch.check`, the kernel ingest uses), inline: the
    least work any ingester must do per record, without writing anything.
    """
    return asyncio.run(_bare_fetch(bootstrap, ends, timeout_s, validate))


def produce(bootstrap: str, records: Sequence[Any]) -> dict[tuple[str, int], int]:
    """Send synth records to their topic/partition with the real ``tailor produce`` sender.

    Returns the acknowledged end offset (last acknowledged offset + 1) of every
    (topic, partition) written: the truth for "every record produced".
    """
    from tailor.testing.produce import produce_records

    offsets = asyncio.run(produce_records(bootstrap, records))
    ends: dict[tuple[str, int], int] = {}
    for r, off in zip(records, offsets, strict=True):
        tp = (r.topic, int(r.partition))
        ends[tp] = max(ends.get(tp, 0), off + 1)
    return ends
