"""What one ingest member's partition watermarks claim, and when they are rewritten.

A :class:`tailor.format.records.Watermark` tells ``build --ready`` how far a
partition is durable.  It must never run ahead of the stored data, and it
must keep moving while the partition is quiet.  The rules (issue 10):

- ``committed``: everything below it is durable and committed.
- ``max_intake_ns``: the largest intake time of the committed prefix
  (:class:`tailor.ingest.batcher.PartState`), at most the wall clock plus
  :data:`tailor.format.records.CLOCK_SLACK_NS` (intake times are untrusted).
- ``caught_up``: ``committed`` is at or past the broker's high-water mark,
  fetching is not paused for backpressure, and the mark was observed after
  the last pause ended: aiokafka does not fetch paused partitions, so a mark
  from before or during a pause says nothing about what arrived since.
  ``high_water_ns`` records when the mark was observed; readers take a
  caught-up partition as durable up to then (never past ``updated_ns``).
- Heartbeat: a partition whose watermark was not queued for ``interval_s``
  is queued again (:meth:`Watermarks.due`), so a quiet partition's
  ``updated_ns`` (and, when caught up, its durable time) keeps moving.  A
  watermark much older than the interval therefore means no member owns the
  partition any more: a stopped group or a retired topic (``tailor status``
  names them).

Pure bookkeeping: no I/O, the caller passes the clock; nothing raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tailor.format.records import CLOCK_SLACK_NS, Watermark
from tailor.ingest.batcher import TP


@dataclass(slots=True)
class Watermarks:
    """Watermarks to write for one member of ``group`` (see module doc)."""

    group: str
    interval_s: float
    paused: bool = False  # fetching is paused for backpressure
    resumed_ns: int = 0  # wall clock when the last pause ended
    pending: dict[TP, Watermark] = field(default_factory=dict)  # queued, not written yet
    queued_ns: dict[TP, int] = field(default_factory=dict)  # when each was last queued

    def pause_began(self) -> None:
        """Fetching paused for backpressure: no high-water mark is fresh until it resumes."""
        self.paused = True

    def resumed(self, now_ns: int) -> None:
        """Fetching resumed: only high-water marks seen from now on are fresh."""
        self.paused = False
        self.resumed_ns = now_ns

    def make(self, tp: TP, committed: int, high_water: int | None, seen_ms: int | None,
             max_intake_ns: int, now_ns: int) -> Watermark:
        """The watermark of ``tp`` committed at ``committed``, given the
        broker's last high-water mark and when it was observed (aiokafka's
        ``highwater`` and ``last_poll_timestamp``; None when not known yet)."""
        seen_ns = None if seen_ms is None else seen_ms * 1_000_000
        fresh = (high_water is not None and seen_ns is not None and not self.paused
                 and seen_ns > self.resumed_ns)
        return Watermark(
            group=self.group, topic=tp[0], partition=tp[1], committed=committed,
            high_water=-1 if high_water is None else high_water,
            max_intake_ns=min(max_intake_ns, now_ns + CLOCK_SLACK_NS),
            caught_up=fresh and high_water is not None and committed >= high_water,
            updated_ns=now_ns, high_water_ns=seen_ns if fresh else None)

    def queue(self, mark: Watermark, now_ns: int) -> None:
        """Write ``mark`` with the next batch of watermark writes (the latest wins)."""
        tp = (mark.topic, mark.partition)
        self.pending[tp] = mark
        self.queued_ns[tp] = now_ns

    def due(self, tp: TP, now_ns: int) -> bool:
        """Whether ``tp``'s watermark was last queued ``interval_s`` ago or more."""
        return tp not in self.pending and \
            now_ns - self.queued_ns.get(tp, 0) >= self.interval_s * 1e9

    def take(self) -> dict[TP, Watermark]:
        """The queued watermarks, removed from the queue."""
        out, self.pending = self.pending, {}
        return out

    def put_back(self, marks: dict[TP, Watermark]) -> None:
        """Queue again watermarks whose write failed (unless a newer one is queued)."""
        for tp, m in marks.items():
            self.pending.setdefault(tp, m)

    def forget(self, tps: list[TP]) -> None:
        """``tps`` were revoked: another member writes their watermarks now."""
        for tp in tps:
            self.queued_ns.pop(tp, None)
