"""Records that ingest writes beside the raw objects, read by builds and status.

They are Tailor's own format (JSON, versioned), the contract between the
state half (``tailor.ingest``) and the compute half (``tailor.compute``):

- :class:`ObjectRecord`: everything a builder needs to find and plan a raw
  object without listing the bucket.  One copy is written under
  ``index/{shard}/{hour}/`` for *every* hour of point ts the object holds
  points of, so a build of any window finds every object with a point in it,
  however late the point.  An object whose points spread over more hours than
  that is worth gets one copy per bucket of a coarser level instead
  (``index/{shard}/{YYYY-MM-DDTHH}+{N}h/``, :func:`tailor.format.layout.index_placement`):
  readers list those buckets too (:func:`tailor.format.layout.index_dirs`) and keep
  the records whose ``hours`` hold points of their window.
- :class:`Watermark`: per partition, how far ingest is durable.
- :class:`QuarantineEntry`: one invalid Kafka record, with its coordinates.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from functools import cached_property
from typing import Final

from pydantic import BaseModel, ConfigDict

from tailor.format.layout import parse_stamp, stamp


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def dumps(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode()


class OffsetRange(_Record):
    """Kafka offsets ``[first, last]`` of one partition held by an object."""

    topic: str
    partition: int
    first: int
    last: int


#: Bound on ``ObjectRecord.org_hours`` (about 25 bytes of JSON each).
MAX_ORG_HOURS = 512


class ObjectRecord(_Record):
    """One raw object (a flushed batch of one raw shard)."""

    version: int = 1
    key: str  # object key relative to the raw root
    shard: str  # the raw shard ingest routed it to
    batch_id: str
    bytes: int
    payloads: int
    points: int
    min_ts: int
    max_ts: int
    min_intake_ns: int
    max_intake_ns: int
    topics: list[str]  # frame topic_idx → topic name
    offsets: list[OffsetRange]
    orgs: list[int]  # sorted distinct org ids
    hours: dict[str, int]  # YYYY-MM-DDTHH → points with ts in that hour
    written_ns: int  # wall clock when the object became durable
    # Volume per org (issue 13), empty in records written before it: parallel to
    # ``orgs``, the org's points and bytes (its frames: they sum to ``bytes``).
    org_points: list[int] = []
    org_bytes: list[int] = []
    # ``(org, hour start, points)`` of the object's largest org-hours, at most
    # :data:`MAX_ORG_HOURS`, by points descending.  Each is exact or a lower
    # bound; what the triples leave of an org's points is spread over the
    # hours in proportion to what they leave of each hour
    # (:func:`tailor.ops.volume.record_volume`).
    org_hours: list[tuple[int, int, int]] = []

    @cached_property
    def hour_table(self) -> tuple[list[int], list[int]]:
        """``(hour starts with points, sorted; running point totals before each)``,
        parsed once per record (an object may span thousands of hours)."""
        pairs = sorted((parse_stamp(h), n) for h, n in self.hours.items() if n > 0)
        starts = [h for h, _ in pairs]
        before = [0]
        for _, n in pairs:
            before.append(before[-1] + n)
        return starts, before

    def hour_starts(self) -> list[int]:
        """Hour starts the object holds points of, sorted."""
        return list(self.hour_table[0])

    def points_in(self, start: int, length: int) -> int:
        """Points with ts in ``[start, start + length)`` (hour granularity)."""
        starts, before = self.hour_table
        return before[bisect_left(starts, start + length)] - before[bisect_left(starts, start)]


def hour_counts(ts_hours: dict[int, int]) -> dict[str, int]:
    """``{hour_start: n}`` → ``{"YYYY-MM-DDTHH": n}``."""
    return {stamp(h): n for h, n in sorted(ts_hours.items())}


#: How far ahead of a clock an untrusted time (a payload's ``intake_ns``, a
#: watermark written on another host) may be before it counts as that clock
#: plus this, for readiness: ingest clamps intake times to its wall clock plus
#: this, readers clamp watermarks to their own.
CLOCK_SLACK_NS: Final = 60 * 10**9


class Watermark(_Record):
    """Durable progress of one partition of one consumer group.

    Everything below ``committed`` is durable.  ``max_intake_ns`` is the
    largest intake time among the durable payloads below ``committed``; when
    ``caught_up`` (``committed`` was at the broker's high-water mark observed
    at ``high_water_ns``) the partition is durable up to ``high_water_ns`` as
    well (``updated_ns`` in records written before that field).  Rules:
    :mod:`tailor.ingest.watermarks`.
    """

    version: int = 1
    group: str
    topic: str
    partition: int
    committed: int
    high_water: int
    max_intake_ns: int
    caught_up: bool
    updated_ns: int
    high_water_ns: int | None = None  # wall clock when ``high_water`` was observed

    @property
    def durable_until_ns(self) -> int:
        """How far the partition is durable (ns), from this record alone.

        ``max_intake_ns`` counts at most :data:`CLOCK_SLACK_NS` past
        ``updated_ns``: a payload durable when the record was written was
        accepted by intake before then (one hostile ``intake_ns`` must not
        move readiness to the year 2554).  Readers also clamp the result to
        their clock (:func:`tailor.ops.readiness.durable_until`).
        """
        intake = min(self.max_intake_ns, self.updated_ns + CLOCK_SLACK_NS)
        if not self.caught_up:
            return intake
        seen = self.updated_ns if self.high_water_ns is None else \
            min(self.high_water_ns, self.updated_ns)
        return max(intake, seen)


class QuarantineEntry(_Record):
    """One invalid record; ``key_b64``/``value_b64`` hold its bytes (None if absent)."""

    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    key_b64: str | None
    value_b64: str | None
    timestamp_ms: int | None = None




class PartFile(_Record):
    """One Parquet file of a chunk.  Files are listed in key order."""

    path: str  # relative to the chunk directory
    rows: int
    row_offset: int  # rows of the chunk before this file
    bytes: int
    sha256: str
    min_key: list[int]  # [org_id, metric_id, context_key, ts] of the first row
    max_key: list[int]  # ... of the last row


class InputObject(_Record):
    """A raw object a chunk was built from."""

    key: str
    bytes: int
    batch_id: str
    written_ns: int


class Manifest(_Record):
    """``_manifest.json`` of a chunk, written last (docs/contracts.md, "Manifest").

    A reader finds the file (and row range) that can hold series ``s`` by
    bisecting ``files`` on ``min_key``/``max_key``; no other file is opened.

    ``generation`` counts the chunk's publishes (1 for the first; 0 in
    manifests written before generations existed); each publish replaces
    generation ``g`` by ``g + 1`` with a compare-and-swap, and
    ``previous_files`` names the files of the manifest it replaced (kept for
    readers still reading it; see :mod:`tailor.compute.publish`).
    """

    format: str = "tailor-s/1"
    shard: str
    window: str  # YYYY-MM-DDTHH
    window_start: int
    window_end: int
    attempt: str
    files: list[PartFile]
    points: int
    min_ts: int | None
    max_ts: int | None
    columns: list[str] = ["org_id", "metric_id", "context_key", "ts", "value"]
    inputs: list[InputObject]
    corrupt_frames: int = 0
    invalid_payloads: int = 0
    duplicates_dropped: int = 0
    built_ns: int
    tailor_version: str
    generation: int = 0
    previous_attempt: str | None = None
    previous_files: list[str] = []
