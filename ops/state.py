"""What the stores hold, read for `tailor status`, `build --ready`, `tailor diff` and
`tailor shards`.

:func:`load_state` lists the raw index, reads the chunk manifests and the
partition watermarks, and the index records the pure core
(:mod:`tailor.ops.readiness`) needs; :func:`load_chunk` reads one chunk's
afresh; :func:`list_chunks` lists a root's chunks (what `tailor diff`
compares).  Every function blocks on the stores (GETs run on up to
``_THREADS`` threads) and raises :class:`~tailor.errors.StorageError` for a
record that does not parse, and what the store raises; an object deleted
between listing and reading is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tailor.compute.publish import parse_manifest, published_chunks, read_manifest
from tailor.errors import StorageError
from tailor.format.layout import WINDOW_SECONDS, hours, index_dirs_of_hours, parse_index_dir
from tailor.format.records import Manifest, ObjectRecord, Watermark
from tailor.shards import ShardMap
from tailor.storage import Store

from .readiness import records_to_read

_THREADS = 16


@dataclass(frozen=True, slots=True)
class State:
    """Everything status needs, read from the stores.

    ``records`` holds only the index records :func:`records_to_read` asks
    for; ``listing`` names every indexed object (pass both to ``chunk_rows``).
    """

    records: list[ObjectRecord]
    manifests: dict[tuple[str, int], Manifest]
    watermarks: list[Watermark]
    listing: dict[str, dict[str, set[int]]]


def _read_many(store: Store, keys: Sequence[str]) -> list[tuple[str, bytes]]:
    def one(k: str) -> tuple[str, bytes] | None:
        try:
            return k, store.get(k)
        except FileNotFoundError:
            return None  # deleted between list and get (a replaced chunk, a cleanup)

    with ThreadPoolExecutor(min(_THREADS, max(1, len(keys)))) as pool:
        return [x for x in pool.map(one, keys) if x is not None]


def _parse(model: type[Any], key: str, data: bytes, store: Store) -> Any:
    try:
        return model.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise StorageError(f"unreadable {model.__name__} record", key=key, store=store.url,
                           reason=str(exc).splitlines()[0],
                           fix="the object is corrupt or from another tool: move it aside") \
            from None


def raw_shards_for(shard_map: ShardMap, shards: Iterable[str]) -> list[str]:
    """The raw shards whose index can hold points of ``shards``."""
    return sorted({raw for s in shards for raw, _ in shard_map.sources(s)})


def load_records(raw: Store, raw_shards: Iterable[str],
                 hour_starts: Iterable[int] | None = None) -> list[ObjectRecord]:
    """Index records of ``raw_shards`` (every hour, or objects of ``hour_starts``).

    An object is indexed under each hour it holds points of, or under each
    coarser bucket (``tailor.format.layout.index_placement``); each object is read
    once.  With ``hour_starts`` the records of coarse buckets holding those
    hours are read too, whether or not they hold points there: filter by
    their ``hours``.
    """
    keys: dict[str, str] = {}  # batch file name → first key
    hrs = None if hour_starts is None else sorted(set(hour_starts))
    for rs in raw_shards:
        if hrs is None:
            listed = raw.list(f"index/{rs}/")
        else:  # the hours, and the coarser buckets holding them
            listed = [k for d in index_dirs_of_hours(rs, hrs) for k in raw.list(d + "/")]
        for k in listed:
            if k.endswith(".json"):
                keys.setdefault(f"{rs}/{k.rsplit('/', 1)[-1]}", k)
    return [_parse(ObjectRecord, k, d, raw) for k, d in _read_many(raw, sorted(keys.values()))]


def list_index(raw: Store, raw_shards: Iterable[str]) -> dict[str, dict[str, set[int]]]:
    """raw shard → batch id → hour starts it is indexed under (listing only;
    empty for an object indexed under coarser buckets: see :func:`scan_index`)."""
    return scan_index(raw, raw_shards)[0]


def scan_index(raw: Store, raw_shards: Iterable[str]
               ) -> tuple[dict[str, dict[str, set[int]]], dict[tuple[str, str], str]]:
    """One listing of ``index/{raw_shard}/`` per raw shard: :func:`list_index`'s
    mapping, and one index key per ``(raw shard, batch id)`` to read its record at."""
    out: dict[str, dict[str, set[int]]] = {}
    keys: dict[tuple[str, str], str] = {}
    for rs in raw_shards:
        batches = out.setdefault(rs, {})
        for k in raw.list(f"index/{rs}/"):
            parts = k.split("/")
            if len(parts) != 4 or not parts[3].endswith(".json"):
                continue
            where = parse_index_dir(parts[2])
            if where is None:
                continue  # not Tailor's
            batch = parts[3][:-5]
            hours = batches.setdefault(batch, set())
            if where[0] == 0:
                hours.add(where[1])
            keys.setdefault((rs, batch), k)
    return out, keys


def load_watermarks(raw: Store) -> list[Watermark]:
    keys = [k for k in raw.list("watermarks/") if k.endswith(".json")]
    return [_parse(Watermark, k, d, raw) for k, d in _read_many(raw, keys)]


def list_chunks(store: Store, shard: str | None = None) -> dict[tuple[str, int], str]:
    """``(shard, window_start)`` → manifest key, for every chunk of the root."""
    store.invalidate()
    return published_chunks(store, shard)


def load_manifests(out: Store, shards: Iterable[str]) -> dict[tuple[str, int], Manifest]:
    """Every chunk's manifest, found as readers find them (``publish.published_chunks``)."""
    chunk_of: dict[str, tuple[str, int]] = {}
    for s in shards:
        chunk_of.update((k, c) for c, k in published_chunks(out, s).items())
    return {chunk_of[k]: parse_manifest(out, k, d) for k, d in _read_many(out, list(chunk_of))}


def load_state(raw: Store, out: Store, shard_map: ShardMap, shards: Sequence[str], *,
               length: int = WINDOW_SECONDS, full: bool = False) -> State:
    """List the index, read the manifests and watermarks, and the index records.

    With ``full`` every record is read (exact ingested points and max ts for
    every chunk).  Otherwise only the records built chunks do not already
    account for (:func:`records_to_read`): one listing of
    ``index/{raw_shard}/`` per raw shard, one GET per manifest and watermark,
    and one GET per *new* object, whatever the history.
    """
    raw.invalidate()
    out.invalidate()
    manifests = load_manifests(out, shards)
    listing, where = scan_index(raw, raw_shards_for(shard_map, shards))
    need = ({(rs, b) for rs, bs in listing.items() for b in bs} if full else
            records_to_read(shard_map, shards, listing, manifests, length=length))
    keys = sorted(where[n] for n in need)
    records = [_parse(ObjectRecord, k, d, raw) for k, d in _read_many(raw, keys)]
    return State(records, manifests, load_watermarks(raw), listing)


def load_chunk(raw: Store, out: Store, shard_map: ShardMap, shard: str, start: int,
               length: int) -> tuple[list[ObjectRecord], Manifest | None]:
    """The candidate index records and the manifest of one chunk, read afresh."""
    raw.invalidate()
    out.invalidate()
    recs = load_records(raw, raw_shards_for(shard_map, [shard]), hours(start, length))
    return recs, read_manifest(out, shard, start)
