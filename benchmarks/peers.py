"""The peers: the same per-shard/window sorted, deduplicated output from decoded points.

Input: one Parquet file of raw points (``org_id, metric_id, context_key, ts,
value, intake_ns, idx``; ``idx`` is the point's index within its payload),
decoded once by the harness.  Output: ``{out}/shard=N/win=T/*.parquet`` with
the five S-file columns, rows sorted by (org_id, metric_id, context_key, ts)
and unique on that key; the winner of duplicate points is the row with the
largest ``(intake_ns, idx)``.  Shards are the shared ``org_id % n_shards``.

Each engine is written in the fastest idiomatic form we found for it (see
:data:`PITFALLS` for what the obvious forms get wrong) and runs on
``threads`` threads.  The harness runs every engine as a whole process,
``python -m benchmarks.peers ENGINE --points P --out DIR --json J``, and times
it from exec to exit (interpreter, imports and session start included, as for
``tailor build``); the process writes the seconds it spent after its imports
and session start to ``J`` so that the start-up share can be shown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any

RAW_COLUMNS = ("org_id", "metric_id", "context_key", "ts", "value", "intake_ns", "idx")
KEY = "org_id, metric_id, context_key, ts"
ENGINES = ("duckdb", "polars", "chdb", "datafusion", "spark")

#: How each engine is written here, and what a first attempt gets wrong.  Rendered
#: into RESULTS.md; every claim is checked by the bit-for-bit compare of every run.
PITFALLS: dict[str, str] = {
    "duckdb": (
        "`GROUP BY` key with `arg_max(value, (intake_ns::HUGEINT << 32) + idx)` into a "
        "sorted temp table, then one ordered `COPY` per chunk.  Pitfalls: the obvious "
        "`arg_max(value, {'i': intake_ns, 'x': idx})` (a struct as the ordering key) "
        "rewrites a NaN's payload to the canonical NaN 0x7ff8000000000000, so the output "
        "is not bit for bit the input; a scalar HUGEINT key keeps the bits (and "
        "`QUALIFY row_number()` does too, slower in our runs).  A partitioned `COPY ... "
        "(PARTITION_BY (shard, win))` does not keep the `ORDER BY` within files."),
    "polars": (
        "Lazy `group_by(key).agg(value.sort_by([intake_ns, idx]).last())`, `sort(key)`, "
        "then `partition_by(shard, win)` and one `write_parquet` per chunk; "
        "`POLARS_MAX_THREADS` set before the import (it is read once, at import).  "
        "Pitfall: `sort([key, intake_ns, idx]).unique(keep='last', maintain_order=True)` "
        "is correct but slower in our runs."),
    "chdb": (
        "ClickHouse in-process (chDB): `ORDER BY shard, win, key, intake_ns DESC, idx DESC "
        "LIMIT 1 BY key` streamed into `INSERT INTO FUNCTION file(...) PARTITION BY` (one "
        "sorted Parquet file per chunk), `max_threads = 2`.  Pitfalls: `argMax(value, "
        "(intake_ns, idx))` with `GROUP BY` then `ORDER BY` took about twice the CPU time of the "
        "sort + `LIMIT 1 BY`; `file()` with `{_partition_id}` takes the partition "
        "expression as a string, so the directory names are built in SQL; the Parquet "
        "writer keeps UInt32/UInt64 as unsigned; `max_bytes_before_external_sort` "
        "is set to 6 GiB so that a sort of 100M points may spill to disk (ClickHouse's "
        "default keeps the whole sort in memory)."),
    "datafusion": (
        "Apache DataFusion: `GROUP BY` key with `first_value(value ORDER BY intake_ns DESC, "
        "idx DESC)`, `ORDER BY shard, win, key`, one `write_parquet` with "
        "`DataFrameWriteOptions(partition_by=[shard, win])`; `target_partitions = 2`.  "
        "Pitfalls: the `row_number()` window form is correct but slower; the partitioned "
        "writer names its files at random, so a chunk that spilled into several files "
        "(more than `soft_max_rows_per_output_file` rows) would be read back out of order "
        "(the check would fail it)."),
    "spark": (
        "PySpark, `local[2]`: `groupBy(key).agg(max_by(value, struct(intake_ns, idx)))`, "
        "`repartition(shard, win).sortWithinPartitions(key)`, `write.partitionBy(shard, "
        "win)` (one file per chunk); the JVM start (several seconds) is part of the whole "
        "process.  Pitfalls: Spark's Parquet writer stores every NaN as the canonical NaN "
        "(a plain `spark.read.parquet(x).write.parquet(y)` copy of the input already "
        "changes the NaN payloads; reading keeps them), so no PySpark form passes the "
        "bit-for-bit check and its time never counts (shown, labelled); `row_number()` "
        "over a window is slower than `max_by`; Spark reads uint64 Parquet columns as "
        "decimal(20,0) (the check casts them back)."),
}


@dataclass(frozen=True, slots=True)
class Job:
    points: str  # Parquet file of raw points
    out: str  # output directory (replaced)
    n_shards: int = 64
    window_seconds: int = 4 * 3600
    threads: int = 2


def _fresh(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.dirname(path.rstrip("/")) or ".", exist_ok=True)


def _sql_str(path: str) -> str:
    return path.replace("'", "''")


# -- DuckDB -------------------------------------------------------------------------


def duckdb_connect(threads: int | None = None) -> Any:
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def run_duckdb(job: Job, con: Any) -> None:
    _fresh(job.out)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dedup AS
        SELECT org_id % {job.n_shards} AS shard,
               ts - ts % {job.window_seconds} AS win,
               org_id, metric_id, context_key, ts,
               arg_max(value, (intake_ns::HUGEINT << 32) + idx) AS value
        FROM read_parquet('{_sql_str(job.points)}')
        GROUP BY org_id, metric_id, context_key, ts
        ORDER BY shard, win, org_id, metric_id, context_key, ts
    """)
    chunks = con.execute("SELECT DISTINCT shard, win FROM dedup ORDER BY 1, 2").fetchall()
    for shard, win in chunks:
        d = os.path.join(job.out, f"shard={shard}", f"win={win}")
        os.makedirs(d, exist_ok=True)
        con.execute(f"""
            COPY (SELECT {KEY}, value FROM dedup
                  WHERE shard = {int(shard)} AND win = {int(win)} ORDER BY {KEY})
            TO '{_sql_str(os.path.join(d, "part-0.parquet"))}' (FORMAT parquet)
        """)
    con.execute("DROP TABLE dedup")


