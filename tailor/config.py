"""Typed, frozen configuration, built once at the CLI and passed down.

Precedence (highest first): command-line flag, ``TAILOR_<FLAG>`` environment
variable, ``--config FILE`` (YAML with the flags' names as keys), default.
Nothing below the CLI reads the environment; S3 credentials are the one
exception by design: botocore reads the standard ``AWS_*`` variables itself,
so secrets never pass through Tailor's config, logs or metrics.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tailor.errors import ConfigError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "k": 2**10, "m": 2**20, "g": 2**30}
_DURATIONS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
              "d": 86400.0}
_NUM_UNIT = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*\Z")


def parse_bytes(text: str | int, *, what: str = "size") -> int:
    """``"256MiB"`` → 268435456.  Plain numbers are bytes."""
    if isinstance(text, int):
        return text
    m = _NUM_UNIT.match(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ConfigError(f"{what} {text!r} is not a size",
                          fix="write a number with an optional unit: 1048576, 5MiB, 1GiB, 500MB")
    return int(float(m.group(1)) * _UNITS[unit])


def parse_duration(text: str | float, *, what: str = "duration") -> float:
    """``"10m"`` → 600.0 seconds.  Plain numbers are seconds."""
    if isinstance(text, int | float):
        return float(text)
    m = _NUM_UNIT.match(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _DURATIONS:
        raise ConfigError(f"{what} {text!r} is not a duration",
                          fix="write a number with an optional unit: 30s, 10m, 1h, 7d, 250ms")
    return float(m.group(1)) * _DURATIONS[unit]


class Frozen(BaseModel):
    """Every config: immutable once built, and an unknown field is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ShardsFileConfig(Frozen):
    """A command that routes orgs to shards: ``shards_file`` (None: 64 shared shards)."""

    shards_file: str | None = None


class WindowedConfig(ShardsFileConfig):
    """A command over chunks: the shard map and the window length in seconds."""

    window_seconds: Annotated[int, Field(gt=0)] = 4 * 3600


class StoreConfig(Frozen):
    """An object store root: ``s3://bucket/prefix`` or a local directory."""

    url: str
    s3_endpoint_url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v:
            raise ValueError("empty storage URL: give s3://bucket/prefix or a directory")
        if "://" in v and not v.startswith(("s3://", "file://", "memory://")):
            raise ValueError(f"unsupported storage URL {v!r}: use s3://bucket/prefix or a path")
        return v.rstrip("/") if v not in ("/",) else v


class FlushPolicy(Frozen):
    """When a shard's batch is flushed: whichever limit is hit first."""

    max_age_s: Annotated[float, Field(gt=0)] = 600.0
    max_payloads: Annotated[int, Field(ge=1)] = 100_000
    max_bytes: Annotated[int, Field(ge=1)] = 256 * 2**20


