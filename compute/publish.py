"""Publish stage: part files under the build's attempt, then ``_manifest.json`` last.

Readers go through the manifest only, so a chunk flips from one generation
to the next with one atomic write of the manifest.  Any number of builders
may publish the same chunk at the same time (cron overlaps, retries, two
operators): the protocol below never lets a manifest list a file that does
not exist, on S3 and on a local directory alike.

1. An attempt writes its part files under its own names
   (``part-{attempt}-{i}.parquet``, :func:`write_part`).
2. It reads the current manifest with its version token
   (:meth:`~tailor.storage.Store.get_versioned`): generation ``g``, or none
   (``g = 0``).  If that manifest is the attempt's own, it is done (a retry).
3. It **claims**: conditionally creates ``_claims/{shard}/{window}/{attempt}.json``
   holding ``g``.  An attempt publishes at most once, at generation ``g + 1``:
   a retried attempt whose claim exists may only go on while the chunk is
   still at the claim's generation.  An attempt older than
   :data:`CLAIM_MAX_AGE_NS` refuses to claim.
4. **Compare-and-swap** of the manifest (:meth:`~tailor.storage.Store.put_if_match`
   on the token of step 2): generation ``g + 1``, naming the files of ``g``
   in ``previous_files``.  If it fails, another builder published first: the
   attempt stops, and reports the chunk as published by the other one.
5. The winner **sweeps** the chunk's folder (:func:`sweepable`, a pure rule):
   it keeps the files of generations ``g + 1`` and ``g`` (readers in flight
   on the replaced manifest), and deletes only the part files of attempts
   that can never be published again: claimed at a generation below the new
   one, or unclaimed and older than :data:`ATTEMPT_MAX_AGE_NS` (twice the
   claim limit, so no clock skew below 12 h matters).  Files of an attempt
   still building are never touched.  Claims older than
   :data:`ATTEMPT_MAX_AGE_NS` are deleted too.

Why it is safe: a file is deleted only when its attempt's one possible
compare-and-swap (against generation ``base``) can no longer succeed because
the chunk is past ``base`` (generations only grow), or when its attempt can
no longer claim; the current and the previous generation's files are never
deleted.  Sweep failures never fail a publish: what is left is swept by the
next publish or by ``tailor gc``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Final

from distributed.metrics import context_meter

from tailor import __version__
from tailor.errors import BuildError, ConfigError, StorageError, TailorError
from tailor.format import layout
from tailor.format.records import InputObject, Manifest, PartFile, _Record
from tailor.metrics import STAGE_WRITE
from tailor.storage import Store

from .decode import Points, empty_points
from .encode import encode

log = logging.getLogger("tailor.build")

HOUR_NS: Final = 3600 * 10**9
#: An attempt this old (by its id's timestamp) no longer claims a publish.
CLAIM_MAX_AGE_NS: Final = 12 * HOUR_NS
#: Unclaimed part files and claims this old are swept.
ATTEMPT_MAX_AGE_NS: Final = 2 * CLAIM_MAX_AGE_NS


def new_attempt() -> str:
    """A fresh, unique, time-ordered attempt id: ``{time_ns:x}-{random}``."""
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def attempt_ns(attempt: str) -> int | None:
    """When ``attempt`` was made (ns since the epoch); None if it is not a Tailor attempt id."""
    head, sep, _ = attempt.partition("-")
    try:
        return int(head, 16) if sep else None
    except ValueError:
        return None


class Claim(_Record):
    """``_claims/{shard}/{window}/{attempt}.json``: the attempt's one try to publish."""

    attempt: str
    base_generation: int
    claimed_ns: int


def _key_of(pts: Points, i: int) -> list[int]:
    return [int(pts.org[i]), int(pts.metric[i]), int(pts.ctx[i]), int(pts.ts[i])]


def encode_part(shard: str, start: int, attempt: str, i: int,
                rows: Points) -> tuple[str, bytes, PartFile]:
    """Part file ``i`` of an attempt, not yet written: ``(key, bytes, manifest entry)``.

    Pure given ``rows`` (same rows → same key and bytes).  ``row_offset`` is
    left 0; :func:`publish` fills it in.
    """
    data, sha = encode(rows)
    key = layout.part_key(shard, start, attempt, i)
    n = len(rows)
    return key, data, PartFile(path=key.rsplit("/", 1)[1], rows=n, row_offset=0,
                               bytes=len(data), sha256=sha,
                               min_key=_key_of(rows, 0) if n else [],
                               max_key=_key_of(rows, n - 1) if n else [])


def put_part(out: Store, key: str, data: bytes) -> None:
    """Put a part file's bytes at ``key`` (from :func:`encode_part`).  Blocks on the store.

    Durability: the file's bytes and the chunk folder are durable when this
    returns, its entry in the folder is not (``sync_entry=False``).  Only a
    manifest names a part file, the manifest lives in the same folder, and
    both manifest writes (``put_if_absent``, ``put_if_match``) fsync that
    folder after their own link or rename, so the entry is durable before,
    or together with, the manifest that names it.
    """
    out.put(key, data, sync_entry=False)


