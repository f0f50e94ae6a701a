"""``tailor ingest`` and ``tailor build``: the two halves of the pipeline."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from tailor.errors import ConfigError

if TYPE_CHECKING:
    from tailor.config import BuildConfig
from tailor.cli.app import exit_fast, main
from tailor.cli.options import (
    config_option,
    handle_errors,
    opt,
    s3_option,
    shards_option,
    store,
    topic_list,
    window_length,
    window_length_option,
)


@main.command(short_help="Consume points from Kafka into raw objects (the state half).")
@opt("--brokers", required=True, help="Kafka bootstrap HOST:PORT[,HOST:PORT].")
@opt("--topics", required=True, help="Comma list of topics, or a regex such as 'points-.*'.")
@opt("--group", default="tailor-ingest", show_default=True, help="Consumer group id.")
@opt("--raw", required=True, help="Raw store: s3://bucket/prefix or a local directory.")
@s3_option
@opt("--flush-age", default="10m", show_default=True, help="Flush a shard's batch this old.")
@opt("--flush-payloads", default=100_000, show_default=True, type=click.IntRange(1),
     help="Flush a shard's batch at this many payloads.")
@opt("--flush-bytes", default="256MiB", show_default=True, help="Flush a shard's batch this big.")
@opt("--memory-limit", default="1GiB", show_default=True,
     help="Bound on buffered payload bytes; fetching pauses at it.")
@opt("--part-size", default="5MiB", show_default=True, help="Multipart upload part size.")
@opt("--upload-concurrency", default=8, show_default=True, type=click.IntRange(1),
     help="Parts and objects uploaded in parallel.")
@opt("--metrics-port", default=None, type=click.IntRange(0, 65535),
     help="Serve Prometheus /metrics on this port (0 = any free port).")
@opt("--metrics-host", default="127.0.0.1", show_default=True,
     help="Address the metrics endpoint binds to.")
@opt("--exit-when-idle", default=None,
     help="Flush, commit and exit 0 after this long with nothing new to consume (e.g. 5s).")
@opt("--log-every", default="30s", show_default=True, help="Period of the one-line summary log.")
@opt("--shutdown-deadline", default="60s", show_default=True,
     help="On SIGTERM/SIGINT: flush, commit and exit within this long.")
@opt("--metadata-max-age", default="60s", show_default=True,
     help="How often topic metadata is refreshed (new topics matching --topics join).")
@opt("--watermark-interval", default="30s", show_default=True,
     help="Rewrite every assigned partition's watermark at least this often (a quiet "
          "partition must not hold `build --ready` back).")
@shards_option
@config_option
@handle_errors
def ingest(**flags: Any) -> None:
    """Run one member of the ingest consumer group until SIGTERM/SIGINT."""
    from tailor.config import FlushPolicy, IngestConfig, parse_bytes, parse_duration
    from tailor.ingest.service import run

    topics = flags["topics"]
    is_list = all(c.isalnum() or c in "-_.," for c in topics) and not topics.endswith(".*")
    cfg = IngestConfig(
        brokers=flags["brokers"],
        topics=topic_list(topics) if is_list else None,
        topic_pattern=None if is_list else topics,
        group=flags["group"],
        raw=store(flags, "raw"),
        flush=FlushPolicy(
            max_age_s=parse_duration(flags["flush_age"], what="--flush-age"),
            max_payloads=flags["flush_payloads"],
            max_bytes=parse_bytes(flags["flush_bytes"], what="--flush-bytes"),
        ),
        memory_limit=parse_bytes(flags["memory_limit"], what="--memory-limit"),
        part_size=parse_bytes(flags["part_size"], what="--part-size"),
        upload_concurrency=flags["upload_concurrency"],
        metrics_host=flags["metrics_host"],
        metrics_port=flags["metrics_port"],
        shards_file=flags["shards_file"],
        exit_when_idle_s=(parse_duration(flags["exit_when_idle"], what="--exit-when-idle")
                          if flags["exit_when_idle"] else None),
        log_every_s=parse_duration(flags["log_every"], what="--log-every"),
        shutdown_deadline_s=parse_duration(flags["shutdown_deadline"], what="--shutdown-deadline"),
        metadata_max_age_s=parse_duration(flags["metadata_max_age"], what="--metadata-max-age"),
        watermark_interval_s=parse_duration(flags["watermark_interval"],
                                            what="--watermark-interval"),
    )
    sys.exit(run(cfg))


#: The smallest --memory-budget (BuildConfig's bound): tests and toy chunks only.
MIN_MEMORY_BUDGET = 16 * 2**20


def _build_config(flags: dict[str, Any], shards: list[str], windows: list[int]) -> BuildConfig:
    from tailor.config import BuildConfig, parse_bytes, parse_duration

    budget = parse_bytes(flags["memory_budget"], what="--memory-budget")
    if budget < MIN_MEMORY_BUDGET:
        raise ConfigError(f"--memory-budget {flags['memory_budget']!r} is below 16MiB",
                          fix="give the build data one worker may hold, at least 16MiB; the "
                              "default 4GiB suits 2 workers on a 24 GiB machine")
    return BuildConfig(
        raw=store(flags, "raw"),
        out=store(flags, "out"),
        shards=shards, windows=windows, window_seconds=window_length(flags["window_length"]),
        scheduler=flags["scheduler"],
        range_bytes=parse_bytes(flags["range_bytes"], what="--range-bytes"),
        memory_budget=budget,
        rows_per_partition=flags["rows_per_partition"],
        shards_file=flags["shards_file"], n_workers=flags["workers"], processes=flags["processes"],
        dashboard=flags["dashboard"],
        ready=flags["ready"], grace_s=parse_duration(flags["grace"], what="--grace"),
    )


@main.command(short_help="Build S files for shards and windows on Dask (the compute half).")
@opt("--raw", required=True, help="Raw store written by `tailor ingest`.")
@opt("--out", required=True, help="Output root for S files: s3://bucket/prefix or a directory.")
@opt("--shard", default=None, help="One shard, e.g. org-mod-7 or org-1989.")
@opt("--all-shards", is_flag=True, default=False, help="Every shard of shards.yaml.")
@opt("--window", default=None, help="One window start, YYYY-MM-DDTHH (UTC).")
@opt("--windows", default=None, help="FROM..TO: every window whose start is in [FROM, TO).")
@opt("--ready", is_flag=True, default=False,
     help="Build every ready chunk not yet built and rebuild stale ones.")
@opt("--grace", default="15m", show_default=True,
     help="With --ready: how far the ingest watermark must be past a window's end.")
@opt("--scheduler", default=None, help="Existing Dask scheduler (tcp://HOST:PORT).")
@opt("--workers", default=None, type=click.IntRange(1),
     help="LocalCluster workers (default 2), one thread each.")
@opt("--processes", is_flag=True, default=False,
     help="LocalCluster workers as separate processes (memory isolated per worker; "
          "slower to start) instead of threads of the build process.")
@opt("--dashboard", is_flag=True, default=False,
     help="Serve the Dask dashboard (and the stage timers on /metrics) of the local "
          "cluster while it builds (with --scheduler, that cluster's own dashboard).")
@s3_option
@opt("--range-bytes", default="32MiB", show_default=True,
     help="Split raw objects into byte ranges of this size, one read task each.")
@opt("--memory-budget", default="4GiB", show_default=True,
     help="Build data one worker may hold (decoded points, sort buffers, exchange "
          "pieces); partitions per chunk follow from it.")
@opt("--rows-per-partition", default=None, type=click.IntRange(1),
     help="Advanced: points per partition, instead of what --memory-budget gives.")
@shards_option
@window_length_option
@config_option
@handle_errors
def build(**flags: Any) -> None:
    """Build (or rebuild) chunks; exit 0 only when every requested chunk published."""
    from tailor.compute.build_cli import run
    from tailor.format.layout import parse_window, parse_windows
    from tailor.shards import load

    shard_map = load(flags["shards_file"])
    if flags["shard"] and flags["all_shards"]:
        raise ConfigError("--shard and --all-shards exclude each other", fix="pass one")
    if flags["shard"]:
        shards = [shard_map.check_shard(flags["shard"])]
    elif flags["all_shards"]:
        shards = shard_map.all_shards()
    else:
        raise ConfigError("no shard given", fix="pass --shard SHARD or --all-shards")
    length = window_length(flags["window_length"])
    if flags["ready"]:
        if flags["window"] or flags["windows"]:
            raise ConfigError("--ready picks windows itself",
                              fix="drop --window/--windows, or drop --ready")
        windows: list[int] = []
    elif flags["window"] and flags["windows"]:
        raise ConfigError("--window and --windows exclude each other", fix="pass one")
    elif flags["window"]:
        windows = [parse_window(flags["window"], length)]
    elif flags["windows"]:
        windows = parse_windows(flags["windows"], length)
    else:
        raise ConfigError("no window given",
                          fix="pass --window YYYY-MM-DDTHH, --windows FROM..TO or --ready")
    code = run(_build_config(flags, shards, windows))
    exit_fast()  # every output published or failed and said so; the cluster is closed
    sys.exit(code)
