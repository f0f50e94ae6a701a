"""Publish stage: part files under a fresh attempt, then ``_manifest.json`` last.

Readers go through the manifest only, so a chunk flips from the old
generation to the new one with the single atomic put of the manifest.  Part
files of older attempts are deleted only when they belong neither to the new
manifest nor to the one it replaced (one previous generation stays readable
for readers in flight).
"""

from __future__ import annotations

import time
import uuid

from distributed.metrics import context_meter

from tailor import __version__, layout
from tailor.errors import ConfigError, StorageError
from tailor.metrics import STAGE_WRITE
from tailor.records import InputObject, Manifest, PartFile
from tailor.storage import Store

from .decode import Points, empty_points
from .encode import encode


def new_attempt() -> str:
    """A fresh, unique, time-ordered attempt id."""
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def _key_of(pts: Points, i: int) -> list[int]:
    return [int(pts.org[i]), int(pts.metric[i]), int(pts.ctx[i]), int(pts.ts[i])]


def write_part(out: Store, shard: str, start: int, attempt: str, i: int,
               rows: Points) -> PartFile:
    """Encode and put part file ``i`` of an attempt; returns its manifest entry.

    Idempotent (same rows → same key and bytes), so a retried task is harmless.
    ``row_offset`` is left 0; :func:`publish` fills it in.  Blocks on the store.
    """
    data, sha = encode(rows)
    key = layout.part_key(shard, start, attempt, i)
    with context_meter.meter(STAGE_WRITE):
        out.put(key, data)
    n = len(rows)
    return PartFile(path=key.rsplit("/", 1)[1], rows=n, row_offset=0, bytes=len(data),
                    sha256=sha, min_key=_key_of(rows, 0) if n else [],
                    max_key=_key_of(rows, n - 1) if n else [])


def read_manifest(out: Store, shard: str, start: int) -> Manifest | None:
    """The chunk's current manifest, or None if the chunk does not exist.

    Raises :class:`~tailor.errors.StorageError` (with the key) for a manifest
    that does not parse, and what the store raises.
    """
    key = layout.manifest_key(shard, start)
    try:
        data = out.get(key)
    except FileNotFoundError:
        return None
    return parse_manifest(out, key, data)


def parse_manifest(out: Store, key: str, data: bytes) -> Manifest:
    """The manifest in ``data`` (read from ``key``); :class:`StorageError` if it does not parse."""
    try:
        return Manifest.model_validate_json(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise StorageError("unreadable chunk manifest", key=key, store=out.url,
                           reason=str(exc).splitlines()[0],
                           fix="rebuild the chunk with `tailor build`, or move the object "
                               "aside if another tool wrote it") from None


def published_chunks(out: Store, shard: str | None = None) -> dict[tuple[str, int], str]:
    """``(shard, window_start)`` → manifest key of every chunk (of ``shard``), one listing."""
    found: dict[tuple[str, int], str] = {}
    for k in out.list(f"{shard}/" if shard else ""):
        parts = k.split("/")
        if len(parts) != 3 or parts[2] != "_manifest.json" or parts[0].startswith("_"):
            continue
        try:
            found[(parts[0], layout.parse_stamp(parts[1]))] = k
        except ConfigError:
            continue  # not a chunk directory
    return found


def publish(out: Store, shard: str, start: int, length: int, attempt: str,
            parts: list[PartFile], inputs: list[InputObject], *, min_ts: int | None,
            max_ts: int | None, corrupt: int, invalid: int, duplicates: int) -> Manifest:
    """Write the manifest of a new generation (atomically), then clean up.

    ``parts`` are in partition (= key) order; empty ones are dropped, and a
    chunk with no rows gets one zero-row file.  Blocks on the store; raises
    :class:`~tailor.errors.StorageError` if it fails (the old chunk stays).
    """
    files = [p for p in parts if p.rows]
    if not files:
        files = [write_part(out, shard, start, attempt, 0, empty_points())]
    offset = 0
    placed = []
    for f in files:
        placed.append(f.model_copy(update={"row_offset": offset}))
        offset += f.rows
    manifest = Manifest(
        shard=shard, window=layout.stamp(start), window_start=start, window_end=start + length,
        attempt=attempt, files=placed, points=offset,
        min_ts=min_ts, max_ts=max_ts, inputs=inputs, corrupt_frames=corrupt,
        invalid_payloads=invalid, duplicates_dropped=duplicates, built_ns=time.time_ns(),
        tailor_version=__version__)
    old = read_manifest(out, shard, start)
    if old is not None and old.attempt == attempt:
        return old  # a retried publish: already done
    with context_meter.meter(STAGE_WRITE):
        out.put(layout.manifest_key(shard, start), manifest.dumps())
        keep = {f.path for f in placed} | ({f.path for f in old.files} if old else set())
        stale = [k for k in out.list(layout.chunk_dir(shard, start) + "/")
                 if k.rsplit("/", 1)[1].startswith("part-") and k.rsplit("/", 1)[1] not in keep]
        out.delete(stale)
    return manifest
