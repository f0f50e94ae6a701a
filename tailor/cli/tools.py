"""``tailor produce`` and ``tailor demo``: a synthetic stream, and the whole pipeline.

The demo runs on services it starts itself (:mod:`tailor.testing`); its phases
are :mod:`tailor.cli.demo`.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from tailor.cli.app import main
from tailor.cli.options import (
    config_option,
    handle_errors,
    opt,
    shards_option,
    topic_list,
    window_length,
    window_length_option,
)


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
def produce(**flags: Any) -> None:
    """Produce a reproducible synthetic intake stream (see README)."""
    from tailor.config import ProduceConfig
    from tailor.format.layout import parse_stamp
    from tailor.testing.produce import run

    cfg = ProduceConfig(
        brokers=flags["brokers"], topics=topic_list(flags["topics"]),
        partitions=flags["partitions"], points=flags["points"], seed=flags["seed"],
        rate=flags["rate"], invalid_rate=flags["invalid_rate"], expected=flags["expected"],
        orgs=flags["orgs"], start=parse_stamp(flags["start"], what="--start"),
        hours=flags["hours"], shards_file=flags["shards_file"],
        window_seconds=window_length(flags["window_length"]),
    )
    click.echo(run(cfg).summary())


@main.command(short_help="Run the whole pipeline end to end on services it starts itself.")
@opt("--points", default=200_000, show_default=True, type=click.IntRange(1),
     help="Points to produce.")
@opt("--workdir", default=None, type=click.Path(file_okay=False),
     help="Where the store and S files go (default: a new temporary directory).")
@opt("--s3", is_flag=True, default=False, help="Use a moto S3 server instead of a directory.")
@handle_errors
def demo(points: int, workdir: str | None, s3: bool) -> None:
    """Broker + store + Dask cluster → produce → ingest → build → verify → summary."""
    from tailor.cli.demo import run

    sys.exit(run(points=points, workdir=workdir, use_s3=s3))