# -- Polars ---------------------------------------------------------------------------


def run_polars(job: Job) -> None:
    import polars as pl

    _fresh(job.out)
    key = ["org_id", "metric_id", "context_key", "ts"]
    df = (
        pl.scan_parquet(job.points)
        .group_by(key)
        .agg(pl.col("value").sort_by(["intake_ns", "idx"]).last())
        .sort(key)
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


# -- ClickHouse in-process (chDB) -------------------------------------------------------


#: chDB spills its sort to disk past this many bytes (what a user sorting 100M
#: rows in 24 GiB would set; below it, as at 10M points, nothing changes).
EXTERNAL_SORT_BYTES = 6 * 2**30


def run_chdb(job: Job, session: Any = None) -> None:
    from chdb import session as chs

    _fresh(job.out)
    os.makedirs(job.out, exist_ok=True)
    s = session or chs.Session()
    shard = f"org_id % {job.n_shards}"
    win = f"ts - ts % {job.window_seconds}"
    dst = _sql_str(os.path.join(job.out, "shard={_partition_id}", "part-0.parquet"))
    s.query(f"""
        INSERT INTO FUNCTION file('{dst}', 'Parquet')
        PARTITION BY concat(toString({shard}), '/win=', toString({win}))
        SELECT {KEY}, value
        FROM file('{_sql_str(job.points)}', 'Parquet')
        ORDER BY {shard}, {win}, {KEY}, intake_ns DESC, idx DESC
        LIMIT 1 BY {KEY}
        SETTINGS max_threads = {int(job.threads)},
                 max_bytes_before_external_sort = {EXTERNAL_SORT_BYTES}
    """)
    if session is None:
        s.close()


# -- Apache DataFusion ------------------------------------------------------------------


def datafusion_context(threads: int) -> Any:
    from datafusion import SessionConfig, SessionContext

    return SessionContext(SessionConfig().with_target_partitions(threads))


def run_datafusion(job: Job, ctx: Any) -> None:
    from datafusion import DataFrameWriteOptions

    _fresh(job.out)
    table = f"points_{abs(hash(job.points)) % 10**8}"
    ctx.register_parquet(table, job.points)
    try:
        df = ctx.sql(f"""
            SELECT org_id % {job.n_shards} AS shard, ts - ts % {job.window_seconds} AS win,
                   {KEY}, value
            FROM (SELECT {KEY}, first_value(value ORDER BY intake_ns DESC, idx DESC) AS value
                  FROM {table} GROUP BY {KEY})
            ORDER BY shard, win, {KEY}
        """)
        df.write_parquet(job.out, write_options=DataFrameWriteOptions(
            partition_by=["shard", "win"]))
    finally:
        ctx.deregister_table(table)


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


def spark_session(cores: int) -> Any:
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("tailor-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "6g")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", str(max(2, cores * 4)))
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def run_spark(job: Job, spark: Any) -> None:
    from pyspark.sql import functions as F

    _fresh(job.out)
    key = ["org_id", "metric_id", "context_key", "ts"]
    df = spark.read.parquet(job.points)
    rows = (df.groupBy(*key)
            .agg(F.max_by("value", F.struct("intake_ns", "idx")).alias("value"))
            .withColumn("shard", F.col("org_id") % job.n_shards)
            .withColumn("win", F.col("ts") - F.col("ts") % job.window_seconds))
    (rows.repartition("shard", "win")
     .sortWithinPartitions("shard", "win", *key)
     .write.partitionBy("shard", "win").parquet(job.out))


# -- one engine as a whole process ------------------------------------------------------


def missing(engine: str) -> str | None:
    """Why ``engine`` cannot run here, or None."""
    if engine == "spark":
        return spark_missing()
    module = {"datafusion": "datafusion", "chdb": "chdb"}.get(engine, engine)
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed (pip install '.[bench]')"
    return None


def run_engine(engine: str, job: Job) -> float:
    """Start ``engine``, run ``job``, stop; seconds spent after the start-up."""
    if engine == "polars":
        os.environ["POLARS_MAX_THREADS"] = str(job.threads)  # read once, at import
        import polars  # noqa: F401

        t0 = time.perf_counter()
        run_polars(job)
        return time.perf_counter() - t0
    if engine == "duckdb":
        con = duckdb_connect(job.threads)
        try:
            t0 = time.perf_counter()
            run_duckdb(job, con)
            return time.perf_counter() - t0
        finally:
            con.close()
    if engine == "chdb":
        from chdb import session as chs

        s = chs.Session()
        try:
            t0 = time.perf_counter()
            run_chdb(job, s)
            return time.perf_counter() - t0
        finally:
            s.close()
    if engine == "datafusion":
        ctx = datafusion_context(job.threads)
        t0 = time.perf_counter()
        run_datafusion(job, ctx)
        return time.perf_counter() - t0
    if engine == "spark":
        spark = spark_session(job.threads)
        spark.sparkContext.setLogLevel("ERROR")
        try:
            t0 = time.perf_counter()
            run_spark(job, spark)
            return time.perf_counter() - t0
        finally:
            spark.stop()
    raise ValueError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.peers",
                                 description="One peer engine as a whole process.")
    ap.add_argument("engine", choices=ENGINES)
    ap.add_argument("--points", required=True, help="decoded raw points (Parquet)")
    ap.add_argument("--out", required=True, help="output directory (replaced)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write {'seconds': after start-up} here")
    a = ap.parse_args(argv)
    secs = run_engine(a.engine, Job(a.points, a.out, threads=a.threads))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"seconds": secs}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
