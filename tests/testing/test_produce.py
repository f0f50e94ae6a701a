"""tailor.testing.produce against a real Tansu broker: what is sent is what is stored."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tailor.config import ProduceConfig
from tailor.errors import TailorError
from tailor.format import payload
from tailor.testing import services
from tailor.testing.oracle import load_expected
from tailor.testing.produce import produce_records, run
from tailor.testing.stream import SynthRecord, generate


async def consume_all(bootstrap: str, topics: list[str], partitions: int, n: int
                      ) -> dict[tuple[str, int, int], tuple[bytes | None, bytes | None]]:
    """Every record of ``topics`` by (topic, partition, offset); bounded wait for ``n``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_bytes=16 << 20, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    got: dict[tuple[str, int, int], tuple[bytes | None, bytes | None]] = {}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    got[(m.topic, m.partition, m.offset)] = (m.key, m.value)
    finally:
        await consumer.stop()
    return got


def test_run_sends_every_record_and_writes_expected(
        broker: services.Broker, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = [f"prod-{tag}-a", f"prod-{tag}-b"]  # run() creates them
    cfg = ProduceConfig(brokers=broker.bootstrap, topics=topics, partitions=3, points=5000,
                        seed=2, orgs=30, expected=str(tmp_path / "exp"))
    report = run(cfg)
    stream = generate(cfg)
    assert report.records == len(stream.records) and report.points == 5000
    assert sum(report.invalid.values()) >= len(payload.REASONS)
    text = report.summary()
    assert "payloads/s" in text and "MB/s" in text and "too_large=" in text

    got = asyncio.run(consume_all(broker.bootstrap, topics, 3, len(stream.records)))
    assert len(got) == len(stream.records)
    for r, off in zip(stream.records, report.offsets, strict=True):
        key, value = got[(r.topic, r.partition, off)]
        assert (key, value) == (r.key, r.value), r.kind
    exp = load_expected(tmp_path / "exp")
    assert exp.payloads is not None
    assert exp.payloads.column("offset").to_pylist() == report.offsets
    assert exp.summary["points"] == 5000
    assert sorted(exp.chunks) == sorted(stream.expected())


def test_produce_records_paced_and_ordered(broker: services.Broker, topics: list[str]) -> None:
    recs = [SynthRecord(topics[0], 1, b"1", b"x%d" % i, "valid") for i in range(20)]
    t0 = time.monotonic()
    offsets = asyncio.run(produce_records(broker.bootstrap, recs, rate=100.0))
    assert time.monotonic() - t0 >= 0.18
    assert offsets == list(range(offsets[0], offsets[0] + 20))


def test_topic_with_too_few_partitions(broker: services.Broker, topics: list[str]) -> None:
    recs = [SynthRecord(topics[0], 9, b"1", b"x", "valid")]
    with pytest.raises(TailorError, match="partitions"):
        asyncio.run(produce_records(broker.bootstrap, recs))


@pytest.mark.timeout(120)  # it gives up with an error, never hangs
def test_unreachable_broker_names_address_and_fix() -> None:
    addr = f"127.0.0.1:{services.free_port()}"
    cfg = ProduceConfig(brokers=addr, topics=["t"], points=10)
    with pytest.raises(TailorError) as ei:
        run(cfg)
    assert addr in str(ei.value) and "Fix:" in str(ei.value)