def write_part(out: Store, shard: str, start: int, attempt: str, i: int,
               rows: Points) -> PartFile:
    """Encode and put part file ``i`` of an attempt; returns its manifest entry.

    Idempotent (same rows → same key and bytes), so a retried task is harmless.
    Blocks on the store; raises what it raises.
    """
    key, data, f = encode_part(shard, start, attempt, i, rows)
    with context_meter.meter(STAGE_WRITE):
        put_part(out, key, data)
    return f


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


# -- the sweep (pure) -------------------------------------------------------------------

def sweepable(names: Iterable[str], current: Manifest | None, claims: Mapping[str, int],
              now_ns: int, *, replaced: Iterable[str] = ()) -> list[str]:
    """Part file names of a chunk folder that no manifest can ever list again (pure).

    ``current`` is the chunk's manifest (None: never published); ``claims``
    maps claimed attempts to their base generation; ``replaced`` names the
    files of the generation before ``current.previous_files`` (known to a
    publisher, which just replaced that manifest).  Kept: the files of
    ``current`` and of the generation it replaced, every file of those two
    attempts, every file of an attempt that claimed at or after ``current``'s
    generation (it may still win), and unclaimed files younger than
    :data:`ATTEMPT_MAX_AGE_NS` (their attempt may still be building).  Names
    that are not part files are never returned.
    """
    keep = ({f.path for f in current.files} | set(current.previous_files)) if current else set()
    live = {current.attempt, current.previous_attempt} if current else set()
    generation = current.generation if current else 0
    gone = set(replaced)
    out = []
    for name in names:
        attempt = layout.part_attempt(name)
        if attempt is None or name in keep or attempt in live:
            continue
        base = claims.get(attempt)
        made = attempt_ns(attempt)
        if (name in gone or (base is not None and base < generation)
                or (base is None and made is not None
                    and now_ns - made > ATTEMPT_MAX_AGE_NS)):
            out.append(name)
    return sorted(out)


def stale_claims(claims: Iterable[str], now_ns: int) -> list[str]:
    """Claimed attempts old enough to forget (pure): they can no longer claim again."""
    return sorted(a for a in claims
                  if (t := attempt_ns(a)) is not None and now_ns - t > ATTEMPT_MAX_AGE_NS)


def read_claims(out: Store, shard: str, start: int, attempts: Iterable[str] | None = None
                ) -> tuple[list[str], dict[str, int]]:
    """Every claimed attempt of the chunk, and the base generation of those in ``attempts``.

    ``attempts`` None reads every claim.  An unreadable claim counts as base
    0 (the oldest: it can only lose).
    """
    prefix = layout.claim_prefix(shard, start)
    names = [k[len(prefix):-5] for k in out.list(prefix) if k.endswith(".json")]
    want = set(names) if attempts is None else set(attempts) & set(names)
    bases: dict[str, int] = {}
    for a in sorted(want):
        try:
            bases[a] = Claim.model_validate_json(
                out.get(layout.claim_key(shard, start, a))).base_generation
        except FileNotFoundError:
            continue  # swept meanwhile: old, so it can never publish
        except ValueError:
            bases[a] = 0
    return names, bases


def sweep(out: Store, shard: str, start: int, current: Manifest | None, *,
          replaced: Iterable[str] = (), now_ns: int | None = None, dry_run: bool = False
          ) -> list[str]:
    """Delete what :func:`sweepable` and :func:`stale_claims` allow; returns those keys.

    One listing of the chunk folder and of its claims, one GET per claim of
    an attempt that still has files.  Blocks on the store; raises
    :class:`~tailor.errors.StorageError` if it fails.
    """
    now = time.time_ns() if now_ns is None else now_ns
    folder = layout.chunk_dir(shard, start) + "/"
    names = [k[len(folder):] for k in out.list(folder)]
    claimed, bases = read_claims(out, shard, start,
                                 {a for n in names if (a := layout.part_attempt(n))})
    keys = [folder + n for n in sweepable(names, current, bases, now, replaced=replaced)]
    keys += [layout.claim_key(shard, start, a) for a in stale_claims(claimed, now)]
    if not dry_run:
        out.delete(keys)
    return keys


# -- publish ----------------------------------------------------------------------------

def prepare_folders(out: Store, chunks: Iterable[tuple[str, int]]) -> None:
    """Create the chunk and claim folders of ``chunks`` at once, before any task writes.

    Each new folder's parent is fsynced once for all its new children
    (:meth:`~tailor.storage.Store.makedirs`): a fresh root gets one fsync of
    the root and one of ``_claims`` for all its shards, not one per shard.
    Only an optimisation: a failure is logged, and the writes create what
    is missing themselves.  The folders are durable before any manifest is
    written in them, as when the writes made them.  Chunks that fail leave
    empty folders, which no listing shows.
    """
    prefixes = [p for s, w in chunks for p in (layout.chunk_dir(s, w),
                                               layout.claim_prefix(s, w))]
    try:
        out.makedirs(prefixes)
    except TailorError as exc:
        log.warning("could not create the chunk folders ahead: %s", exc)


