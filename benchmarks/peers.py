"""The peers: the same per-shard/window sorted, deduplicated output from decoded points.

Input: one Parquet file of raw points (``org_id, metric_id, context_key, ts,
value, intake_ns, idx``; ``idx`` is the point's index within its payload),
decoded once by the harness.  Output: ``{out}/shard=N/win=T/*.parquet`` with
the five S-file columns, rows sorted by (org_id, metric_id, context_key, ts)
and unique on that key; the winner of duplicate points is the row with the
largest ``(intake_ns, idx)``.  Shards are the shared ``org_id % n_shards``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RAW_COLUMNS = ("org_id", "metric_id", "context_key", "ts", "value", "intake_ns", "idx")


@dataclass(frozen=True, slots=True)
class Job:
    points: str  # Parquet file of raw points
    out: str  # output directory (replaced)
    n_shards: int = 64
    window_seconds: int = 4 * 3600


def _fresh(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.dirname(path.rstrip("/")) or ".", exist_ok=True)


# -- DuckDB -------------------------------------------------------------------------


def duckdb_connect(threads: int | None = None) -> Any:
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def run_duckdb(job: Job, con: Any) -> None:
    """Dedup with arg_max over (intake_ns, idx) into a sorted temp table, then one
    ordered COPY per chunk (a partitioned COPY does not keep the ORDER BY within files)."""
    _fresh(job.out)
    src = job.points.replace("'", "''")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dedup AS
        SELECT org_id % {job.n_shards} AS shard,
               ts - ts % {job.window_seconds} AS win,
               org_id, metric_id, context_key, ts,
               arg_max(value, {{'i': intake_ns, 'x': idx}}) AS value
        FROM read_parquet('{src}')
        GROUP BY org_id, metric_id, context_key, ts
        ORDER BY shard, win, org_id, metric_id, context_key, ts
    """)
    chunks = con.execute("SELECT DISTINCT shard, win FROM dedup ORDER BY 1, 2").fetchall()
    for shard, win in chunks:
        d = os.path.join(job.out, f"shard={shard}", f"win={win}")
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, "part-0.parquet").replace("'", "''")
        con.execute(f"""
            COPY (SELECT org_id, metric_id, context_key, ts, value FROM dedup
                  WHERE shard = {int(shard)} AND win = {int(win)}
                  ORDER BY org_id, metric_id, context_key, ts)
            TO '{dst}' (FORMAT parquet)
        """)
    con.execute("DROP TABLE dedup")


# -- Polars ---------------------------------------------------------------------------


def run_polars(job: Job) -> None:
    """Sort by key then (intake_ns, idx), keep the last row per key, write per partition."""
    import polars as pl

    _fresh(job.out)
    key = ["org_id", "metric_id", "context_key", "ts"]
    df = (
        pl.scan_parquet(job.points)
        .sort([*key, "intake_ns", "idx"])
        .unique(subset=key, keep="last", maintain_order=True)
        .select(
            (pl.col("org_id") % job.n_shards).alias("shard"),
            (pl.col("ts") - pl.col("ts") % job.window_seconds).alias("win"),
            *key, "value",
        )
        .collect()
    )
    for (shard, win), part in df.partition_by(["shard", "win"], as_dict=True,
                                               maintain_order=True).items():
        d = os.path.join(job.out, f"shard={shard}", f"win={win}")
        os.makedirs(d, exist_ok=True)
        part.drop(["shard", "win"]).write_parquet(os.path.join(d, "part-0.parquet"))


# -- PySpark --------------------------------------------------------------------------


def spark_missing() -> str | None:
    """Why PySpark cannot run here, or None."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (java not on PATH, JAVA_HOME unset)"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install '.[bench]')"
    return None


def spark_session(cores: int | None = None) -> Any:
    """A local session on every core (``local[*]``) unless ``cores`` is given."""
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(f"local[{cores or '*'}]")
        .appName("tailor-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "6g")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", str(max(2, (cores or os.cpu_count() or 2) * 4)))
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def run_spark(job: Job, spark: Any) -> None:
    """The original design: groupBy series, collect_list + sort_array, dedup, explode."""
    from pyspark.sql import functions as F

    _fresh(job.out)
    df = spark.read.parquet(job.points)
    df = df.withColumn("shard", F.col("org_id") % job.n_shards).withColumn(
        "win", F.col("ts") - F.col("ts") % job.window_seconds)
    series = df.groupBy("shard", "win", "org_id", "metric_id", "context_key").agg(
        F.sort_array(F.collect_list(F.struct("ts", "intake_ns", "idx", "value"))).alias("pts"))
    # sorted by (ts, intake_ns, idx): the last element of each ts run wins
    series = series.withColumn(
        "pts", F.expr("filter(pts, (p, i) -> i = size(pts) - 1 OR pts[i + 1].ts != p.ts)"))
    rows = series.select("shard", "win", "org_id", "metric_id", "context_key",
                         F.explode("pts").alias("p")).select(
        "shard", "win", "org_id", "metric_id", "context_key",
        F.col("p.ts").alias("ts"), F.col("p.value").alias("value"))
    (rows.repartition("shard", "win")
     .sortWithinPartitions("shard", "win", "org_id", "metric_id", "context_key", "ts")
     .write.partitionBy("shard", "win").parquet(job.out))


PeerFn = Callable[[Job], None]