class IngestConfig(ShardsFileConfig):
    brokers: str
    topics: list[str] | None = None  # explicit list ...
    topic_pattern: str | None = None  # ... or a regex
    group: str = "tailor-ingest"
    raw: StoreConfig
    flush: FlushPolicy = FlushPolicy()
    memory_limit: Annotated[int, Field(ge=1 << 20)] = 2**30
    part_size: Annotated[int, Field(ge=5 * 2**20)] = 5 * 2**20
    upload_concurrency: Annotated[int, Field(ge=1)] = 8
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    shutdown_deadline_s: Annotated[float, Field(gt=0)] = 60.0
    metadata_max_age_s: Annotated[float, Field(gt=0)] = 60.0  # topic-pattern refresh period
    log_every_s: Annotated[float, Field(gt=0)] = 30.0
    exit_when_idle_s: Annotated[float, Field(gt=0)] | None = None
    # Every assigned partition's watermark is rewritten at least this often, so
    # a quiet partition does not hold `build --ready` back (ingest/watermarks.py).
    watermark_interval_s: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("topic_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"--topics {v!r} is not a valid regex: {exc}") from None
        return v


#: Default ``--memory-budget``: per worker; two workers take 9 GiB of a 24 GiB, 2-core
#: machine with the interpreter (compute/budget.py), leaving room for the rest.
DEFAULT_MEMORY_BUDGET = 4 * 2**30


class BuildConfig(WindowedConfig):
    """``tailor build``.

    ``memory_budget``: bytes of build data one worker may hold (decoded points,
    sort buffers, exchange pieces); the number of partitions follows from it
    (compute/budget.py).  ``rows_per_partition``: an advanced override of the
    points per partition the budget gives.
    """

    raw: StoreConfig
    out: StoreConfig
    shards: list[str]
    windows: list[int]
    scheduler: str | None = None
    range_bytes: Annotated[int, Field(ge=4096)] = 32 * 2**20
    memory_budget: Annotated[int, Field(ge=16 * 2**20)] = DEFAULT_MEMORY_BUDGET
    rows_per_partition: Annotated[int, Field(ge=1)] | None = None
    n_workers: int | None = None
    #: Local cluster only: worker processes instead of threads of the build process.
    processes: bool = False
    #: Local cluster only: serve the Dask dashboard (and /metrics) while it builds.
    dashboard: bool = False
    ready: bool = False
    grace_s: Annotated[float, Field(ge=0)] = 900.0


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a flat ``{flag_name: value}`` mapping.

    Keys are flag names with ``-`` or ``_`` (``flush-age`` / ``flush_age``).
    """
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror}",
                          fix="pass --config PATH to an existing YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}",
                          fix="fix the YAML syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {str(p)!r} must be a mapping of flag names to values",
                          fix="write e.g. 'brokers: 127.0.0.1:9092'")
    return {str(k).replace("-", "_"): v for k, v in doc.items()}


class ProduceConfig(WindowedConfig):
    brokers: str
    topics: list[str]
    partitions: Annotated[int, Field(ge=1)] = 4
    points: Annotated[int, Field(ge=1)]
    seed: int = 0
    rate: Annotated[float, Field(gt=0)] | None = None  # payloads/s; None = as fast as possible
    invalid_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    expected: str | None = None  # directory for the expected outcome
    orgs: Annotated[int, Field(ge=1)] = 300
    start: int = 1767225600  # 2026-01-01T00:00:00Z
    hours: Annotated[float, Field(gt=0)] = 8.0


class ReadConfig(WindowedConfig):
    out: StoreConfig
    org: int
    metric: int
    context: int | None = None
    ts_from: int | None = None
    ts_to: int | None = None


class StatusConfig(WindowedConfig):
    raw: StoreConfig
    out: StoreConfig
    shard: str | None = None
    grace_s: Annotated[float, Field(ge=0)] = 900.0


class GcConfig(Frozen):
    """``tailor gc``: leftovers of crashes and races (ops/gc.py)."""

    raw: StoreConfig | None = None
    out: StoreConfig | None = None
    older_than_s: Annotated[float, Field(ge=3600)] = 7 * 86400.0
    delete: bool = False


class DiffConfig(Frozen):
    a: StoreConfig
    b: StoreConfig
    shard: str | None = None
    windows: list[int] | None = None
    examples: Annotated[int, Field(ge=0)] = 5


class ShardsReportConfig(WindowedConfig):
    """``tailor shards report``: chunk sizes from the index (ops/balance.py).

    ``windows``: the window starts to look at (``--from``/``--to``, resolved).
    """

    raw: StoreConfig
    windows: list[int]
    top: Annotated[int, Field(ge=0)] = 3
    metrics_file: str | None = None


class ShardsPlanConfig(ShardsReportConfig):
    """``tailor shards plan``: the next shards.yaml from observed volume (ops/balance.py).

    ``since``: the cutover asked for (None: the next window boundary after now
    and after everything observed and built).  ``output_root``: the S files,
    to check ``since`` against what is built.
    """

    target_chunk_points: Annotated[int, Field(ge=1)]
    max_moves: Annotated[int, Field(ge=0)] | None = None
    out_file: str
    since: int | None = None
    output_root: StoreConfig | None = None
    shared_shards: Annotated[int, Field(ge=1)] | None = None
    for_new_store: bool = False
    return_below: Annotated[float, Field(gt=0, lt=1)] = 0.5
