"""The pure batching core of ``tailor ingest``: no I/O, no clock, no asyncio.

Consumed Kafka records come in as :class:`Valid` items (a fetch's valid
payloads of one raw shard, framed) or :class:`Invalid` items (one invalid
record), made by :class:`tailor.ingest.classify.Classifier`.  Valid payloads
go to one open :class:`Batch` per raw shard, invalid ones to one open
quarantine batch per ``(topic, partition)``.
A batch is *open* (accepting items), then *sealed* (immutable, being written by
the I/O stages, possibly several times if writes fail), then *durable*
(:meth:`Batcher.done`), when it is forgotten.

Lifecycle: ``assign`` → ``add`` … → ``due``/``seal_*`` → (write elsewhere) →
``done`` → ``committable`` → ``mark_committed`` → ``revoke``.

Offsets: for every assigned partition the batcher knows the next offset after
the last record it accepted and the first offset of that partition in every
batch not yet durable.  :meth:`Batcher.committable` is the smallest of those
first offsets, or the next offset when nothing is pending: every record below
it is durable.  A partition's ``max_intake_ns`` (what its watermark says is
durable) covers only that committed prefix: a batch that became durable above
one still failing does not count until the one below is durable too.
Partition state is an object that batches point at, so a
partition revoked and assigned again starts afresh and stale batches finishing
later cannot move its offsets.

Memory: :attr:`Batcher.buffered_bytes` counts the bytes of every open and
sealed batch until it is durable; the consumer pauses fetching above its bound
and seals the biggest batches (:meth:`Batcher.seal_biggest`).

Nothing here blocks; methods raise only ``KeyError``/``ValueError`` on misuse
(documented per method).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from tailor.config import FlushPolicy
from tailor.format import framing
from tailor.format.records import MAX_ORG_HOURS
from tailor.ingest.orgvolume import OrgVolume

TP = tuple[str, int]  # (topic, partition)
#: Org-hours a batch keeps between items (4x what its index record holds: see
#: :data:`tailor.format.records.MAX_ORG_HOURS`).  Dropping some is always safe: an
#: org's and an hour's totals stay exact, kept counts become lower bounds.
ORG_HOURS_KEPT: Final = 4 * MAX_ORG_HOURS
OBJECT: Final = "object"
QUARANTINE: Final = "quarantine"


@dataclass(frozen=True, slots=True)
class Valid:
    """Valid payloads of one fetch routed to one raw shard, already framed.

    ``data``: their frames back to back (:mod:`tailor.format.framing`), each
    ``topic_idx`` an index into ``topics``; ``frame_pos``: where each frame
    starts in ``data``.  ``ranges``: per partition, ``(first offset, last
    offset, max intake_ns)`` of its payloads here.  ``hours``: hour start →
    points with ts in it; ``min_ts``/``max_ts`` None when no payload holds a
    point.  ``value_bytes``: the record values' total size (for metrics).
    ``volume``: points and frame bytes per org and points per org-hour here.
    Made by :class:`tailor.ingest.classify.Classifier`.
    """

    shard: str
    data: bytes
    frame_pos: np.ndarray
    topics: tuple[str, ...]
    ranges: dict[TP, tuple[int, int, int]]
    payloads: int
    points: int
    value_bytes: int
    hours: dict[int, int]
    min_ts: int | None
    max_ts: int | None
    min_intake_ns: int
    max_intake_ns: int
    orgs: frozenset[int]
    volume: OrgVolume | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """An invalid record, as one quarantine JSON line."""

    tp: TP
    offset: int
    reason: str
    line: bytes  # QuarantineEntry JSON + b"\n"


Item = Valid | Invalid


def item_tps(item: Item) -> list[TP]:
    """The partitions whose records ``item`` holds."""
    return list(item.ranges) if isinstance(item, Valid) else [item.tp]


@dataclass(eq=False, slots=True)
class PartState:
    """Progress of one assigned partition (identity matters, see module doc)."""

    topic: str
    partition: int
    next_offset: int | None = None  # after the last accepted record
    pending: dict[int, int] = field(default_factory=dict)  # batch serial → first offset
    committed: int | None = None  # last offset committed by this member
    # Largest intake time over the payloads of the committed prefix: durable
    # batches whose records of this partition all lie below ``committable()``.
    max_intake_ns: int = 0
    # Durable batches not wholly inside the prefix yet: (last offset, max intake_ns).
    durable_above: list[tuple[int, int]] = field(default_factory=list)
    fetched: int | None = None  # after the last record fetched (classified or not)
    start: int | None = None  # offset of the first record fetched since assignment

    def settled(self) -> bool:
        """Every record fetched since assignment is durable and committed (or
        none was fetched): nothing of this partition is buffered or in flight."""
        return not self.pending and self.fetched == self.next_offset == (
            None if self.next_offset is None else self.committed)

    def committable(self) -> int | None:
        if self.pending:
            return min(self.pending.values())
        return self.next_offset

    def settle(self) -> None:
        """Fold the durable batches now inside the committed prefix into
        ``max_intake_ns``: a batch above one still failing counts only once
        everything below it is durable too."""
        c = self.committable()
        if c is None or not self.durable_above:
            return
        keep = []
        for last, intake in self.durable_above:
            if last < c:
                self.max_intake_ns = max(self.max_intake_ns, intake)
            else:
                keep.append((last, intake))
        self.durable_above = keep


@dataclass(eq=False, slots=True)
class Batch:
    """One shard's (or one partition's quarantine) batch.  Mutable until sealed."""

    serial: int
    kind: str  # OBJECT or QUARANTINE
    key: str  # shard name, or "topic/partition" for quarantine
    created: float  # the ``now`` of its first item
    chunks: list[bytes | bytearray] = field(default_factory=list)  # joined once when written
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
    # Its items' per-org volume, merged (at most ORG_HOURS_KEPT org-hours) as it grows.
    volumes: list[OrgVolume] = field(default_factory=list)
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

    def fetched(self, tp: TP, first: int, next_offset: int) -> None:
        """Records of ``tp`` from ``first`` to below ``next_offset`` were
        fetched (they are added once classified); ignored when ``tp`` is not
        assigned.  The first fetch after assignment starts at the group's
        committed offset, so committing it again is skipped (:meth:`committable`)."""
        part = self.parts.get(tp)
        if part is not None:
            if part.start is None:
                part.start = first
            part.fetched = max(part.fetched or 0, next_offset)

    def revoke(self, tps: list[TP]) -> None:
        """Forget ``tps``; batches holding their records are still flushed (harmless)."""
        for tp in tps:
            self.parts.pop(tp, None)

    # -- intake -------------------------------------------------------------------
    def add(self, item: Item, now: float) -> bool:
        """Buffer one item; False (nothing added) if any partition it holds is
        not assigned.

        Items must come in fetch order between ``assign`` and ``revoke``: an
        item's offsets in a partition are above those of items from earlier
        fetches (what a Kafka consumer delivers).  A caller that gets False
        must drop the rest of that fetch too (its records come again from the
        committed offset).
        """
        tps = item_tps(item)
        if any(tp not in self.parts for tp in tps):
            return False
        if isinstance(item, Valid):
            b = self._open(OBJECT, item.shard, now)
            data = self._frames_for(b, item)
            b.chunks.append(data)
            b.nbytes += len(data)
            b.payloads += item.payloads
            b.points += item.points
            for h, n in item.hours.items():
                b.hours[h] = b.hours.get(h, 0) + n
            if item.min_ts is not None and item.max_ts is not None:
                b.min_ts = item.min_ts if b.min_ts is None else min(b.min_ts, item.min_ts)
                b.max_ts = item.max_ts if b.max_ts is None else max(b.max_ts, item.max_ts)
            b.min_intake_ns = (item.min_intake_ns if b.min_intake_ns is None
                               else min(b.min_intake_ns, item.min_intake_ns))
            b.max_intake_ns = (item.max_intake_ns if b.max_intake_ns is None
                               else max(b.max_intake_ns, item.max_intake_ns))
            b.orgs |= item.orgs
            if item.volume is not None:
                b.volumes.append(item.volume)
                if len(b.volumes) >= 64 or sum(len(v.oh_org) for v in b.volumes) > \
                        2 * ORG_HOURS_KEPT:
                    b.volumes = [OrgVolume.merge(b.volumes, ORG_HOURS_KEPT)]
            for tp, (first, last, intake) in item.ranges.items():
                self._track(b, tp, first, last, intake)
            self.buffered_bytes += len(data)
        else:
            b = self._open(QUARANTINE, f"{item.tp[0]}/{item.tp[1]}", now)
            if item.tp[0] not in b.topics:
                b.topics.append(item.tp[0])
            b.chunks.append(item.line)
            b.nbytes += len(item.line)
            b.payloads += 1
            b.reasons[item.reason] = b.reasons.get(item.reason, 0) + 1
            self._track(b, item.tp, item.offset, item.offset, 0)
            self.buffered_bytes += len(item.line)
        return True

    def _track(self, batch: Batch, tp: TP, first: int, last: int, intake_ns: int) -> None:
        part = self.parts[tp]
        r = batch.ranges.get(tp)
        if r is None:
            batch.ranges[tp] = [first, last, intake_ns]
            batch.parts[tp] = part
            part.pending[batch.serial] = first
        else:
            r[0], r[1], r[2] = min(r[0], first), max(r[1], last), max(r[2], intake_ns)
            part.pending[batch.serial] = r[0]
        part.next_offset = max(part.next_offset or 0, last + 1)

    @staticmethod
    def _frames_for(batch: Batch, item: Valid) -> bytes:
        """``item.data`` with topic indices valid in ``batch.topics`` (extended as needed).

        Classifier topic tables only grow, so normally one is a prefix of the
        other and the frames are used as they are; otherwise they are
        renumbered (a copy).
        """
        mine, theirs = batch.topics, item.topics
        if tuple(mine) == theirs[:len(mine)]:
            mine.extend(theirs[len(mine):])
            return item.data
        if theirs == tuple(mine[:len(theirs)]):
            return item.data
        mapping = []
        for t in theirs:
            if t not in mine:
                mine.append(t)
            mapping.append(mine.index(t))
        buf = np.frombuffer(item.data, np.uint8).copy()
        framing.retopic(buf, item.frame_pos, np.array(mapping, np.int64))
        return buf.tobytes()

    def _open(self, kind: str, key: str, now: float) -> Batch:
        b = self.open.get((kind, key))
        if b is None:
            self._serial += 1
            b = self.open[(kind, key)] = Batch(self._serial, kind, key, now)
        return b

    # -- sealing ------------------------------------------------------------------
    def _seal(self, batch: Batch) -> Batch:
        del self.open[(batch.kind, batch.key)]
        batch.sealed = True
        self.sealed[batch.serial] = batch
        return batch

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
    def done(self, batch: Batch, intake_limit_ns: int | None = None) -> None:
        """``batch`` is durable: release its memory and its hold on its partitions.

        Its payloads' largest intake time counts for a partition's
        ``max_intake_ns`` once every record of that partition below them is
        durable too (:meth:`PartState.settle`).  ``intake_limit_ns``: intake
        times above it count as it (``intake_ns`` is untrusted input; the
        caller passes its wall clock plus :data:`tailor.format.records.CLOCK_SLACK_NS`).

        Raises ``KeyError`` if ``batch`` is not a sealed batch of this batcher.
        """
        del self.sealed[batch.serial]
        self.buffered_bytes -= batch.nbytes
        for tp, part in batch.parts.items():
            part.pending.pop(batch.serial, None)
            _, last, intake = batch.ranges[tp]
            if intake_limit_ns is not None:
                intake = min(intake, intake_limit_ns)
            part.durable_above.append((last, intake))
            part.settle()
        batch.chunks = []

    def committable(self) -> dict[TP, int]:
        """Per assigned partition, the offset to commit if it moved forward
        (past this member's last commit, or past where it started fetching)."""
        out = {}
        for tp, part in self.parts.items():
            c = part.committable()
            done = part.committed if part.committed is not None else part.start
            if c is not None and (done is None or c > done):
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
