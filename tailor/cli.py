"""The ``tailor`` command line: flags → one frozen config → the stage's ``run``.

Every flag also reads ``TAILOR_<FLAG>`` and may come from ``--config FILE``;
flags win over the environment, which wins over the file.  Exit codes: 0 clean
stop, 2 bad usage or config, 1 fatal error (reason on stderr).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tailor import __version__
from tailor.errors import ConfigError, TailorError

if TYPE_CHECKING:
    from tailor.config import BuildConfig

# Each command imports what it runs (tailor.config and pydantic included), so that
# `tailor --help` and every command load only their own modules.

F = TypeVar("F", bound=Callable[..., Any])


def opt(*decls: str, **kw: Any) -> Callable[[F], F]:
    """A click option that also reads ``TAILOR_<FLAG>`` (e.g. TAILOR_BROKERS)."""
    flag = next(d for d in decls if d.startswith("--"))
    kw.setdefault("envvar", "TAILOR_" + flag[2:].replace("-", "_").upper())
    kw.setdefault("show_envvar", True)
    return click.option(*decls, **kw)


def _key(p: click.Parameter) -> str:
    env = p.envvar if isinstance(p.envvar, str) else None
    if env and env.startswith("TAILOR_"):
        return env[len("TAILOR_"):].lower()
    return (p.opts[0].lstrip("-") if p.opts else str(p.name)).replace("-", "_")


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        from tailor.config import load_config_file

        try:
            values = load_config_file(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
        # A key names a flag as its TAILOR_* variable does (flush-age, shards, from; a flag
        # stored under another name, --shards → shards_file, is found through that).
        dest = {_key(p): p.name for p in ctx.command.params if p.name}
        ctx.default_map = {**(ctx.default_map or {}),
                           **{dest.get(k, k): v for k, v in values.items()}}
    return value


config_option = opt("--config", type=click.Path(dir_okay=False), is_eager=True,
                    expose_value=False, callback=_load_config,
                    help="YAML file of flag values (flags and TAILOR_* win).")
s3_option = opt("--s3-endpoint-url", default=None,
                help="S3 endpoint (e.g. a moto server); credentials come from AWS_*.")
shards_option = opt("--shards", "shards_file", default=None, type=click.Path(dir_okay=False),
                    help="shards.yaml (default: 64 shared shards, no dedicated orgs).")


def _windows_length(value: str) -> int:
    from tailor.config import parse_duration

    return int(parse_duration(value, what="--window-length"))


window_length_option = opt("--window-length", default="4h", show_default=True,
                           help="Chunk length; windows are aligned to the Unix epoch.")


def handle_errors(fn: F) -> F:
    """Map Tailor errors to exit codes: ConfigError → 2, TailorError → 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"tailor: error: {exc}", err=True)
            sys.exit(2)
        except TailorError as exc:
            click.echo(f"tailor: fatal: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:
            from pydantic import ValidationError

            if not isinstance(exc, ValidationError):
                raise
            click.echo(f"tailor: error: invalid configuration:\n{exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tailor")
def main() -> None:
    """Tailor: Kafka metric points → sorted, compressed S files on object storage."""


def _topics(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


@main.command(short_help="Write a realistic synthetic point stream to Kafka.")
@opt("--brokers", required=True, help="Kafka bootstrap HOST:PORT.")
@opt("--topics", required=True, help="Comma list of topics to spread payloads over.")
@opt("--partitions", default=4, show_default=True, type=click.IntRange(1),
     help="Partitions per topic when a topic has to be created.")
@opt("--points", required=True, type=click.IntRange(1), help="Points to produce.")
@opt("--seed", default=0, show_default=True, type=int, help="Random seed (reproducible).")
@opt("--rate", default=None, type=click.FloatRange(min=0, min_open=True),
     help="Payloads per second (default: as fast as possible).")
@opt("--invalid-rate", default=0.01, show_default=True, type=click.FloatRange(0, 1),
     help="Share of invalid payloads, of every kind.")
@opt("--expected", default=None, type=click.Path(file_okay=False),
     help="Write the expected outcome (points per series and window) here.")
@opt("--orgs", default=300, show_default=True, type=click.IntRange(1), help="Orgs to simulate.")
@opt("--start", default="2026-01-01T00", show_default=True,
     help="UTC hour (YYYY-MM-DDTHH) of the first point.")
@opt("--hours", default=8.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
     help="Hours of point time to cover.")
@shards_option
@window_length_option
@config_option
@handle_errors
def produce(**kw: Any) -> None:
    """Produce a reproducible synthetic intake stream (see README)."""
    from tailor.config import ProduceConfig
    from tailor.format.layout import parse_stamp
    from tailor.testing.produce import run

    cfg = ProduceConfig(
        brokers=kw["brokers"], topics=_topics(kw["topics"]), partitions=kw["partitions"],
        points=kw["points"], seed=kw["seed"], rate=kw["rate"], invalid_rate=kw["invalid_rate"],
        expected=kw["expected"], orgs=kw["orgs"], start=parse_stamp(kw["start"], what="--start"),
        hours=kw["hours"], shards_file=kw["shards_file"],
        window_seconds=_windows_length(kw["window_length"]),
    )
    click.echo(run(cfg).summary())


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
def ingest(**kw: Any) -> None:
    """Run one member of the ingest consumer group until SIGTERM/SIGINT."""
    from tailor.config import FlushPolicy, IngestConfig, StoreConfig, parse_bytes, parse_duration
    from tailor.ingest.service import run

    topics = kw["topics"]
    is_list = all(c.isalnum() or c in "-_.," for c in topics) and not topics.endswith(".*")
    cfg = IngestConfig(
        brokers=kw["brokers"],
        topics=_topics(topics) if is_list else None,
        topic_pattern=None if is_list else topics,
        group=kw["group"],
        raw=StoreConfig(url=kw["raw"], s3_endpoint_url=kw["s3_endpoint_url"]),
        flush=FlushPolicy(
            max_age_s=parse_duration(kw["flush_age"], what="--flush-age"),
            max_payloads=kw["flush_payloads"],
            max_bytes=parse_bytes(kw["flush_bytes"], what="--flush-bytes"),
        ),
        memory_limit=parse_bytes(kw["memory_limit"], what="--memory-limit"),
        part_size=parse_bytes(kw["part_size"], what="--part-size"),
        upload_concurrency=kw["upload_concurrency"],
        metrics_host=kw["metrics_host"],
        metrics_port=kw["metrics_port"],
        shards_file=kw["shards_file"],
        exit_when_idle_s=(parse_duration(kw["exit_when_idle"], what="--exit-when-idle")
                          if kw["exit_when_idle"] else None),
        log_every_s=parse_duration(kw["log_every"], what="--log-every"),
        shutdown_deadline_s=parse_duration(kw["shutdown_deadline"], what="--shutdown-deadline"),
        metadata_max_age_s=parse_duration(kw["metadata_max_age"], what="--metadata-max-age"),
        watermark_interval_s=parse_duration(kw["watermark_interval"],
                                            what="--watermark-interval"),
    )
    sys.exit(run(cfg))


#: The smallest --memory-budget (BuildConfig's bound): tests and toy chunks only.
MIN_MEMORY_BUDGET = 16 * 2**20


def _build_config(kw: dict[str, Any], shards: list[str], windows: list[int]) -> BuildConfig:
    from tailor.config import BuildConfig, StoreConfig, parse_bytes, parse_duration

    budget = parse_bytes(kw["memory_budget"], what="--memory-budget")
    if budget < MIN_MEMORY_BUDGET:
        raise ConfigError(f"--memory-budget {kw['memory_budget']!r} is below 16MiB",
                          fix="give the build data one worker may hold, at least 16MiB; the "
                              "default 4GiB suits 2 workers on a 24 GiB machine")
    return BuildConfig(
        raw=StoreConfig(url=kw["raw"], s3_endpoint_url=kw["s3_endpoint_url"]),
        out=StoreConfig(url=kw["out"], s3_endpoint_url=kw["s3_endpoint_url"]),
        shards=shards, windows=windows, window_seconds=_windows_length(kw["window_length"]),
        scheduler=kw["scheduler"], range_bytes=parse_bytes(kw["range_bytes"], what="--range-bytes"),
        memory_budget=budget,
        rows_per_partition=kw["rows_per_partition"],
        shards_file=kw["shards_file"], n_workers=kw["workers"], processes=kw["processes"],
        dashboard=kw["dashboard"],
        ready=kw["ready"], grace_s=parse_duration(kw["grace"], what="--grace"),
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
def build(**kw: Any) -> None:
    """Build (or rebuild) chunks; exit 0 only when every requested chunk published."""
    from tailor.compute.build import run
    from tailor.format.layout import parse_window, parse_windows
    from tailor.shards import load

    smap = load(kw["shards_file"])
    if kw["shard"] and kw["all_shards"]:
        raise ConfigError("--shard and --all-shards exclude each other", fix="pass one")
    if kw["shard"]:
        shards = [smap.check_shard(kw["shard"])]
    elif kw["all_shards"]:
        shards = smap.all_shards()
    else:
        raise ConfigError("no shard given", fix="pass --shard SHARD or --all-shards")
    length = _windows_length(kw["window_length"])
    if kw["ready"]:
        if kw["window"] or kw["windows"]:
            raise ConfigError("--ready picks windows itself",
                              fix="drop --window/--windows, or drop --ready")
        windows: list[int] = []
    elif kw["window"] and kw["windows"]:
        raise ConfigError("--window and --windows exclude each other", fix="pass one")
    elif kw["window"]:
        windows = [parse_window(kw["window"], length)]
    elif kw["windows"]:
        windows = parse_windows(kw["windows"], length)
    else:
        raise ConfigError("no window given",
                          fix="pass --window YYYY-MM-DDTHH, --windows FROM..TO or --ready")
    code = run(_build_config(kw, shards, windows))
    global _exit_fast
    _exit_fast = True  # every output published or failed and said so; the cluster is closed
    sys.exit(code)


#: Set by a command once its outputs are durable and reported: :func:`entry` then
#: ends the process at once instead of tearing the interpreter down.
_exit_fast = False


def entry() -> None:
    """The ``tailor`` program: :func:`main`, then after ``tailor build`` a fast exit.

    A build's outputs are published (or its failures reported) and its cluster
    closed when the command returns; what is left, the interpreter's teardown
    (threads of Dask, Arrow and numba, module finalizers), took a fifth of a
    small build's wall time.  So after flushing stdout, stderr and logging it
    ends with ``os._exit`` and the command's exit code (the code ``sys.exit``
    would give: None → 0, an int as is, anything else printed → 1).  Every
    other command, and any exception, takes the normal exit.  Tests call
    :func:`main` (click's runner), which never exits the process.
    """
    try:
        main()
    except SystemExit as exc:
        if not _exit_fast:
            raise
        code = exc.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        logging.shutdown()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # stdout closed (a pipe gone): nothing to save
            pass
        os._exit(code or 0)


def _time_arg(value: str | None, what: str) -> int | None:
    """Unix seconds from an integer or an ISO-8601 UTC time."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a time",
                          fix="write Unix seconds or ISO-8601 such as 2026-01-01T04:00:00Z"
                          ) from None
    return int((t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp())


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
def read(**kw: Any) -> None:
    """Print points of one series, opening only the files the manifests point to."""
    from tailor.compute.reader import run
    from tailor.config import ReadConfig, StoreConfig

    cfg = ReadConfig(
        out=StoreConfig(url=kw["out"], s3_endpoint_url=kw["s3_endpoint_url"]),
        org=kw["org"], metric=kw["metric"], context=kw["context"],
        ts_from=_time_arg(kw["ts_from"], "--from"), ts_to=_time_arg(kw["ts_to"], "--to"),
        shards_file=kw["shards_file"], window_seconds=_windows_length(kw["window_length"]),
    )
    run(cfg, kw["fmt"])


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
def status(**kw: Any) -> None:
    """Chunk readiness and staleness, from the raw index and the manifests."""
    from tailor.compute.status import run
    from tailor.config import StatusConfig, StoreConfig, parse_duration

    cfg = StatusConfig(
        raw=StoreConfig(url=kw["raw"], s3_endpoint_url=kw["s3_endpoint_url"]),
        out=StoreConfig(url=kw["out"], s3_endpoint_url=kw["s3_endpoint_url"]),
        shard=kw["shard"], grace_s=parse_duration(kw["grace"], what="--grace"),
        shards_file=kw["shards_file"], window_seconds=_windows_length(kw["window_length"]),
    )
    run(cfg, as_json=kw["as_json"])


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


def _windows_of(kw: dict[str, Any], length: int) -> list[int]:
    from tailor.compute.balance import resolve_windows

    return resolve_windows(_time_arg(kw["ts_from"], "--from"), _time_arg(kw["ts_to"], "--to"),
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
def report(**kw: Any) -> None:
    """Per shard: chunk points min/median/p99/max and top orgs; per window: the skew."""
    from tailor.compute.balance import run_report
    from tailor.config import ShardsReportConfig, StoreConfig

    length = _windows_length(kw["window_length"])
    cfg = ShardsReportConfig(
        raw=StoreConfig(url=kw["raw"], s3_endpoint_url=kw["s3_endpoint_url"]),
        shards_file=kw["shards_file"], window_seconds=length, windows=_windows_of(kw, length),
        top=kw["top"], metrics_file=kw["metrics_file"])
    run_report(cfg, as_json=kw["as_json"])


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
def plan_(**kw: Any) -> None:
    """Dedicate the fewest orgs so that shared chunks meet the target, return small ones."""
    from tailor.compute.balance import run_plan
    from tailor.config import ShardsPlanConfig, StoreConfig

    length = _windows_length(kw["window_length"])
    ep = kw["s3_endpoint_url"]
    cfg = ShardsPlanConfig(
        raw=StoreConfig(url=kw["raw"], s3_endpoint_url=ep), shards_file=kw["shards_file"],
        window_seconds=length, windows=_windows_of(kw, length),
        target_chunk_points=kw["target_chunk_points"], max_moves=kw["max_moves"],
        out_file=kw["out_file"], since=_time_arg(kw["since"], "--since"),
        output_root=(StoreConfig(url=kw["output_root"], s3_endpoint_url=ep)
                     if kw["output_root"] else None),
        shared_shards=kw["shared_shards"], for_new_store=kw["for_new_store"],
        return_below=kw["return_below"])
    run_plan(cfg, as_json=kw["as_json"])


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
def diff(**kw: Any) -> None:
    """One-to-one comparison of two S-file roots per shard and window."""
    from tailor.compute.diff import run
    from tailor.config import DiffConfig, StoreConfig
    from tailor.format.layout import parse_windows

    cfg = DiffConfig(
        a=StoreConfig(url=kw["a_url"], s3_endpoint_url=kw["s3_endpoint_url"]),
        b=StoreConfig(url=kw["b_url"], s3_endpoint_url=kw["s3_endpoint_url"]),
        shard=kw["shard"],
        windows=(parse_windows(kw["windows"], _windows_length(kw["window_length"]))
                 if kw["windows"] else None),
    )
    sys.exit(run(cfg, as_json=kw["as_json"]))


@main.command(short_help="Find (and with --delete remove) leftovers of crashes and races.")
@opt("--raw", default=None, help="Raw store: unindexed objects, incomplete multipart uploads.")
@opt("--out", default=None, help="Output root: part files no manifest can ever list.")
@opt("--older-than", default="7d", show_default=True,
     help="Only raw objects and uploads older than this (at least 1h).")
@opt("--delete", is_flag=True, default=False, help="Remove them (default: only report).")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@s3_option
@config_option
@handle_errors
def gc(**kw: Any) -> None:
    """Report, or remove with --delete, what no build or reader will ever use."""
    from tailor.compute.gc import run
    from tailor.config import GcConfig, StoreConfig, parse_duration

    if not kw["raw"] and not kw["out"]:
        raise ConfigError("nothing to collect", fix="pass --raw RAW and/or --out OUT")
    older = parse_duration(kw["older_than"], what="--older-than")
    if older < 3600:
        raise ConfigError(f"--older-than {kw['older_than']!r} is under one hour",
                          fix="pass 1h or more: younger objects may be in the middle of a write")
    ep = kw["s3_endpoint_url"]
    cfg = GcConfig(raw=StoreConfig(url=kw["raw"], s3_endpoint_url=ep) if kw["raw"] else None,
                   out=StoreConfig(url=kw["out"], s3_endpoint_url=ep) if kw["out"] else None,
                   older_than_s=older, delete=kw["delete"])
    run(cfg, as_json=kw["as_json"])


@main.command(short_help="Run the whole pipeline end to end on services it starts itself.")
@opt("--points", default=200_000, show_default=True, type=click.IntRange(1),
     help="Points to produce.")
@opt("--workdir", default=None, type=click.Path(file_okay=False),
     help="Where the store and S files go (default: a new temporary directory).")
@opt("--s3", is_flag=True, default=False, help="Use a moto S3 server instead of a directory.")
@handle_errors
def demo(points: int, workdir: str | None, s3: bool) -> None:
    """Broker + store + Dask cluster → produce → ingest → build → verify → summary."""
    from tailor.demo import run

    sys.exit(run(points=points, workdir=workdir, use_s3=s3))


@main.command("compile-kernels",
              short_help="Compile and cache every numba kernel (make does it at install).")
@handle_errors
def compile_kernels() -> None:
    """Load (compiling into numba's cache if absent) every kernel a build and ingest run.

    numba compiles a kernel on its first call in a process whose cache lacks it
    (seconds for all of them); after this, a first `tailor build` or `tailor
    ingest` only loads them.  The cache lives beside the installed sources (or
    in NUMBA_CACHE_DIR).
    """
    import time

    from tailor.compute.warm import warm
    from tailor.format import validate_batch

    t0 = time.monotonic()
    warm()
    validate_batch.warm()
    print(f"tailor compile-kernels: every build and ingest kernel cached "
          f"({time.monotonic() - t0:.1f} s)")
