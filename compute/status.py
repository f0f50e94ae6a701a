"""``tailor status``: per shard and window, ingested / watermark / built / ready / stale.

A thin adapter: :func:`load_state` reads the raw index, the watermarks and
the manifests; the rows come from the pure :func:`tailor.compute.ready.chunk_rows`;
:func:`render_table` / :func:`render_json` format them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from tailor.compute.ready import (
    ChunkRow,
    chunk_rows,
    durable_until,
    ingest_watermark,
    moves,
    records_to_read,
)
from tailor.config import StatusConfig
from tailor.errors import StorageError
from tailor.format.layout import WINDOW_SECONDS, hours, index_dirs_of_hours, parse_index_dir
from tailor.format.records import Manifest, ObjectRecord, Watermark
from tailor.shards import ShardMap, load
from tailor.storage import Store

from .publish import parse_manifest, published_chunks, read_manifest

if TYPE_CHECKING:
    from .gc import RawLeftovers

_THREADS = 16
#: Unindexed raw objects and incomplete uploads older than this are reported.
LEFTOVER_AGE_S = 3600
#: A watermark not rewritten for this long has no live member: ingest rewrites
#: every assigned partition's at least every ``--watermark-interval`` (30 s).
STALE_WATERMARK_S = 600


def stale_watermarks(watermarks: Iterable[Watermark], now_ns: int | None = None
                     ) -> list[Watermark]:
    """Watermarks older than :data:`STALE_WATERMARK_S`, oldest first: a
    stopped consumer group, a partition no member owns, or a retired topic.
    Each holds ``build --ready`` back until ingest runs again or its file is
    deleted."""
    now = time.time_ns() if now_ns is None else now_ns
    old = [w for w in watermarks if now - w.updated_ns > STALE_WATERMARK_S * 10**9]
    return sorted(old, key=lambda w: (w.updated_ns, w.group, w.topic, w.partition))


def _age(ns: int, now_ns: int) -> str:
    s = max(0, (now_ns - ns) // 10**9)
    return f"{s // 86400} d" if s >= 2 * 86400 else f"{s // 3600} h" if s >= 7200 else \
        f"{s // 60} min"


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


def raw_shards_for(smap: ShardMap, shards: Iterable[str]) -> list[str]:
    """The raw shards whose index can hold points of ``shards``."""
    return sorted({raw for s in shards for raw, _ in smap.sources(s)})


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


def load_manifests(out: Store, shards: Iterable[str]) -> dict[tuple[str, int], Manifest]:
    """Every chunk's manifest, found as readers find them (``publish.published_chunks``)."""
    chunk_of: dict[str, tuple[str, int]] = {}
    for s in shards:
        chunk_of.update((k, c) for c, k in published_chunks(out, s).items())
    return {chunk_of[k]: parse_manifest(out, k, d) for k, d in _read_many(out, list(chunk_of))}


