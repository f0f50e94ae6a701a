"""``tailor shards report`` and ``tailor shards plan``: shard balance from the index alone.

A thin adapter: :func:`load_volume` reads the index records of the windows
asked for (through :func:`tailor.ops.state.load_records`, never a raw
object); the numbers come from the pure :mod:`tailor.ops.volume` and
:mod:`tailor.ops.shardplan`; the rest is formatting, the metrics file and
the shards.yaml writer.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from tailor import metrics
from tailor.compute.publish import published_chunks
from tailor.config import ShardsPlanConfig, ShardsReportConfig
from tailor.errors import ConfigError
from tailor.format.layout import hours, stamp, window_start
from tailor.shards import ShardMap, dump, load
from tailor.storage import Store

from .shardplan import Plan, plan
from .state import load_records, raw_shards_for
from .volume import Dist, Placed, Volume, collect, place

#: Windows looked at when no --from/--to is given: the last day of 4 h windows.
DEFAULT_WINDOWS = 6


def resolve_windows(ts_from: int | None, ts_to: int | None, length: int,
                    now: float | None = None) -> list[int]:
    """Window starts in ``[ts_from, ts_to)``; by default the :data:`DEFAULT_WINDOWS`
    windows up to and including the one holding ``now``."""
    if ts_to is None:
        t = int(time.time() if now is None else now)
        ts_to = window_start(t, length) + length
    if ts_from is None:
        ts_from = ts_to - DEFAULT_WINDOWS * length
    if ts_to <= ts_from:
        raise ConfigError(f"--to {stamp(ts_to)} is not after --from {stamp(ts_from)}",
                          fix="--to is exclusive: put it after --from")
    first = window_start(ts_from, length)
    return list(range(first if first >= ts_from else first + length, ts_to, length))


def load_volume(raw: Store, shard_map: ShardMap, windows: Sequence[int], length: int) -> Volume:
    """The volume of ``windows`` from the index records of every raw shard of ``shard_map``."""
    if not windows:
        return collect([], 0, 0)
    raw.invalidate()
    hrs = sorted({h for w in windows for h in hours(w, length)})
    recs = load_records(raw, raw_shards_for(shard_map, shard_map.all_shards()), hrs)
    return collect(recs, windows[0], windows[-1] + length)


# -- report --------------------------------------------------------------------------

def report_doc(placed: Placed, windows: Sequence[int], length: int, *, top: int,
               objects: int) -> dict[str, Any]:
    """The report as a JSON-ready dict (pure): per shard, per window, overall."""
    chunks = placed.chunks()
    shards: dict[str, Any] = {}
    for shard in placed.names:
        sizes = [n for (s, _), n in chunks.items() if s == shard]
        if not sizes:
            continue
        row: dict[str, Any] = Dist.of(sizes).as_dict()
        if shard.startswith("org-mod-"):
            totals = placed.org_totals(shard)
            whole = sum(totals.values()) or 1.0
            row["top_orgs"] = [{"org": o, "points": round(p), "share": round(p / whole, 4)}
                               for o, p in sorted(totals.items(), key=lambda kv: -kv[1])[:top]]
        shards[shard] = row
    per_window = []
    for w in windows:
        here = {s: n for (s, x), n in chunks.items() if x == w}
        d = Dist.of(here.values())
        per_window.append({"window": stamp(w), "start": w, **d.as_dict(),
                           "largest_shard": max(here, key=lambda s: (here[s], s)) if here
                           else None})
    return {"windows": [stamp(w) for w in windows], "window_seconds": length,
            "objects": objects, "all": Dist.of(chunks.values()).as_dict(), "shards": shards,
            "per_window": per_window}


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return [(indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))).rstrip()
            for r in [head, *rows]]


def _dist_line(d: dict[str, Any]) -> str:
    return (f"{d['chunks']} chunk(s), min {d['min']}, median {d['median']}, p99 {d['p99']}, "
            f"max {d['max']}, skew {d['skew']:.2f}")


def render_report(doc: dict[str, Any]) -> str:
    ws = doc["windows"]
    span = f"{ws[0]}..{stamp(doc['per_window'][-1]['start'] + doc['window_seconds'])}" \
        if ws else "(no window)"
    lines = [f"shards report: {span} ({len(ws)} window(s) of {doc['window_seconds'] // 3600} h), "
             f"{doc['objects']} raw object(s); points estimated from the index",
             f"all: {_dist_line(doc['all'])}", ""]
    rows = [(s, str(r["chunks"]), str(r["min"]), str(r["median"]), str(r["p99"]),
             str(r["max"]), str(r["total"]),
             ", ".join(f"{t['org']} {t['share']:.0%}" for t in r.get("top_orgs", [])))
            for s, r in doc["shards"].items()]
    lines += _table(("shard", "chunks", "min", "median", "p99", "max", "points", "top orgs"),
                    rows, "")
    lines.append("")
    wrows = [(w["window"], str(w["chunks"]), str(w["max"]), w["largest_shard"] or "-",
              str(w["median"]), f"{w['skew']:.2f}") for w in doc["per_window"]]
    lines += _table(("window", "chunks", "largest", "in", "median", "skew"), wrows, "")
    return "\n".join(lines)


def write_metrics(doc: dict[str, Any], path: str) -> None:
    """Set the shard-balance gauges per window and write them as a textfile (atomic)."""
    from prometheus_client import write_to_textfile

    metrics.LARGEST_CHUNK.clear()
    metrics.CHUNK_SKEW.clear()
    for w in doc["per_window"]:
        if w["chunks"]:
            metrics.LARGEST_CHUNK.labels(window=w["window"]).set(w["max"])
            metrics.CHUNK_SKEW.labels(window=w["window"]).set(w["skew"])
    try:
        write_to_textfile(path, metrics.SHARDS_REGISTRY)
    except OSError as exc:
        raise ConfigError(f"cannot write --metrics-file {path!r}: {exc.strerror}",
                          fix="pass a path in an existing, writable directory") from None


def run_report(cfg: ShardsReportConfig, *, as_json: bool = False) -> None:
    """Print the report of ``cfg.windows`` (and write the metrics file if asked)."""
    shard_map = load(cfg.shards_file)
    vol = load_volume(Store(cfg.raw), shard_map, cfg.windows, cfg.window_seconds)
    doc = report_doc(place(vol, shard_map, cfg.window_seconds), cfg.windows, cfg.window_seconds,
                     top=cfg.top, objects=vol.objects)
    if cfg.metrics_file:
        write_metrics(doc, cfg.metrics_file)
    click.echo(json.dumps(doc, indent=2) if as_json else render_report(doc))


# -- plan ----------------------------------------------------------------------------

def choose_since(asked: int | None, *, now: float, length: int, observed_end: int,
                 built_end: int | None) -> int:
    """The cutover: ``asked``, checked, or the next window boundary after ``now``, the
    last observed window and the last built chunk.  Raises :class:`ConfigError`."""
    floor = max(observed_end, built_end or 0)
    if asked is None:
        return max(window_start(int(now), length) + length, floor)
    if asked % length:
        raise ConfigError(f"--since {stamp(asked)} is not a window boundary",
                          fix=f"use {stamp(window_start(asked, length) + length)}")
    if asked < floor:
        what = "built" if built_end is not None and built_end >= observed_end else "observed"
        raise ConfigError(f"--since {stamp(asked)} is before the end of the last {what} "
                          f"window ({stamp(floor)})",
                          fix=f"pass --since {stamp(floor)} or later: a move must never "
                              "change a window already built or observed")
    if asked < window_start(int(now), length) + length and built_end is None:
        raise ConfigError(f"--since {stamp(asked)} is not in the future, and nothing tells "
                          "which windows are built",
                          fix="pass --output-root with the S files, or drop --since")
    return asked


def plan_doc(p: Plan, windows: Sequence[int], length: int, out_file: str) -> dict[str, Any]:
    return {"since": p.since, "since_stamp": stamp(p.since), "target": p.target,
            "windows": [stamp(w) for w in windows],
            "range": f"{stamp(windows[0])}..{stamp(windows[-1] + length)}", "out": out_file,
            "shared_shards": p.shard_map.shared_shards, "reached": p.reached, "minimal": p.minimal,
            "moves": [{"org": m.org, "kind": m.kind, "from": m.source, "to": m.dest,
                       "peak_window_points": m.peak} for m in p.moves],
            "before": p.before.as_dict(), "after": p.after.as_dict(),
            "oversize": [{"org": o, "peak": n} for o, n in p.oversize],
            "blocked": list(p.blocked), "notes": list(p.notes)}


def render_plan(doc: dict[str, Any]) -> str:
    lines = [f"shards plan: target {doc['target']} points per chunk, observed "
             f"{doc['range']} ({len(doc['windows'])} window(s)), moves from "
             f"{doc['since_stamp']}"]
    if doc["moves"]:
        lines += _table(("move", "org", "from", "to", "peak window points"),
                        [(m["kind"], str(m["org"]), m["from"], m["to"],
                          str(m["peak_window_points"])) for m in doc["moves"]])
    else:
        lines.append("  no move: every shared chunk meets the target and no dedicated org "
                     "is small enough to return")
    lines += [f"before: {_dist_line(doc['before'])}", f"after:  {_dist_line(doc['after'])}"]
    lines += [f"note: {n}" for n in doc["notes"]]
    if not doc["reached"]:
        lines.append("GOAL NOT REACHED: some shared chunk stays over the target "
                     "(raise --max-moves or see the notes)")
    elif not doc["minimal"]:
        lines.append("note: the target is met, but the search was cut short: fewer moves "
                     "may exist")
    lines.append(f"wrote {doc['out']}: review it (diff against the current file), then roll it "
                 "out to every builder and reader before the window starting at "
                 f"{doc['since_stamp']} is built, and to the ingesters")
    return "\n".join(lines)


def run_plan(cfg: ShardsPlanConfig, *, as_json: bool = False, now: float | None = None) -> None:
    """Plan, write ``cfg.out_file`` (read back through ``tailor.shards.load``), print."""
    shard_map = load(cfg.shards_file)
    length = cfg.window_seconds
    if cfg.shared_shards not in (None, shard_map.shared_shards) and not cfg.for_new_store:
        raise ConfigError(f"--shared-shards {cfg.shared_shards} changes shared_shards "
                          f"({shard_map.shared_shards}), which moves every org not dedicated, "
                          "for all time: built windows and raw objects would not be found",
                          fix="dedicate orgs instead (drop --shared-shards), or add "
                              "--for-new-store to write a map for a new raw store and "
                              "output root")
    vol = load_volume(Store(cfg.raw), shard_map, cfg.windows, length)
    orgs, v = vol.org_windows(cfg.windows, length)
    seen = [w for w, x in zip(cfg.windows, v.sum(axis=0).tolist(), strict=True) if x > 0]
    if not seen:
        span = f"{stamp(cfg.windows[0])}..{stamp(cfg.windows[-1])}" if cfg.windows else "-"
        raise ConfigError(f"no indexed points in windows {span}",
                          fix="pass --from/--to around windows that were ingested")
    built_end = None
    if cfg.output_root is not None:
        out = Store(cfg.output_root)
        out.invalidate()
        built = [w for _, w in published_chunks(out)]
        built_end = max(built) + length if built else 0
    now = time.time() if now is None else now
    since = choose_since(cfg.since, now=now, length=length, observed_end=seen[-1] + length,
                         built_end=built_end)
    p = plan(shard_map, orgs, v, cfg.windows, target=cfg.target_chunk_points, since=since,
             max_moves=cfg.max_moves, shared_shards=cfg.shared_shards,
             return_below=cfg.return_below)
    header = (f"Proposed by `tailor shards plan` at "
              f"{dt.datetime.fromtimestamp(now, dt.UTC):%Y-%m-%dT%H:%M:%SZ}: target "
              f"{cfg.target_chunk_points} points per chunk, observed "
              f"{stamp(cfg.windows[0])}..{stamp(cfg.windows[-1] + length)}, moves from "
              f"{stamp(since)}.\n"
              + "".join(f"{m.kind} org {m.org}: {m.source} -> {m.dest}\n" for m in p.moves)
              + "Keep earlier entries: their since/until say where built windows are.")
    try:
        Path(cfg.out_file).write_text(dump(p.shard_map, header))
    except OSError as exc:
        raise ConfigError(f"cannot write --out {cfg.out_file!r}: {exc.strerror}",
                          fix="pass a path in an existing, writable directory") from None
    if load(cfg.out_file) != p.shard_map:  # the file is what every command will read
        raise ConfigError(f"{cfg.out_file} does not read back as the plan",
                          fix="report this as a bug; do not roll the file out")
    doc = plan_doc(p, cfg.windows, length, cfg.out_file)
    click.echo(json.dumps(doc, indent=2) if as_json else render_plan(doc))
