"""The benchmark dataset: synth records → raw points Parquet (for the peers) and,
when the real ingest is not used, raw objects written directly.

Records are what ``tailor.testing.stream.generate`` gives: Kafka records with a topic,
a partition, a key and a value (some invalid on purpose).  Only valid payloads
carry points; every tool validates with :func:`tailor.format.payload.validate`.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailor.errors import InvalidPayload
from tailor.format import framing, layout, payload
from tailor.format.records import ObjectRecord, OffsetRange, hour_counts
from tailor.shards import ShardMap
from tailor.storage import Store
from tailor.testing.stream import SynthRecord

RAW_SCHEMA = pa.schema([
    ("org_id", pa.uint32()), ("metric_id", pa.uint64()), ("context_key", pa.uint64()),
    ("ts", pa.uint32()), ("value", pa.float64()), ("intake_ns", pa.uint64()),
    ("idx", pa.uint32()),
])


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


def valid_payloads(records: Iterable[SynthRecord]) -> tuple[list[Valid], int]:
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


class RawPointsWriter:
    """Decoded points of valid payloads, with intake_ns and index, appended to one Parquet file.

    ``with RawPointsWriter(path) as w: w.write(valid)`` (any number of
    ``write`` calls: the 10× dataset is ten synth streams in one file).
    """

    def __init__(self, path: str, *, row_group: int = 1 << 20) -> None:
        self.row_group = row_group
        self.points = 0
        self._w = pq.ParquetWriter(path, RAW_SCHEMA)

    def write(self, valid: Iterable[Valid]) -> int:
        """Append every point of ``valid``; returns the number of points written."""
        batch: list[Valid] = []
        n_batch = total = 0
        for v in valid:
            batch.append(v)
            n_batch += v.payload.n_points
            total += v.payload.n_points
            if n_batch >= self.row_group:
                self._flush(batch)
                batch, n_batch = [], 0
        self._flush(batch)
        self.points += total
        return total

    def _flush(self, batch: list[Valid]) -> None:
        if not batch:
            return
        pts = np.concatenate([v.payload.points() for v in batch])
        counts = np.array([v.payload.n_points for v in batch], dtype=np.int64)
        org = np.repeat(np.array([v.payload.org_id for v in batch], dtype=np.uint32), counts)
        intake = np.repeat(np.array([v.payload.intake_ns for v in batch], dtype=np.uint64),
                           counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        idx = (np.arange(len(pts), dtype=np.int64) - starts).astype(np.uint32)
        self._w.write_table(pa.table({
            "org_id": org, "metric_id": pts["metric_id"], "context_key": pts["context_key"],
            "ts": pts["ts"], "value": pts["value"], "intake_ns": intake, "idx": idx,
        }, schema=RAW_SCHEMA), row_group_size=self.row_group)

    def close(self) -> None:
        self._w.close()

    def __enter__(self) -> RawPointsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_raw_points(valid: Sequence[Valid], path: str, *,
                     row_group: int = 1 << 20) -> int:
    """Decode every valid payload's points once, with intake_ns and index, to Parquet.

    Returns the number of points written.
    """
    with RawPointsWriter(path, row_group=row_group) as w:
        return w.write(valid)


def iter_valid(records: Iterable[SynthRecord]) -> Iterator[Valid]:
    """The valid records, decoded one at a time (nothing kept)."""
    for r in records:
        try:
            p = payload.validate(r.key, r.value)
        except InvalidPayload:
            continue
        assert r.value is not None
        yield Valid(r.topic, _partition(r), r.value, p)


class _Open:
    """A raw object being filled: frames (zstd bytes as received) and its index facts."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.size = 0
        self.topics: dict[str, int] = {}
        self.ranges: dict[tuple[str, int], list[int]] = {}
        self.hours: defaultdict[int, int] = defaultdict(int)
        self.orgs: set[int] = set()
        self.min_ts, self.max_ts = 2**32, -1
        self.min_intake, self.max_intake = 2**64, -1
        self.points = 0

    def add(self, v: Valid, off: int) -> None:
        p = v.payload
        tix = self.topics.setdefault(v.topic, len(self.topics))
        frame = framing.encode_frame(
            v.value, raw_len=len(p.raw), org_id=p.org_id, n_points=p.n_points,
            intake_ns=p.intake_ns, offset=off, partition=v.partition, topic_idx=tix)
        self.frames.append(frame)
        self.size += len(frame)
        r = self.ranges.setdefault((v.topic, v.partition), [off, off])
        r[0], r[1] = min(r[0], off), max(r[1], off)
        self.orgs.add(p.org_id)
        self.min_intake, self.max_intake = (min(self.min_intake, p.intake_ns),
                                            max(self.max_intake, p.intake_ns))
        ts = p.points()["ts"]
        if len(ts):
            h, c = np.unique(ts - ts % layout.HOUR, return_counts=True)
            for hh, cc in zip(h.tolist(), c.tolist(), strict=True):
                self.hours[int(hh)] += int(cc)
            self.min_ts, self.max_ts = min(self.min_ts, int(ts.min())), max(self.max_ts,
                                                                            int(ts.max()))
        self.points += p.n_points

    def write(self, shard: str, raw: Store) -> None:
        batch_id = f"bench-{uuid.uuid4().hex}"
        body = b"".join(self.frames)
        key = layout.object_key(shard, batch_id)
        raw.put(key, body)
        rec = ObjectRecord(
            key=key, shard=shard, batch_id=batch_id, bytes=len(body), payloads=len(self.frames),
            points=self.points, min_ts=max(self.min_ts, 0) if self.max_ts >= 0 else 0,
            max_ts=max(self.max_ts, 0), min_intake_ns=self.min_intake,
            max_intake_ns=self.max_intake, topics=list(self.topics),
            offsets=[OffsetRange(topic=t, partition=p, first=r[0], last=r[1])
                     for (t, p), r in sorted(self.ranges.items())],
            orgs=sorted(self.orgs), hours=hour_counts(dict(self.hours)),
            written_ns=time.time_ns())
        data = rec.dumps()
        for key in layout.index_keys(shard, self.hours, batch_id):
            raw.put(key, data)


def write_raw_objects(valid: Iterable[Valid], raw: Store, shard_map: ShardMap, *,
                      max_object_bytes: int = 64 * 2**20,
                      offsets: dict[tuple[str, int], int] | None = None) -> int:
    """Write raw objects and index records as ingest would (without Kafka).

    Streams: only the open objects' zstd frames are held.  Offsets are the
    records' positions within their (topic, partition) among the valid ones.
    A payload goes to the shard of its org at its first point's ts.  Returns
    the number of objects written.  Pass the same ``offsets`` dict to calls
    that write one store, so that Kafka coordinates stay unique across them.
    """
    next_offset: dict[tuple[str, int], int] = defaultdict(int)
    if offsets is not None:
        next_offset.update(offsets)
    open_: dict[str, _Open] = {}
    n_objects = 0
    for v in valid:
        off = next_offset[(v.topic, v.partition)]
        next_offset[(v.topic, v.partition)] = off + 1
        pts = v.payload.points()
        ts0 = int(pts["ts"][0]) if len(pts) else 0
        shard = shard_map.shard_for(v.payload.org_id, ts0)
        o = open_.setdefault(shard, _Open())
        o.add(v, off)
        if o.size >= max_object_bytes:
            o.write(shard, raw)
            n_objects += 1
            del open_[shard]
    for shard, o in sorted(open_.items()):
        o.write(shard, raw)
        n_objects += 1
    if offsets is not None:
        offsets.update(next_offset)
    return n_objects
