"""``tailor status``: per shard and window, ingested / watermark / built / ready / stale.

A thin adapter: :func:`tailor.ops.state.load_state` reads the raw index,
the watermarks and the manifests; the rows come from the pure
:func:`tailor.ops.readiness.chunk_rows`; :func:`render_table` /
:func:`render_json` format them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click

from tailor.config import StatusConfig
from tailor.format.records import Watermark
from tailor.shards import ShardMap, load
from tailor.storage import Store

from .gc import RawLeftovers, find_raw
from .readiness import ChunkRow, chunk_rows, durable_until, ingest_watermark
from .reshard import moves
from .state import load_state

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


def render_json(rows: Sequence[ChunkRow], shard_map: ShardMap, shards: Sequence[str],
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
        mv = moves(shard_map, s)
        if chunks or mv:
            doc["shards"][s] = {
                "moves": [{"org": m.org, "direction": m.direction, "other": m.other,
                           "since": m.since, "until": m.until} for m in mv],
                "chunks": chunks,
            }
    return json.dumps(doc, indent=2)


_HEAD = ("window", "points", "max ts", "objects", "built", "dups", "inputs",
         "ready", "stale", "next")


def render_table(rows: Sequence[ChunkRow], shard_map: ShardMap, shards: Sequence[str],
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
        mv = moves(shard_map, s)
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
    shard_map = load(cfg.shards_file)
    shards = [shard_map.check_shard(cfg.shard)] if cfg.shard else shard_map.all_shards()
    state = load_state(Store(cfg.raw), Store(cfg.out), shard_map, shards, length=cfg.window_seconds,
                       full=True)
    rows = chunk_rows(shard_map, shards, state.records, state.manifests, state.watermarks,
                      length=cfg.window_seconds, grace_s=cfg.grace_s, listing=state.listing)
    leftovers = find_raw(Store(cfg.raw), time.time_ns() - LEFTOVER_AGE_S * 10**9)
    render = render_json if as_json else render_table
    click.echo(render(rows, shard_map, shards, state.watermarks, leftovers))
