"""Real-component helpers for the pipeline tests: produce synth records, ingest them, compare."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pyarrow as pa

from tailor.config import FlushPolicy, IngestConfig, StoreConfig
from tailor.storage import Store
from tailor.testing.stream import SynthRecord
from tests import contract


def send(bootstrap: str, records: Sequence[SynthRecord]) -> None:
    """Send ``records`` to their topic and partition, in order; blocks until acked."""
    from tailor.testing.produce import produce_records

    asyncio.run(produce_records(bootstrap, records))


def ingest(bootstrap: str, topics: list[str], raw: StoreConfig, *, shards_file: str | None,
           group: str = "ops") -> None:
    """Run `tailor ingest` in-process until idle; everything consumed is durable after."""
    from tailor.ingest.service import run

    cfg = IngestConfig(brokers=bootstrap, topics=topics, group=group, raw=raw,
                       flush=FlushPolicy(max_age_s=0.5), shards_file=shards_file,
                       exit_when_idle_s=4.0, log_every_s=60.0, metadata_max_age_s=1.0)
    assert run(cfg) == 0


def mismatches(out: Store, expected: Mapping[tuple[str, int], pa.Table]) -> list[str]:
    """Chunks whose published rows differ from the oracle's (empty: all equal).

    Read as an outside reader would (tests/contract.py: manifest as plain JSON,
    files in manifest order, key order checked) and compared row for row, so
    unsorted rows or files listed out of order fail too.
    """
    return contract.mismatches(out.fs, out.path(""), expected)
