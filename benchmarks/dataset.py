"""The benchmark dataset: synth records → raw points Parquet (for the peers) and,
when the real ingest is not used, raw objects written directly.

Records are what ``tailor.synth.generate`` gives: Kafka records with a topic,
a partition, a key and a value (some invalid on purpose).  Only valid payloads
carry points; every tool validates with :func:`tailor.payload.validate`.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailor import framing, layout, payload
from tailor.errors import InvalidPayload
from tailor.records import ObjectRecord, OffsetRange, hour_counts
from tailor.shards import ShardMap
from tailor.storage import Store

RAW_SCHEMA = pa.schema([
    ("org_id", pa.uint32()), ("metric_id", pa.uint64()), ("context_key", pa.uint64()),
    ("ts", pa.uint32()), ("value", pa.float64()), ("intake_ns", pa.uint64()),
    ("idx", pa.uint32()),
])


class KafkaRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Valid:
    """A valid record: where it came from, and its decoded payload."""

    topic: str
    partition: int
    value: bytes
    payload: payload.Payload


def _partition(rec: Any) -> int:
    p = getattr(rec, "partition", None)
    return int(p) if p is not None else 0


def valid_payloads(records: Iterable[KafkaRecord]) -> tuple[list[Valid], int]:
    """The valid records, in order, and the number of invalid ones."""
    out: list[Valid] = []
    invalid = 0
    for r in records:
        try:
            p = payload.validate(r.key, r.value)
        except InvalidPayload:
            invalid += 1
            continue
        assert r.value is not None
        out.append(Valid(r.topic, _partition(r), r.value, p))
    return out, invalid


@dataclass(frozen=True, slots=True)
class Dataset:
    """Facts about the generated points, for RESULTS.md."""

    records: int
    valid_payloads: int
    invalid_payloads: int
    points: int  # points of valid payloads, duplicates included
    payload_bytes: int  # compressed value bytes of valid payloads
    raw_points_bytes: int  # size of the decoded Parquet file


def write_raw_points(valid: Sequence[Valid], path: str, *,
                     row_group: int = 1 << 20) -> int:
    """Decode every valid payload's points once, with intake_ns and index, to Parquet.

    Returns the number of points written.
    """
    total = 0
    with pq.ParquetWriter(path, RAW_SCHEMA) as w:
        batch: list[Valid] = []
        n_batch = 0

        def flush() -> None:
            if not batch:
                return
            pts = np.concatenate([v.payload.points() for v in batch])
            counts = np.array([v.payload.n_points for v in batch], dtype=np.int64)
            org = np.repeat(np.array([v.payload.org_id for v in batch], dtype=np.uint32), counts)
            intake = np.repeat(np.array([v.payload.intake_ns for v in batch], dtype=np.uint64),
                               counts)
            starts = np.repeat(np.cumsum(counts) - counts, counts)
            idx = (np.arange(len(pts), dtype=np.int64) - starts).astype(np.uint32)
            w.write_table(pa.table({
                "org_id": org, "metric_id": pts["metric_id"], "context_key": pts["context_key"],
                "ts": pts["ts"], "value": pts["value"], "intake_ns": intake, "idx": idx,
            }, schema=RAW_SCHEMA), row_group_size=row_group)
            batch.clear()

        for v in valid:
            batch.append(v)
            n_batch += v.payload.n_points
            total += v.payload.n_points
            if n_batch >= row_group:
                flush()
                n_batch = 0
        flush()
    return total


def write_raw_objects(valid: Sequence[Valid], raw: Store, smap: ShardMap, *,
                      max_object_bytes: int = 64 * 2**20) -> int:
    """Write raw objects and index records as ingest would (without Kafka).

    Offsets are the records' positions within their (topic, partition).  A
    payload goes to the shard of its org at its first point's ts.  Returns
    the number of objects written.
    """
    next_offset: dict[tuple[str, int], int] = defaultdict(int)
    by_shard: dict[str, list[tuple[Valid, int]]] = defaultdict(list)
    for v in valid:
        off = next_offset[(v.topic, v.partition)]
        next_offset[(v.topic, v.partition)] = off + 1
        pts = v.payload.points()
        ts0 = int(pts["ts"][0]) if len(pts) else 0
        by_shard[smap.shard_for(v.payload.org_id, ts0)].append((v, off))
    n_objects = 0
    for shard, items in sorted(by_shard.items()):
        cur: list[tuple[Valid, int]] = []
        size = 0
        for item in items:
            cur.append(item)
            size += framing.HEADER_SIZE + len(item[0].value)
            if size >= max_object_bytes:
                _write_object(shard, cur, raw)
                n_objects += 1
                cur, size = [], 0
        if cur:
            _write_object(shard, cur, raw)
            n_objects += 1
    return n_objects


def _write_object(shard: str, items: list[tuple[Valid, int]], raw: Store) -> None:
    batch_id = f"bench-{uuid.uuid4().hex}"
    topics = sorted({v.topic for v, _ in items})
    tix = {t: i for i, t in enumerate(topics)}
    frames: list[bytes] = []
    ranges: dict[tuple[str, int], list[int]] = {}
    hours: defaultdict[int, int] = defaultdict(int)
    orgs: set[int] = set()
    min_ts, max_ts = 2**32, -1
    points = 0
    for v, off in items:
        p = v.payload
        frames.append(framing.encode_frame(
            v.value, raw_len=len(p.raw), org_id=p.org_id, n_points=p.n_points,
            intake_ns=p.intake_ns, offset=off, partition=v.partition, topic_idx=tix[v.topic]))
        r = ranges.setdefault((v.topic, v.partition), [off, off])
        r[0], r[1] = min(r[0], off), max(r[1], off)
        orgs.add(p.org_id)
        ts = p.points()["ts"]
        if len(ts):
            h, c = np.unique(ts - ts % layout.HOUR, return_counts=True)
            for hh, cc in zip(h.tolist(), c.tolist(), strict=True):
                hours[int(hh)] += int(cc)
            min_ts, max_ts = min(min_ts, int(ts.min())), max(max_ts, int(ts.max()))
        points += p.n_points
    body = b"".join(frames)
    key = layout.object_key(shard, batch_id)
    raw.put(key, body)
    rec = ObjectRecord(
        key=key, shard=shard, batch_id=batch_id, bytes=len(body), payloads=len(items),
        points=points, min_ts=max(min_ts, 0) if max_ts >= 0 else 0, max_ts=max(max_ts, 0),
        min_intake_ns=min(v.payload.intake_ns for v, _ in items),
        max_intake_ns=max(v.payload.intake_ns for v, _ in items),
        topics=topics,
        offsets=[OffsetRange(topic=t, partition=p, first=r[0], last=r[1])
                 for (t, p), r in sorted(ranges.items())],
        orgs=sorted(orgs), hours=hour_counts(dict(hours)), written_ns=time.time_ns())
    data = rec.dumps()
    for hour in sorted(hours):
        raw.put(layout.index_key(shard, hour, batch_id), data)
