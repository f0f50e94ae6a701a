"""`tailor ingest` when the raw store is missing or fails: it refuses to start
against a store it cannot write, and retries every failed write (counting it)
until the store recovers, with nothing lost and no offset committed early."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path

import boto3

from tailor.config import StoreConfig
from tailor.testing import services

from .helpers import (
    check_complete,
    committed_offsets,
    end_offsets,
    ingest_cmd,
    make_stream,
    new_group,
    produce,
    read_log,
    start,
    wait_exit,
    wait_until,
)

Procs = list[subprocess.Popen[bytes]]



def test_missing_bucket_fails_fast_with_the_fix(broker: services.Broker, topics: list[str],
                                                s3: services.S3Server, tmp_path: Path,
                                                procs: Procs) -> None:
    bucket = f"tailor-missing-{uuid.uuid4().hex[:8]}"
    raw = StoreConfig(url=f"s3://{bucket}/raw", s3_endpoint_url=s3.endpoint_url)
    log = str(tmp_path / "ing.log")
    proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), new_group(), raw), log, procs)
    assert wait_exit(proc, 60, log) == 2
    text = read_log(log)
    assert f"s3://{bucket}/raw" in text and f"create the bucket {bucket}" in text, text[-2000:]
    assert "Traceback" not in text


def _metric(port: int, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric family on the ingester's /metrics ({} if down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {m[1] or "": float(m[2]) for m in re.finditer(
        rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)}


def test_bucket_gone_then_back(broker: services.Broker, topics: list[str],
                               raw_store: StoreConfig, bucket: str, s3: services.S3Server,
                               tmp_path: Path, procs: Procs) -> None:
    """The bucket disappears after start-up (s3fs reports NoSuchBucket as a missing
    file): the ingester stays up, retries, counts the failures, commits nothing,
    and once the bucket is back everything is stored exactly and committed."""
    s3c = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    group, log, port = new_group(), str(tmp_path / "ing.log"), services.free_port()
    proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, raw_store,
                            "--metrics-port", str(port), "--flush-payloads", "20"), log, procs)
    wait_until(lambda: "assigned [" in read_log(log), 60, "partitions to be assigned")
    s3c.delete_bucket(Bucket=bucket)  # empty: the start-up probe removed its object
    produced = produce(broker.bootstrap, make_stream(topics, 120, seed=31))
    ends = end_offsets(produced)

    def failures() -> float:
        return _metric(port, "tailor_store_write_failures_total").get(
            '{reason="NoSuchBucket"}', 0.0)

    wait_until(lambda: failures() >= 3, 90, "failed writes to be counted and retried")
    assert proc.poll() is None  # still running
    assert _metric(port, "tailor_ingest_oldest_unflushed_seconds")[""] > 0
    assert all(v == 0 for v in committed_offsets(broker.bootstrap, group, list(ends)).values())
    services.create_bucket(s3.endpoint_url, bucket)
    wait_until(lambda: committed_offsets(broker.bootstrap, group, list(ends)) == ends, 90,
               "everything to be committed after the bucket is back", 1.0)
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, 30, log) == 0, read_log(log)[-3000:]
    check_complete(raw_store, produced)
    assert "Task exception was never retrieved" not in read_log(log)
