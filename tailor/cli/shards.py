"""``tailor shards report`` and ``tailor shards plan``: shard balance from the index."""

from __future__ import annotations

from typing import Any

import click

from tailor.cli.app import main
from tailor.cli.options import (
    F,
    config_option,
    handle_errors,
    opt,
    optional_store,
    s3_option,
    shards_option,
    store,
    time_arg,
    window_length,
    window_length_option,
)


@main.group(short_help="Shard balance: chunk sizes per shard, and the next shards.yaml.")
def shards() -> None:
    """Chunk sizes from the index alone (report), and a shards.yaml evening them out (plan)."""


def _range_options(fn: F) -> F:
    fn = opt("--to", "ts_to", default=None,
             help="End of the range (YYYY-MM-DDTHH, ISO-8601 or Unix s), exclusive "
                  "(default: the end of the current window).")(fn)
    return opt("--from", "ts_from", default=None,
               help="Start of the range: windows starting at or after it (default: "
                    "the last 6 windows up to --to).")(fn)


def _windows_of(flags: dict[str, Any], length: int) -> list[int]:
    from tailor.ops.balance import resolve_windows

    return resolve_windows(time_arg(flags["ts_from"], "--from"), time_arg(flags["ts_to"], "--to"),
                           length)


@shards.command(short_help="Chunk points per shard and window, top orgs, skew (index only).")
@opt("--raw", required=True, help="Raw store written by `tailor ingest`.")
@_range_options
@opt("--top", default=3, show_default=True, type=click.IntRange(0),
     help="Top orgs shown per shared shard.")
@opt("--metrics-file", default=None, type=click.Path(dir_okay=False),
     help="Also write the per-window gauges here (Prometheus textfile, e.g. for "
          "node_exporter's textfile collector).")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@s3_option
@shards_option
@window_length_option
@config_option
@handle_errors
def report(**flags: Any) -> None:
    """Per shard: chunk points min/median/p99/max and top orgs; per window: the skew."""
    from tailor.config import ShardsReportConfig
    from tailor.ops.balance import run_report

    length = window_length(flags["window_length"])
    cfg = ShardsReportConfig(
        raw=store(flags, "raw"),
        shards_file=flags["shards_file"], window_seconds=length, windows=_windows_of(flags, length),
        top=flags["top"], metrics_file=flags["metrics_file"])
    run_report(cfg, as_json=flags["as_json"])


@shards.command(name="plan", short_help="Propose the next shards.yaml from observed volume.")
@opt("--raw", required=True, help="Raw store written by `tailor ingest`.")
@_range_options
@opt("--target-chunk-points", required=True, type=click.IntRange(1),
     help="Points a chunk should hold at most.")
@opt("--max-moves", default=None, type=click.IntRange(0),
     help="At most this many orgs dedicated or returned (default: as many as needed).")
@opt("--out", "out_file", required=True, type=click.Path(dir_okay=False),
     envvar="TAILOR_PLAN_OUT", help="Where to write the proposed shards.yaml.")
@opt("--since", default=None,
     help="Cutover of every move, a window boundary (default: the next one after now, the "
          "last observed window and the last built chunk).")
@opt("--output-root", default=None,
     help="Output root of the S files: --since is checked against its last built chunk.")
@opt("--shared-shards", default=None, type=click.IntRange(1),
     help="Change the number of shared shards (only with --for-new-store).")
@opt("--for-new-store", is_flag=True, default=False,
     help="The file is for a new raw store and output root (allows --shared-shards).")
@opt("--return-below", default=0.5, show_default=True,
     type=click.FloatRange(0, 1, min_open=True, max_open=True),
     help="Return a dedicated org when its shared shard stays under this share of the target.")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@s3_option
@shards_option
@window_length_option
@config_option
@handle_errors
def plan_(**flags: Any) -> None:
    """Dedicate the fewest orgs so that shared chunks meet the target, return small ones."""
    from tailor.config import ShardsPlanConfig
    from tailor.ops.balance import run_plan

    length = window_length(flags["window_length"])
    cfg = ShardsPlanConfig(
        raw=store(flags, "raw"), shards_file=flags["shards_file"],
        window_seconds=length, windows=_windows_of(flags, length),
        target_chunk_points=flags["target_chunk_points"], max_moves=flags["max_moves"],
        out_file=flags["out_file"], since=time_arg(flags["since"], "--since"),
        output_root=optional_store(flags, "output_root"),
        shared_shards=flags["shared_shards"], for_new_store=flags["for_new_store"],
        return_below=flags["return_below"])
    run_plan(cfg, as_json=flags["as_json"])