def _claim(out: Store, shard: str, start: int, attempt: str, base: int, now: int) -> int:
    """Claim the attempt's one publish at generation ``base + 1``; returns the claim's base.

    Raises :class:`BuildError` for an attempt too old to claim.
    """
    made = attempt_ns(attempt)
    if made is not None and now - made > CLAIM_MAX_AGE_NS:
        raise BuildError("build attempt too old to publish", shard=shard,
                         window=layout.stamp(start), attempt=attempt,
                         reason=f"started more than {CLAIM_MAX_AGE_NS // HOUR_NS} h ago",
                         fix="run `tailor build` for the chunk again")
    key = layout.claim_key(shard, start, attempt)
    body = Claim(attempt=attempt, base_generation=base, claimed_ns=now).dumps()
    if out.put_if_absent(key, body):
        return base
    try:  # claimed before: this is a retry of the same attempt
        return Claim.model_validate_json(out.get(key)).base_generation
    except FileNotFoundError:
        return -1  # swept: older than the sweep age, so it can never publish


def publish(out: Store, shard: str, start: int, length: int, attempt: str,
            parts: list[PartFile], inputs: list[InputObject], *, min_ts: int | None,
            max_ts: int | None, corrupt: int, invalid: int, duplicates: int) -> Manifest:
    """Publish the attempt's manifest if no other builder beat it; return the chunk's manifest.

    ``parts`` are in partition (= key) order; empty ones are dropped, and a
    chunk with no rows gets one zero-row file.  The returned manifest is the
    attempt's own (``.attempt == attempt``) or, when another builder
    published the chunk first, that builder's.  Blocks on the store; raises
    :class:`~tailor.errors.StorageError` if the store fails (the old chunk
    stays) and :class:`BuildError` for an attempt too old to publish.
    """
    files = [p for p in parts if p.rows]
    if not files:
        files = [write_part(out, shard, start, attempt, 0, empty_points())]
    offset = 0
    placed = []
    for f in files:
        placed.append(f.model_copy(update={"row_offset": offset}))
        offset += f.rows
    key = layout.manifest_key(shard, start)
    with context_meter.meter(STAGE_WRITE):
        got = out.get_versioned(key)
        old = parse_manifest(out, key, got[0]) if got else None
        if old is not None and old.attempt == attempt:
            # A retried publish: already done, perhaps by a process that died
            # before the folder's fsync; make it durable before saying so.
            out.sync_entry(key)
            return old
        now = time.time_ns()
        base = old.generation if old else 0
        if _claim(out, shard, start, attempt, base, now) != base:
            return _lost(out, shard, start, attempt, placed, old)
        manifest = Manifest(
            shard=shard, window=layout.stamp(start), window_start=start,
            window_end=start + length, attempt=attempt, files=placed, points=offset,
            min_ts=min_ts, max_ts=max_ts, inputs=inputs, corrupt_frames=corrupt,
            invalid_payloads=invalid, duplicates_dropped=duplicates, built_ns=now,
            tailor_version=__version__, generation=base + 1,
            previous_attempt=old.attempt if old else None,
            previous_files=[f.path for f in old.files] if old else [])
        if not out.put_if_match(key, manifest.dumps(), got[1] if got else None):
            now_there = read_manifest(out, shard, start)
            if now_there is not None and now_there.attempt == attempt:
                out.sync_entry(key)
                return now_there  # our write landed; a retried request saw it
            return _lost(out, shard, start, attempt, placed, now_there)
        try:
            sweep(out, shard, start, manifest, replaced=old.previous_files if old else (),
                  now_ns=now)
        except TailorError as exc:  # the chunk is published; the next publish or gc sweeps
            log.warning("sweep of %s left files behind: %s", layout.chunk_dir(shard, start), exc)
    return manifest


def _lost(out: Store, shard: str, start: int, attempt: str, mine: list[PartFile],
          winner: Manifest | None) -> Manifest:
    """Another builder published the chunk: remove this attempt's files, return the winner's.

    The attempt's files are kept when the winner's manifest lists them as its
    previous generation (this attempt won, and was replaced at once).
    """
    if winner is None:
        raise BuildError("chunk manifest vanished during publish", shard=shard,
                         window=layout.stamp(start), attempt=attempt,
                         fix="another tool deleted it; run `tailor build` for the chunk again")
    if winner.previous_attempt != attempt:
        folder = layout.chunk_dir(shard, start) + "/"
        try:
            out.delete([folder + f.path for f in mine])
        except TailorError as exc:
            log.warning("could not remove the files of attempt %s: %s", attempt, exc)
    return winner
