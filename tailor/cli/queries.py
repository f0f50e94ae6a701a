"""``tailor read``, ``tailor status`` and ``tailor diff``: what the stores hold."""

from __future__ import annotations

import sys
from typing import Any

import click

from tailor.cli.app import exit_fast, main
from tailor.cli.options import (
    config_option,
    handle_errors,
    opt,
    s3_option,
    shards_option,
    store,
    time_arg,
    window_length,
    window_length_option,
)


@main.command(short_help="Read one series (or a metric's series) from published S files.")
@opt("--out", required=True, help="Output root holding S files.")
@opt("--org", required=True, type=click.IntRange(0), help="Org id.")
@opt("--metric", required=True, type=click.IntRange(0), help="Metric id.")
@opt("--context", default=None, type=click.IntRange(0), help="Context key (default: all).")
@opt("--from", "ts_from", default=None, help="Start time (Unix s or ISO-8601), inclusive.")
@opt("--to", "ts_to", default=None, help="End time (Unix s or ISO-8601), exclusive.")
@opt("--format", "fmt", default="table", show_default=True,
     type=click.Choice(["table", "csv", "parquet"]), help="Output format (parquet: to stdout).")
@s3_option
@shards_option
@window_length_option
@config_option
@handle_errors
def read(**flags: Any) -> None:
    """Print points of one series, opening only the files the manifests point to."""
    from tailor.config import ReadConfig
    from tailor.ops.sfile_reader import run

    cfg = ReadConfig(
        out=store(flags, "out"),
        org=flags["org"], metric=flags["metric"], context=flags["context"],
        ts_from=time_arg(flags["ts_from"], "--from"), ts_to=time_arg(flags["ts_to"], "--to"),
        shards_file=flags["shards_file"], window_seconds=window_length(flags["window_length"]),
    )
    run(cfg, flags["fmt"])
    # Everything is printed: skip the interpreter's teardown, where Arrow's C++
    # thread pools now and then abort the process ("terminate called without an
    # active exception", exit -6) after every row was already written.
    exit_fast()


@main.command(short_help="Show per shard and window: ingested, watermark, built, ready, stale.")
@opt("--raw", required=True, help="Raw store written by `tailor ingest`.")
@opt("--out", required=True, help="Output root holding S files.")
@opt("--shard", default=None, help="Only this shard.")
@opt("--grace", default="15m", show_default=True, help="Readiness grace after a window's end.")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@s3_option
@shards_option
@window_length_option
@config_option
@handle_errors
def status(**flags: Any) -> None:
    """Chunk readiness and staleness, from the raw index and the manifests."""
    from tailor.config import StatusConfig, parse_duration
    from tailor.ops.status import run

    cfg = StatusConfig(
        raw=store(flags, "raw"),
        out=store(flags, "out"),
        shard=flags["shard"], grace_s=parse_duration(flags["grace"], what="--grace"),
        shards_file=flags["shards_file"], window_seconds=window_length(flags["window_length"]),
    )
    run(cfg, as_json=flags["as_json"])


@main.command(short_help="Compare two S-file roots point by point; exit 0 only if identical.")
@click.argument("a_url")
@click.argument("b_url")
@opt("--shard", default=None, help="Only this shard.")
@opt("--windows", default=None, help="FROM..TO window starts to compare.")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@s3_option
@window_length_option
@config_option
@handle_errors
def diff(**flags: Any) -> None:
    """One-to-one comparison of two S-file roots per shard and window."""
    from tailor.config import DiffConfig
    from tailor.format.layout import parse_windows
    from tailor.ops.diff import run

    cfg = DiffConfig(
        a=store(flags, "a_url"),
        b=store(flags, "b_url"),
        shard=flags["shard"],
        windows=(parse_windows(flags["windows"], window_length(flags["window_length"]))
                 if flags["windows"] else None),
    )
    sys.exit(run(cfg, as_json=flags["as_json"]))
