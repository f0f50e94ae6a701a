"""``tailor produce``: send a :mod:`tailor.testing.stream` stream to Kafka.

:func:`run` generates the stream of a :class:`ProduceConfig`, creates the
topics if missing, sends every record to its explicit partition with its key
(pipelined, a bounded number in flight, optionally paced to ``cfg.rate``
payloads/s), records each record's offset and writes the expected outcome when
``cfg.expected`` is set.  :func:`produce_records` is the sending half alone,
for tests that craft their own records.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tailor.config import ProduceConfig
from tailor.errors import TailorError
from tailor.format import payload
from tailor.shards import load as load_shards
from tailor.testing.stream import DUPLICATE, VALID, Synth, SynthRecord, generate

MAX_IN_FLIGHT: Final = 2000  # sends not yet acknowledged
CONNECT_TIMEOUT_S: Final = 20.0
SEND_TIMEOUT_S: Final = 60.0  # per acknowledgement wait


@dataclass
class ProduceReport:
    """What :func:`run` sent."""

    records: int
    valid: int
    duplicates: int
    invalid: dict[str, int]
    points: int
    bytes: int
    seconds: float
    generate_seconds: float
    offsets: list[int] = field(repr=False, default_factory=list)
    expected_dir: str | None = None

    def summary(self) -> str:
        """A few human-readable lines."""
        secs = max(self.seconds, 1e-9)
        inv = ", ".join(f"{k}={v}" for k, v in self.invalid.items() if v) or "none"
        lines = [
            f"produced {self.records} records ({self.valid} valid payloads, {self.duplicates} "
            f"duplicate deliveries, {sum(self.invalid.values())} invalid) with {self.points} "
            f"points in {self.seconds:.1f} s: {self.records / secs:.0f} payloads/s, "
            f"{self.bytes / secs / 1e6:.1f} MB/s (generated in {self.generate_seconds:.1f} s)",
            f"invalid by reason: {inv}",
        ]
        if self.expected_dir:
            lines.append(f"expected outcome written to {self.expected_dir}")
        return "\n".join(lines)


def _unreachable(bootstrap: str, exc: BaseException | None) -> TailorError:
    detail = f": {exc}" if exc is not None and str(exc) else ""
    return TailorError(f"Kafka broker {bootstrap} does not answer{detail}", brokers=bootstrap,
                       fix="start the broker or pass --brokers HOST:PORT of a running one")


async def _start_producer(bootstrap: str) -> Any:
    """A started AIOKafkaProducer; raises :class:`TailorError` if the broker is unreachable."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20,
        max_request_size=8 << 20, request_timeout_ms=int(SEND_TIMEOUT_S * 1000),
    )
    try:
        await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        raise _unreachable(bootstrap, exc) from None
    return producer


async def produce_records(bootstrap: str, records: Sequence[SynthRecord],
                          rate: float | None = None) -> list[int]:
    """Send ``records`` in order; returns each record's Kafka offset.

    Each record goes to its own ``topic``/``partition`` with its ``key``; at
    most :data:`MAX_IN_FLIGHT` are unacknowledged at a time.  ``rate`` paces
    the sends (records/s; None = as fast as possible).  Topics must exist.
    Raises :class:`TailorError` when the broker does not answer or rejects a
    record (the message names the record).  Blocks until every record is
    acknowledged (acks=all).
    """
    from aiokafka.errors import KafkaError

    producer = await _start_producer(bootstrap)
    offsets: list[int] = [-1] * len(records)
    pending: deque[tuple[int, asyncio.Future[Any]]] = deque()

    async def drain(keep: int) -> None:
        while len(pending) > keep:
            i, fut = pending.popleft()
            try:
                md = await asyncio.wait_for(fut, SEND_TIMEOUT_S)
            except (KafkaError, TimeoutError) as exc:
                r = records[i]
                raise TailorError(f"record {i} was not acknowledged: {exc!r}", brokers=bootstrap,
                                  topic=r.topic, partition=r.partition,
                                  fix="check the broker's log") from None
            offsets[i] = int(md.offset)

    try:
        needed: dict[str, int] = {}
        for r in records:
            needed[r.topic] = max(needed.get(r.topic, 0), r.partition + 1)
        for topic, n in needed.items():
            await _wait_partitions(producer, bootstrap, topic, n)
        t0 = time.monotonic()
        for i, r in enumerate(records):
            if rate is not None:
                ahead = t0 + i / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            try:
                fut = await producer.send(r.topic, value=r.value, key=r.key, partition=r.partition)
            except KafkaError as exc:
                raise TailorError(f"cannot send record {i}: {exc!r}", brokers=bootstrap,
                                  topic=r.topic, partition=r.partition,
                                  fix="check the broker's log") from None
            pending.append((i, fut))
            if len(pending) >= MAX_IN_FLIGHT:
                await drain(MAX_IN_FLIGHT // 2)
        await drain(0)
    finally:
        for _, fut in pending:
            fut.cancel()
        await producer.stop()
    return offsets


async def _wait_partitions(producer: Any, bootstrap: str, topic: str, n: int) -> None:
    """Wait (bounded) until ``topic`` shows at least ``n`` partitions, else raise."""
    from aiokafka.errors import KafkaError

    have: set[int] = set()
    for _ in range(50):  # a just-created topic's metadata may lag
        try:
            have = set(await asyncio.wait_for(producer.partitions_for(topic), CONNECT_TIMEOUT_S))
        except (KafkaError, TimeoutError) as exc:
            raise _unreachable(bootstrap, exc) from None
        if len(have) >= n:
            return
        await asyncio.sleep(0.1)
        await producer.client.force_metadata_update()
    raise TailorError(f"topic {topic!r} has {len(have)} partitions, {n} needed", topic=topic,
                      brokers=bootstrap,
                      fix=f"pass --partitions {max(1, len(have))} or produce to a new topic")


async def _produce(cfg: ProduceConfig, stream: Synth) -> list[int]:
    from aiokafka.errors import KafkaError

    from tailor.testing.services import create_topics

    try:
        await asyncio.wait_for(create_topics(cfg.brokers, cfg.topics, cfg.partitions),
                               CONNECT_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _unreachable(cfg.brokers, exc) from None
    return await produce_records(cfg.brokers, stream.records, cfg.rate)


def run(cfg: ProduceConfig) -> ProduceReport:
    """Generate, send and (with ``cfg.expected``) write the expected outcome.

    Blocks until every record is acknowledged.  Raises :class:`TailorError`
    when the broker does not answer or a topic is too small, :class:`ConfigError`
    for a bad ``cfg.shards_file`` (before anything is sent), ``OSError`` when
    the expected directory cannot be written.
    """
    load_shards(cfg.shards_file)  # a bad shards file is a ConfigError before any sending
    g0 = time.monotonic()
    stream = generate(cfg)
    gen_s = time.monotonic() - g0
    t0 = time.monotonic()
    offsets = asyncio.run(_produce(cfg, stream))
    secs = time.monotonic() - t0
    if cfg.expected:
        stream.write_expected(cfg.expected, offsets)
    kinds = stream.kind_counts()
    return ProduceReport(
        records=len(stream.records), valid=kinds[VALID], duplicates=kinds[DUPLICATE],
        invalid={r: kinds[r] for r in payload.REASONS}, points=int(stream.pay_n.sum()),
        bytes=sum(len(r.value or b"") + len(r.key or b"") for r in stream.records),
        seconds=secs, generate_seconds=gen_s, offsets=offsets, expected_dir=cfg.expected,
    )
