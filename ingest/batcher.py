"""The pure batching core of ``tailor ingest``: no I/O, no clock, no asyncio.

Consumed Kafka records come in as :class:`Valid` or :class:`Invalid` items
(made by :func:`classify`).  Valid payloads go to one open :class:`Batch` per
raw shard, invalid ones to one open quarantine batch per ``(topic, partition)``.
A batch is *open* (accepting items), then *sealed* (immutable, being written by
the I/O stages, possibly several times if writes fail), then *durable*
(:meth:`Batcher.done`), when it is forgotten.

Lifecycle: ``assign`` → ``add_*`` … → ``due``/``seal_*`` → (write elsewhere) →
``done`` → ``committable`` → ``mark_committed`` → ``revoke``.

Offsets: for every assigned partition the batcher knows the next offset after
the last record it accepted and the first offset of that partition in every
batch not yet durable.  :meth:`Batcher.committable` is the smallest of those
first offsets, or the next offset when nothing is pending: every record below
it is durable.  Partition state is an object that batches point at, so a
partition revoked and assigned again starts afresh and stale batches finishing
later cannot move its offsets.

Memory: :attr:`Batcher.buffered_bytes` counts the bytes of every open and
sealed batch until it is durable; the consumer pauses fetching above its bound
and seals the biggest batches (:meth:`Batcher.seal_biggest`).

Nothing here blocks; methods raise only ``KeyError``/``ValueError`` on misuse
(documented per method).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from tailor import payload as pl
from tailor.config import FlushPolicy
from tailor.errors import InvalidPayload
from tailor.framing import encode_frame
from tailor.layout import HOUR
from tailor.records import QuarantineEntry
from tailor.shards import ShardMap

TP = tuple[str, int]  # (topic, partition)
OBJECT: Final = "object"
QUARANTINE: Final = "quarantine"


@dataclass(frozen=True, slots=True)
class Valid:
    """A valid payload, routed, with what its object record needs."""

    tp: TP
    offset: int
    shard: str
    value: bytes  # the record value exactly as received (zstd)
    raw_len: int
    org_id: int
    n_points: int
    intake_ns: int
    min_ts: int | None  # None when the payload holds no point
    max_ts: int | None
    hours: dict[int, int]  # hour start → points with ts in it


@dataclass(frozen=True, slots=True)
class Invalid:
    """An invalid record, as one quarantine JSON line."""

    tp: TP
    offset: int
    reason: str
    line: bytes  # QuarantineEntry JSON + b"\n"


Item = Valid | Invalid


def classify(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
             timestamp_ms: int | None, shard_map: ShardMap) -> Item:
    """Validate one Kafka record (contracts.md section 1) and describe it.

    CPU only (zstd + numpy, no per-point Python); never raises on bad input:
    an invalid record becomes an :class:`Invalid` carrying its reason.
    """
    tp = (topic, partition)
    try:
        p = pl.validate(key, value)
    except InvalidPayload as exc:
        entry = QuarantineEntry(
            topic=topic, partition=partition, offset=offset, reason=exc.reason,
            detail=exc.detail[:500],
            key_b64=None if key is None else base64.b64encode(key).decode(),
            value_b64=None if value is None else base64.b64encode(value).decode(),
            timestamp_ms=timestamp_ms)
        return Invalid(tp, offset, exc.reason, entry.dumps() + b"\n")
    assert value is not None
    ts = p.points()["ts"]
    hours: dict[int, int] = {}
    min_ts = max_ts = None
    if len(ts):
        min_ts, max_ts = int(ts.min()), int(ts.max())
        uniq, counts = np.unique(ts // HOUR, return_counts=True)
        hours = {int(h) * HOUR: int(c) for h, c in zip(uniq, counts, strict=True)}
    shard = shard_map.shard_for(p.org_id, p.intake_ns // 10**9)
    return Valid(tp, offset, shard, value, len(p.raw), p.org_id, p.n_points, p.intake_ns,
                 min_ts, max_ts, hours)


@dataclass(eq=False, slots=True)
class PartState:
    """Progress of one assigned partition (identity matters, see module doc)."""

    topic: str
    partition: int
    next_offset: int | None = None  # after the last accepted record
    pending: dict[int, int] = field(default_factory=dict)  # batch serial → first offset
    committed: int | None = None  # last offset committed by this member
    max_intake_ns: int = 0  # over durable payloads of this partition

    def committable(self) -> int | None:
        if self.pending:
            return min(self.pending.values())
        return self.next_offset


@dataclass(eq=False, slots=True)
class Batch:
    """One shard's (or one partition's quarantine) batch.  Mutable until sealed."""

    serial: int
    kind: str  # OBJECT or QUARANTINE
    key: str  # shard name, or "topic/partition" for quarantine
    created: float  # the ``now`` of its first item
    chunks: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    payloads: int = 0
    points: int = 0
    topics: list[str] = field(default_factory=list)  # frame topic_idx → topic
    ranges: dict[TP, list[int]] = field(default_factory=dict)  # tp → [first, last, max_intake]
    parts: dict[TP, PartState] = field(default_factory=dict)
    hours: dict[int, int] = field(default_factory=dict)
    min_ts: int | None = None
    max_ts: int | None = None
    min_intake_ns: int | None = None
    max_intake_ns: int | None = None
    orgs: set[int] = field(default_factory=set)
    reasons: dict[str, int] = field(default_factory=dict)
    sealed: bool = False
    attempts: int = 0  # failed write attempts
    retry_at: float = 0.0  # do not write again before this ``now``

    @property
    def batch_id(self) -> str:
        """Deterministic: the same records in the same batch give the same id."""
        h = hashlib.sha256(f"{self.kind}\0{self.key}\0{self.payloads}".encode())
        for (topic, part), (first, last, _) in sorted(self.ranges.items()):
            h.update(f"\0{topic}\0{part}\0{first}\0{last}".encode())
        return h.hexdigest()[:20]

    def data(self) -> bytes:
        return b"".join(self.chunks)

    def _track(self, tp: TP, offset: int, part: PartState, intake_ns: int) -> None:
        r = self.ranges.get(tp)
        if r is None:
            self.ranges[tp] = [offset, offset, intake_ns]
            self.parts[tp] = part
            part.pending[self.serial] = offset
        else:
            r[1] = max(r[1], offset)
            r[2] = max(r[2], intake_ns)


class Batcher:
    """Per-shard batches, flush policy, memory accounting, committable offsets."""

    def __init__(self, policy: FlushPolicy) -> None:
        self.policy = policy
        self.parts: dict[TP, PartState] = {}
        self.open: dict[tuple[str, str], Batch] = {}  # (kind, key) → open batch
        self.sealed: dict[int, Batch] = {}  # serial → sealed, not yet durable
        self.buffered_bytes = 0
        self._serial = 0

    # -- partitions -------------------------------------------------------------
    def assign(self, tps: list[TP]) -> None:
        """Start tracking ``tps`` afresh (new state objects)."""
        for topic, part in tps:
            self.parts[(topic, part)] = PartState(topic, part)

    def revoke(self, tps: list[TP]) -> None:
        """Forget ``tps``; batches holding their records are still flushed (harmless)."""
        for tp in tps:
            self.parts.pop(tp, None)

    # -- intake -------------------------------------------------------------------
    def add(self, item: Item, now: float) -> bool:
        """Buffer one record; False (dropped) if its partition is not assigned.

        Records of a partition must come in offset order between ``assign``
        and ``revoke`` (what a Kafka consumer delivers).
        """
        part = self.parts.get(item.tp)
        if part is None:
            return False
        if isinstance(item, Valid):
            b = self._open(OBJECT, item.shard, now)
            idx = self._topic_idx(b, item.tp[0])
            frame = encode_frame(item.value, raw_len=item.raw_len, org_id=item.org_id,
                                 n_points=item.n_points, intake_ns=item.intake_ns,
                                 offset=item.offset, partition=item.tp[1], topic_idx=idx)
            b.chunks.append(frame)
            b.nbytes += len(frame)
            b.points += item.n_points
            for h, n in item.hours.items():
                b.hours[h] = b.hours.get(h, 0) + n
            if item.min_ts is not None and item.max_ts is not None:
                b.min_ts = item.min_ts if b.min_ts is None else min(b.min_ts, item.min_ts)
                b.max_ts = item.max_ts if b.max_ts is None else max(b.max_ts, item.max_ts)
            b.min_intake_ns = (item.intake_ns if b.min_intake_ns is None
                               else min(b.min_intake_ns, item.intake_ns))
            b.max_intake_ns = (item.intake_ns if b.max_intake_ns is None
                               else max(b.max_intake_ns, item.intake_ns))
            b.orgs.add(item.org_id)
            size, intake = len(frame), item.intake_ns
        else:
            b = self._open(QUARANTINE, f"{item.tp[0]}/{item.tp[1]}", now)
            self._topic_idx(b, item.tp[0])
            b.chunks.append(item.line)
            b.nbytes += len(item.line)
            b.reasons[item.reason] = b.reasons.get(item.reason, 0) + 1
            size, intake = len(item.line), 0
        b.payloads += 1
        b._track(item.tp, item.offset, part, intake)
        part.next_offset = max(part.next_offset or 0, item.offset + 1)
        self.buffered_bytes += size
        return True

    def _open(self, kind: str, key: str, now: float) -> Batch:
        b = self.open.get((kind, key))
        if b is None:
            self._serial += 1
            b = self.open[(kind, key)] = Batch(self._serial, kind, key, now)
        return b

    @staticmethod
    def _topic_idx(b: Batch, topic: str) -> int:
        try:
            return b.topics.index(topic)
        except ValueError:
            b.topics.append(topic)
            return len(b.topics) - 1

    # -- sealing ------------------------------------------------------------------
    def _seal(self, b: Batch) -> Batch:
        del self.open[(b.kind, b.key)]
        b.sealed = True
        self.sealed[b.serial] = b
        return b

    def due(self, now: float) -> list[Batch]:
        """Seal and return every open batch that hit age, payload or byte limit."""
        p = self.policy
        return [self._seal(b) for b in list(self.open.values())
                if now - b.created >= p.max_age_s or b.payloads >= p.max_payloads
                or b.nbytes >= p.max_bytes]

    def seal_for(self, tps: list[TP] | set[TP]) -> list[Batch]:
        """Seal open batches holding records of ``tps``; return every batch
        (open or already sealed) that holds them and is not durable yet."""
        want = set(tps)
        for b in list(self.open.values()):
            if want & b.ranges.keys():
                self._seal(b)
        return [b for b in self.sealed.values() if want & b.ranges.keys()]

    def seal_all(self) -> list[Batch]:
        """Seal every open batch; return every batch not yet durable."""
        for b in list(self.open.values()):
            self._seal(b)
        return list(self.sealed.values())

    def seal_biggest(self, target: int) -> list[Batch]:
        """Seal the biggest open batches until open bytes are at most ``target``."""
        open_bytes = self.open_bytes
        out = []
        for b in sorted(self.open.values(), key=lambda b: b.nbytes, reverse=True):
            if open_bytes <= target:
                break
            out.append(self._seal(b))
            open_bytes -= b.nbytes
        return out

    # -- durability and offsets ---------------------------------------------------
    def done(self, b: Batch) -> None:
        """``b`` is durable: release its memory and its hold on its partitions.

        Raises ``KeyError`` if ``b`` is not a sealed batch of this batcher.
        """
        del self.sealed[b.serial]
        self.buffered_bytes -= b.nbytes
        for tp, part in b.parts.items():
            part.pending.pop(b.serial, None)
            part.max_intake_ns = max(part.max_intake_ns, b.ranges[tp][2])
        b.chunks = []

    def committable(self) -> dict[TP, int]:
        """Per assigned partition, the offset to commit if it moved forward."""
        out = {}
        for tp, part in self.parts.items():
            c = part.committable()
            if c is not None and (part.committed is None or c > part.committed):
                out[tp] = c
        return out

    def mark_committed(self, tp: TP, offset: int) -> None:
        part = self.parts.get(tp)
        if part is not None:
            part.committed = max(part.committed or 0, offset)

    @property
    def open_bytes(self) -> int:
        return sum(b.nbytes for b in self.open.values())

    def idle(self) -> bool:
        """Nothing buffered: every accepted record is durable."""
        return not self.open and not self.sealed
