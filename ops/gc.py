"""``tailor gc``: find, and with ``--delete`` remove, what crashes and races leave behind.

- **Unindexed raw objects**: an ingester killed between an object's PUT and its
  index records leaves an object no build will ever read (Kafka redelivers its
  payloads from the last commit, and they are stored again).  Objects whose
  payloads hold no point at all are never indexed either (they carry nothing a
  build could use).  Only objects older than ``--older-than`` count: a younger
  one may be between its PUT and its index records right now (an ingester's
  write of one batch rewrites the object, then its index records, within one
  store call's retries, far below the minimum of one hour).
- **Incomplete multipart uploads** under the raw store (S3 only): an upload
  killed mid-way keeps its parts, billed, until aborted.
- **Output leftovers**: part files of build attempts that can never be
  published (:func:`tailor.compute.publish.sweepable`, the rule every publish
  applies) and claims older than a day, in chunks that are not published
  again soon (a publish sweeps its own chunk).

The plan is pure (:func:`plan_raw`); the adapter lists the stores once.
Nothing is deleted without ``--delete``.  Safe to run while ingesters and
builders run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import click

from tailor.compute.publish import read_manifest, sweep
from tailor.config import GcConfig
from tailor.errors import ConfigError
from tailor.format import layout
from tailor.storage import Store

from .state import list_index

Listed = tuple[str, int, int]  # key, size, modified_ns


@dataclass(slots=True)
class RawLeftovers:
    """What :func:`plan_raw` found in a raw store."""

    unindexed: list[Listed] = field(default_factory=list)  # old enough to remove
    young_unindexed: int = 0  # newer than the cutoff: maybe being written now
    uploads: list[tuple[str, str, int]] = field(default_factory=list)  # old enough to abort
    young_uploads: int = 0

    @property
    def unindexed_bytes(self) -> int:
        return sum(size for _, size, _ in self.unindexed)


def object_batch(key: str) -> tuple[str, str] | None:
    """``(shard, batch id)`` of a raw object key ``objects/{hh}/{shard}/{batch}.tlr``."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "objects" or not parts[3].endswith(".tlr"):
        return None
    return parts[2], parts[3][:-4]


def plan_raw(objects: Iterable[Listed], indexed: Mapping[str, Iterable[str]],
             uploads: Iterable[tuple[str, str, int]], cutoff_ns: int) -> RawLeftovers:
    """Raw objects without an index record and incomplete uploads (pure).

    ``indexed`` maps raw shard → batch ids with an index record; only what
    was last modified before ``cutoff_ns`` is proposed for removal.
    """
    have = {s: set(b) for s, b in indexed.items()}
    out = RawLeftovers()
    for key, size, mtime in objects:
        sb = object_batch(key)
        if sb is None or sb[1] in have.get(sb[0], ()):
            continue
        if mtime < cutoff_ns:
            out.unindexed.append((key, size, mtime))
        else:
            out.young_unindexed += 1
    for u in uploads:
        if u[2] < cutoff_ns:
            out.uploads.append(u)
        else:
            out.young_uploads += 1
    return out


def find_raw(raw: Store, cutoff_ns: int) -> RawLeftovers:
    """List ``objects/``, the index and the uploads of a raw store (no GET)."""
    raw.invalidate()
    objects = raw.list_info("objects/")
    shards = sorted({sb[0] for k, _, _ in objects if (sb := object_batch(k))})
    indexed = {s: list(b) for s, b in list_index(raw, shards).items()}
    return plan_raw(objects, indexed, raw.uploads("objects/"), cutoff_ns)


def out_chunks(out: Store) -> list[tuple[str, int]]:
    """Every chunk folder of an output root that holds a part file (one listing)."""
    found: set[tuple[str, int]] = set()
    for k in out.list(""):
        parts = k.split("/")
        if len(parts) == 3 and not parts[0].startswith("_") and parts[2].startswith("part-"):
            try:
                found.add((parts[0], layout.parse_stamp(parts[1])))
            except ConfigError:
                continue  # not a chunk folder
    return sorted(found)


def find_out(out: Store, *, delete: bool) -> list[str]:
    """Output keys no manifest can ever list again (deleted when ``delete``)."""
    out.invalidate()
    keys: list[str] = []
    for shard, start in out_chunks(out):
        keys += sweep(out, shard, start, read_manifest(out, shard, start), dry_run=not delete)
    return keys


@dataclass(slots=True)
class GcReport:
    raw: RawLeftovers | None
    out_keys: list[str] | None
    deleted: bool

    def summary(self) -> str:
        verb = "removed" if self.deleted else "would remove"
        lines = []
        if self.raw is not None:
            r = self.raw
            lines.append(f"raw: {verb} {len(r.unindexed)} unindexed object(s) "
                         f"({r.unindexed_bytes} bytes) and abort {len(r.uploads)} incomplete "
                         f"multipart upload(s); {r.young_unindexed} unindexed object(s) and "
                         f"{r.young_uploads} upload(s) are too recent to judge")
            lines += [f"  {k}" for k, _, _ in r.unindexed[:20]]
        if self.out_keys is not None:
            lines.append(f"out: {verb} {len(self.out_keys)} leftover part file(s) and claim(s)")
            lines += [f"  {k}" for k in self.out_keys[:20]]
        if not self.deleted:
            lines.append("nothing was deleted: run again with --delete to remove them")
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps({"deleted": self.deleted,
                           "raw": asdict(self.raw) if self.raw is not None else None,
                           "out": self.out_keys}, indent=2)


def run(cfg: GcConfig, *, as_json: bool = False) -> GcReport:
    """Find (and with ``cfg.delete`` remove) leftovers; prints the report.  Blocks."""
    cutoff = time.time_ns() - int(cfg.older_than_s * 1e9)
    raw_found = None
    if cfg.raw is not None:
        raw = Store(cfg.raw)
        raw_found = find_raw(raw, cutoff)
        if cfg.delete:
            raw.delete([k for k, _, _ in raw_found.unindexed])
            for key, upload, _ in raw_found.uploads:
                raw.abort_upload(key, upload)
    out_keys = find_out(Store(cfg.out), delete=cfg.delete) if cfg.out is not None else None
    report = GcReport(raw_found, out_keys, cfg.delete)
    click.echo(report.as_json() if as_json else report.summary())
    return report
