"""Tailor: Kafka metric points → sorted, compressed, per-series S files."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    import pyarrow as pa


def read_series(out: str, org: int, metric: int, context: int | None = None, *,
                ts_from: int | None = None, ts_to: int | None = None,
                s3_endpoint_url: str | None = None, shards_file: str | None = None,
                window_seconds: int = 4 * 3600) -> pa.Table:
    """Points of one series (or of every series of a metric) as an Arrow table.

    Opens only the part files that the chunk manifests say can hold the series.
    See :func:`tailor.ops.sfile_reader.read_series`.
    """
    from tailor.ops.sfile_reader import read_series as _read

    return _read(out, org, metric, context, ts_from=ts_from, ts_to=ts_to,
                 s3_endpoint_url=s3_endpoint_url, shards_file=shards_file,
                 window_seconds=window_seconds)


__all__ = ["__version__", "read_series"]
