"""One Kafka fetch → batcher items, batch-wise: no I/O, no asyncio, no per-payload Python.

:meth:`Classifier.classify` takes the records of one ``getmany`` result,
validates them together (:func:`tailor.format.validate_batch.check`), routes the valid
payloads to their raw shards (:meth:`tailor.shards.ShardMap.shard_codes`),
frames them (:func:`tailor.format.framing.encode_frames`), and returns one
:class:`~tailor.ingest.batcher.Valid` per raw shard (its frames back to back
plus everything the object record needs) and one
:class:`~tailor.ingest.batcher.Invalid` per invalid record.  The heavy parts
(zstd, checks, framing, CRCs) run in numba kernels that release the GIL, so
a classifier thread overlaps the Kafka fetch.

Frame ``topic_idx`` values index the classifier's topic table, which only
ever grows (a topic keeps its index for the classifier's life): every
``Valid.topics`` is a prefix of a later one, so batches never renumber.
Never raises on bad records.

Three names, three jobs:

- :func:`tailor.format.payload.validate`: the reference rules for one record (the
  contract, docs/contracts.md "Point payload"; the single authority on
  validity and on the reason a record is invalid).
- :func:`tailor.format.validate_batch.check`: the same rules over a whole fetch in one
  numba pass; it only ever accepts, and hands every record it does not
  accept to ``payload.validate``.
- classify (this module): ingest's step after the fetch: ``validate_batch.check``,
  then routing to raw shards and framing, into batcher items.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tailor.format import framing, validate_batch
from tailor.format.records import QuarantineEntry
from tailor.ingest.batcher import TP, Invalid, Item, Valid
from tailor.ingest.orgvolume import by_code as volumes_by_code
from tailor.shards import ShardMap

MAX_TOPICS = 1 << 16  # frame topic_idx is a u16


class Record(Protocol):
    """What a Kafka consumer record must offer (aiokafka's ConsumerRecord does).

    The one record type of the ingest package: the consume loop
    (:mod:`tailor.ingest.consumer`) and :meth:`Classifier.classify` take it.
    """

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int | None: ...


class Classifier:
    """Turns fetches into items.  Thread-safe: fetches may be classified in parallel."""

    def __init__(self, shard_map: ShardMap) -> None:
        self.shard_map = shard_map
        self.shards = shard_map.all_shards()
        self.topics: list[str] = []
        self._topic_idx: dict[str, int] = {}
        self._lock = threading.Lock()

    def _table(self, topics: list[str]) -> tuple[list[int], tuple[str, ...]]:
        """Indices of ``topics`` in the topic table (added if new), and the table."""
        with self._lock:
            out = []
            for topic in topics:
                i = self._topic_idx.get(topic)
                if i is None:
                    if len(self.topics) >= MAX_TOPICS:
                        raise ValueError(f"more than {MAX_TOPICS} topics in one ingester")
                    i = self._topic_idx[topic] = len(self.topics)
                    self.topics.append(topic)
                out.append(i)
            return out, tuple(self.topics)

    def classify(self, fetch: Sequence[tuple[TP, Sequence[Record]]]) -> list[Item]:
        """Items for the records of one fetch (per partition, in offset order).

        Returns the :class:`Invalid` items in fetch order, then one
        :class:`Valid` per raw shard.
        """
        tps = [tp for tp, _ in fetch]
        recs = [r for _, rs in fetch for r in rs]
        n = len(recs)
        if not n:
            return []
        keys = [r.key for r in recs]
        values = [r.value for r in recs]
        offsets = np.fromiter((r.offset for r in recs), np.int64, n)
        tpi = np.repeat(np.arange(len(tps), dtype=np.int64), [len(rs) for _, rs in fetch])
        chk = validate_batch.check(keys, values)
        items: list[Item] = []
        for i, exc in sorted(chk.errors.items()):
            (topic, part), r = tps[int(tpi[i])], recs[i]
            entry = QuarantineEntry(
                topic=topic, partition=part, offset=r.offset, reason=exc.reason,
                detail=exc.detail[:500],
                key_b64=None if r.key is None else base64.b64encode(r.key).decode(),
                value_b64=None if r.value is None else base64.b64encode(r.value).decode(),
                timestamp_ms=r.timestamp)
            items.append(Invalid((topic, part), r.offset, exc.reason, entry.dumps() + b"\n"))
        valid = np.flatnonzero(chk.ok)
        if len(valid):
            items += self._groups(tps, tpi, offsets, chk, valid)
        return items

    def _groups(self, tps: list[TP], tpi: np.ndarray, offsets: np.ndarray,
                chk: validate_batch.Checked, valid: np.ndarray) -> list[Valid]:
        """One :class:`Valid` per raw shard of the valid records ``valid``."""
        n = len(offsets)
        ntp = len(tps)
        codes = np.full(n, -1, np.int64)
        codes[valid] = self.shard_map.shard_codes(
            chk.org[valid], (chk.intake_ns[valid] // np.uint64(10**9)).astype(np.int64))
        idx, topics = self._table([t for t, _ in tps])
        topic_of_tp = np.array(idx, np.int64)
        part_of_tp = np.array([p for _, p in tps], np.int64)
        # Frames ordered by (shard, partition, offset): each shard's frames are
        # contiguous, and so is each (shard, partition) block within them.
        sort_key = codes[valid] * ntp + tpi[valid]
        order = valid[np.argsort(sort_key, kind="stable")]
        sk = sort_key[np.argsort(sort_key, kind="stable")]
        buf, pos = framing.encode_frames(
            chk.buf, chk.voff, chk.vlen, order, raw_len=chk.raw_len, org=chk.org,
            n_points=chk.n_points, intake_ns=chk.intake_ns, offset=offsets,
            partition=part_of_tp[tpi], topic_idx=topic_of_tp[tpi])
        m = len(order)
        ends = np.append(pos, buf.shape[0])
        # (shard, partition) blocks, then shard runs of blocks.
        bstart = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        bend = np.append(bstart[1:], m)
        b_first = offsets[order][bstart].tolist()
        b_last = offsets[order][bend - 1].tolist()
        b_intake = np.maximum.reduceat(chk.intake_ns[order], bstart).tolist()
        b_code = (sk[bstart] // ntp).tolist()
        b_tp = (sk[bstart] % ntp).tolist()
        sstart = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
        send = np.append(sstart[1:], m)
        lo_ts = np.where(chk.min_ts[order] < 0, np.iinfo(np.int64).max, chk.min_ts[order])
        s_min = np.minimum.reduceat(lo_ts, sstart).tolist()
        s_max = np.maximum.reduceat(chk.max_ts[order], sstart).tolist()
        s_points = np.add.reduceat(chk.n_points[order], sstart).tolist()
        s_min_in = np.minimum.reduceat(chk.intake_ns[order], sstart).tolist()
        s_max_in = np.maximum.reduceat(chk.intake_ns[order], sstart).tolist()
        s_vbytes = np.add.reduceat(chk.vlen[order], sstart).tolist()
        hours = _by_code(codes[chk.hour_rec], chk.hour_start, chk.hour_points)
        orgs = _by_code(codes[valid], chk.org[valid], None)
        vols = volumes_by_code(codes[valid], chk.org[valid], chk.n_points[valid],
                               chk.vlen[valid] + framing.HEADER_SIZE, codes[chk.hour_rec],
                               chk.org[chk.hour_rec], chk.hour_start, chk.hour_points)
        out: list[Valid] = []
        blk = 0
        for s, (a, e) in enumerate(zip(sstart.tolist(), send.tolist(), strict=True)):
            code = int(codes[order[a]])
            ranges: dict[TP, tuple[int, int, int]] = {}
            while blk < len(b_code) and b_code[blk] == code:
                ranges[tps[b_tp[blk]]] = (b_first[blk], b_last[blk], b_intake[blk])
                blk += 1
            p0, p1 = int(pos[a]), int(ends[e])
            out.append(Valid(
                shard=self.shards[code], data=buf[p0:p1].tobytes(), frame_pos=pos[a:e] - p0,
                topics=topics, ranges=ranges, payloads=e - a, points=s_points[s],
                value_bytes=s_vbytes[s], hours=hours.get(code, {}),
                min_ts=None if s_max[s] < 0 else s_min[s],
                max_ts=None if s_max[s] < 0 else s_max[s],
                min_intake_ns=s_min_in[s], max_intake_ns=s_max_in[s],
                orgs=frozenset(orgs.get(code, {})), volume=vols.get(code)))
        return out


def _by_code(codes: np.ndarray, keys: np.ndarray, weights: np.ndarray | None
             ) -> dict[int, dict[int, int]]:
    """``{code: {key: sum of weights (or count)}}`` over parallel arrays."""
    if not len(codes):
        return {}
    combined = (codes.astype(np.int64) << 40) | keys.astype(np.int64)
    uniq, inv = np.unique(combined, return_inverse=True)
    sums = np.bincount(inv, weights=weights, minlength=len(uniq)).astype(np.int64)
    out: dict[int, dict[int, int]] = {}
    for c, k, w in zip((uniq >> 40).tolist(), (uniq & ((1 << 40) - 1)).tolist(),
                       sums.tolist(), strict=True):
        out.setdefault(c, {})[k] = w
    return out


@dataclass(frozen=True, slots=True)
class _Rec:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None


def classify_one(topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, timestamp_ms: int | None, shard_map: ShardMap) -> Item:
    """The single item of one record classified alone (tests and tools)."""
    (item,) = Classifier(shard_map).classify([((topic, partition),
                                               [_Rec(offset, key, value, timestamp_ms)])])
    return item