def load_state(raw: Store, out: Store, smap: ShardMap, shards: Sequence[str], *,
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
    listing, where = scan_index(raw, raw_shards_for(smap, shards))
    need = ({(rs, b) for rs, bs in listing.items() for b in bs} if full else
            records_to_read(smap, shards, listing, manifests, length=length))
    keys = sorted(where[n] for n in need)
    records = [_parse(ObjectRecord, k, d, raw) for k, d in _read_many(raw, keys)]
    return State(records, manifests, load_watermarks(raw), listing)


def load_chunk(raw: Store, out: Store, smap: ShardMap, shard: str, start: int,
               length: int) -> tuple[list[ObjectRecord], Manifest | None]:
    """The candidate index records and the manifest of one chunk, read afresh."""
    raw.invalidate()
    out.invalidate()
    recs = load_records(raw, raw_shards_for(smap, [shard]), hours(start, length))
    return recs, read_manifest(out, shard, start)


# -- rendering ---------------------------------------------------------------------------

def _ts(ts: int | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _ns(ns: int | None) -> str:
    return "-" if ns is None else _ts(ns // 10**9)


def _leftovers_dict(left: RawLeftovers | None) -> dict[str, int] | None:
    if left is None:
        return None
    return {"unindexed_objects": len(left.unindexed), "unindexed_bytes": left.unindexed_bytes,
            "recent_unindexed_objects": left.young_unindexed,
            "incomplete_uploads": len(left.uploads),
            "recent_incomplete_uploads": left.young_uploads}


def render_json(rows: Sequence[ChunkRow], smap: ShardMap, shards: Sequence[str],
                watermarks: Sequence[Watermark], leftovers: RawLeftovers | None = None) -> str:
    """``{"watermark_ns", "partitions": [...], "shards": {shard: {"moves", "chunks"}},
    "raw_leftovers": {...}}``."""
    now = time.time_ns()
    stale = {id(w) for w in stale_watermarks(watermarks, now)}
    doc: dict[str, Any] = {
        "raw_leftovers": _leftovers_dict(leftovers),
        "watermark_ns": ingest_watermark(watermarks, now),
        "partitions": [{"group": w.group, "topic": w.topic, "partition": w.partition,
                        "committed": w.committed, "durable_until_ns": durable_until(w, now),
                        "caught_up": w.caught_up, "updated_ns": w.updated_ns,
                        "stale": id(w) in stale} for w in watermarks],
        "shards": {},
    }
    for s in shards:
        chunks = [r.as_dict() for r in rows if r.shard == s]
        mv = moves(smap, s)
        if chunks or mv:
            doc["shards"][s] = {
                "moves": [{"org": m.org, "direction": m.direction, "other": m.other,
                           "since": m.since, "until": m.until} for m in mv],
                "chunks": chunks,
            }
    return json.dumps(doc, indent=2)


_HEAD = ("window", "points", "max ts", "objects", "built", "dups", "inputs",
         "ready", "stale", "next")


def render_table(rows: Sequence[ChunkRow], smap: ShardMap, shards: Sequence[str],
                 watermarks: Sequence[Watermark], leftovers: RawLeftovers | None = None) -> str:
    now = time.time_ns()
    wm = ingest_watermark(watermarks, now)
    lines = [f"ingest watermark: {_ns(wm)} UTC (oldest durable position over "
             f"{len(watermarks)} partition(s))"]
    if not watermarks:
        lines.append("  no watermarks yet: nothing is ready until ingest commits")
    stale = stale_watermarks(watermarks, now)
    if stale:
        lines.append(f"  {len(stale)} stale watermark(s), not rewritten for over "
                     f"{STALE_WATERMARK_S // 60} min, hold readiness back (a stopped group, or "
                     "a retired topic: delete watermarks/{group}/{topic}/ to release it):")
        lines.extend(f"    {w.group} {w.topic}/{w.partition}: last written "
                     f"{_age(w.updated_ns, now)} ago" for w in stale[:10])
        if len(stale) > 10:
            lines.append(f"    … and {len(stale) - 10} more (--json lists them all)")
    if leftovers is not None and (leftovers.unindexed or leftovers.uploads):
        lines.append(f"raw leftovers: {len(leftovers.unindexed)} unindexed object(s) "
                     f"({leftovers.unindexed_bytes} bytes) and {len(leftovers.uploads)} "
                     f"incomplete multipart upload(s) older than {LEFTOVER_AGE_S // 3600} h: "
                     "`tailor gc --raw … --delete` removes them")
    for s in shards:
        srows = [r for r in rows if r.shard == s]
        mv = moves(smap, s)
        if not srows and not mv:
            continue
        lines.append("")
        lines.append(f"shard {s}")
        lines.extend(f"  moved: {m.describe()}" for m in mv)
        if not srows:
            lines.append("  (no data)")
            continue
        table = [_HEAD] + [(
            r.window, "-" if r.points is None else str(r.points), _ts(r.max_ts), str(r.objects),
            (str(r.built_points) if r.built else "no"),
            (str(r.duplicates_dropped) if r.built else "-"),
            (str(len(r.inputs)) if r.built else "-"),
            "yes" if r.ready else "no",
            (f"yes ({len(r.late)} late)" if r.stale else "no"),
            r.action,
        ) for r in srows]
        widths = [max(len(row[i]) for row in table) for i in range(len(_HEAD))]
        for row in table:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                         .rstrip())
    return "\n".join(lines)


def run(cfg: StatusConfig, *, as_json: bool = False) -> None:
    """Print the status of every shard (or ``cfg.shard``) to stdout.

    Reads every index record of the shards shown (exact ingested counts);
    ``build --ready`` reads only the new ones.
    """
    smap = load(cfg.shards_file)
    shards = [smap.check_shard(cfg.shard)] if cfg.shard else smap.all_shards()
    state = load_state(Store(cfg.raw), Store(cfg.out), smap, shards, length=cfg.window_seconds,
                       full=True)
    rows = chunk_rows(smap, shards, state.records, state.manifests, state.watermarks,
                      length=cfg.window_seconds, grace_s=cfg.grace_s, listing=state.listing)
    from .gc import find_raw

    leftovers = find_raw(Store(cfg.raw), time.time_ns() - LEFTOVER_AGE_S * 10**9)
    render = render_json if as_json else render_table
    click.echo(render(rows, smap, shards, state.watermarks, leftovers))
