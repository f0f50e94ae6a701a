"""Peak RSS of `tailor ingest` while the raw store is stalled, against its --memory-limit.

    python -m tests.ingest.memory_peak [--memory-limit 256MiB] [--data 768MiB] [--orgs 5000]
                                       [--upload-concurrency 8]

Starts a Tansu broker, a moto S3 server and a fault proxy in front of it, and
one ingester through the proxy on an empty topic.  Once the ingester has
joined and committed one small payload, every store request hangs, and
``--data`` bytes of incompressible ~1 MiB payloads of ``--orgs`` orgs are
produced (5000 orgs: every shard; 1 org: one shard, so big multipart
batches).  The ingester fills its buffer up to the limit, pauses fetching and
waits on its stuck writes.  When the buffered bytes have stopped changing, the
script reads the process's peak RSS (``VmHWM`` in ``/proc/PID/status``) and
prints it beside the peak RSS of the same ingester after one small payload
went all the way through (the fixed part: interpreter, numba kernels,
aiokafka, s3fs), so the difference is what the buffered data cost.
Nothing here asserts: ``test_memory.py`` does, on a smaller run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tailor.config import StoreConfig, parse_bytes
from tailor.format import payload as pl
from tailor.testing import services

from .faultproxy import FaultProxy
from .helpers import T0, ingest_cmd, read_log, start, wait_until

MiB = 1 << 20


@dataclass(frozen=True)
class Peak:
    limit: int  # --memory-limit
    produced: int  # payload bytes in the topic
    base_rss: int  # VmHWM of the idle ingester after one small payload went through
    peak_rss: int  # VmHWM after the stalled period
    buffered: int  # tailor_ingest_buffered_bytes when measured
    paused: bool  # fetching paused on the bound

    @property
    def data_rss(self) -> int:
        """What the buffered data cost above the fixed part."""
        return self.peak_rss - self.base_rss

    def describe(self) -> str:
        return (f"memory limit {self.limit / MiB:.0f} MiB, {self.produced / MiB:.0f} MiB "
                f"produced, store stalled: peak RSS {self.peak_rss / MiB:.0f} MiB = fixed "
                f"{self.base_rss / MiB:.0f} MiB (warmed up, idle) + {self.data_rss / MiB:.0f} MiB "
                f"({self.data_rss / self.limit:.2f} x the limit); buffered "
                f"{self.buffered / MiB:.0f} MiB, fetching {'paused' if self.paused else 'running'}")


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes (Linux ``VmHWM``)."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    assert m, "no VmHWM in /proc/PID/status (Linux only)"
    return int(m[1]) * 1024


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m[1]) if m else None


def payloads(total: int, size: int, orgs: int = 5000, seed: int = 0
             ) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of ~``size``-byte incompressible payloads, ``total`` bytes in all."""
    rng = np.random.default_rng(seed)
    n_pts = max(1, size // 26)
    out: list[tuple[bytes, bytes]] = []
    got = k = 0
    while got < total:
        org = int(rng.integers(1, orgs + 1))
        p = np.zeros(n_pts, pl.RECORD_DTYPE)
        p["metric_id"] = rng.integers(0, 2**63, n_pts)
        p["context_key"] = rng.integers(0, 2**63, n_pts)
        p["ts"] = T0 + rng.integers(0, 3600, n_pts)
        p["value"] = rng.normal(size=n_pts)
        value = pl.encode(org, T0 * 10**9 + k, p, level=1)
        out.append((str(org).encode(), value))
        got += len(value)
        k += 1
    return out


async def _produce(bootstrap: str, topic: str, recs: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20,
                            linger_ms=5, acks=1)
    await prod.start()
    try:
        for i in range(0, len(recs), 64):
            futs = [await prod.send(topic, value=v, key=k) for k, v in recs[i:i + 64]]
            await asyncio.gather(*futs)
    finally:
        await prod.stop()


def measure(bootstrap: str, s3_endpoint: str, bucket: str, workdir: Path, *, limit: int,
            data: int, payload_size: int = MiB, orgs: int = 5000, upload_concurrency: int = 8,
            procs: list[subprocess.Popen[bytes]],
            settle_s: float = 3.0, timeout_s: float = 300.0) -> Peak:
    """Run one stalled ingester as the module doc says; return its memory."""
    topic = f"mem-{uuid.uuid4().hex[:8]}"
    asyncio.run(services.create_topics(bootstrap, [topic], 4))
    recs = payloads(data, payload_size, orgs)
    produced = sum(len(v) for _, v in recs)
    port, log = services.free_port(), str(workdir / f"{topic}.log")
    with FaultProxy(s3_endpoint) as proxy:
        raw = StoreConfig(url=f"s3://{bucket}/{topic}", s3_endpoint_url=proxy.endpoint_url)
        proc = start(ingest_cmd(bootstrap, topic, f"g-{topic}", raw, "--memory-limit",
                                str(limit), "--flush-age", "1s", "--metrics-port", str(port),
                                "--log-every", "1s", "--upload-concurrency",
                                str(upload_concurrency)), log, procs)
        try:
            wait_until(lambda: "assigned [" in read_log(log), timeout_s, "the ingester to join")
            # one small payload through every stage first (kernels loaded, S3 client up)
            asyncio.run(_produce(bootstrap, topic, payloads(1, 1 << 10, orgs)))
            wait_until(lambda: (metric(port, "tailor_ingest_commits_total") or 0) > 0,
                       timeout_s, "the first payload to be committed")
            base = vm_hwm(proc.pid)  # warmed up, idle
            proxy.delay_s = 3600.0  # from now on every store request hangs
            asyncio.run(_produce(bootstrap, topic, recs))
            del recs
            wait_until(lambda: (metric(port, "tailor_ingest_backpressure_pauses_total") or 0) > 0,
                       timeout_s, "fetching to pause on the memory bound")
            # settled: the buffered bytes stay the same for settle_s
            last: list[float | None] = [None]
            since = [time.monotonic()]

            def settled() -> bool:
                b = metric(port, "tailor_ingest_buffered_bytes")
                if b != last[0]:
                    last[0], since[0] = b, time.monotonic()
                return time.monotonic() - since[0] >= settle_s

            wait_until(settled, timeout_s, "the buffered bytes to settle", step=0.5)
            peak = vm_hwm(proc.pid)
            paused = "pausing fetch" in read_log(log) and "resuming fetch" not in read_log(log)
            return Peak(limit, produced, base, peak, int(last[0] or 0), paused)
        finally:
            proc.kill()
            proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory-limit", default="256MiB")
    ap.add_argument("--data", default="768MiB", help="payload bytes to produce (> the limit)")
    ap.add_argument("--payload-size", default="1MiB")
    ap.add_argument("--orgs", type=int, default=5000, help="distinct orgs (1: one shard)")
    ap.add_argument("--upload-concurrency", type=int, default=8)
    args = ap.parse_args(argv)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp, services.broker(f"{tmp}/tansu.log") as broker:
        s3 = services.start_s3()
        try:
            bucket = f"mem-{uuid.uuid4().hex[:8]}"
            services.create_bucket(s3.endpoint_url, bucket)
            peak = measure(broker.bootstrap, s3.endpoint_url, bucket, Path(tmp),
                           limit=parse_bytes(args.memory_limit, what="--memory-limit"),
                           data=parse_bytes(args.data, what="--data"),
                           payload_size=parse_bytes(args.payload_size, what="--payload-size"),
                           orgs=args.orgs, upload_concurrency=args.upload_concurrency,
                           procs=procs)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            s3.close()
    print(peak.describe())
    return 0


if __name__ == "__main__":
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # moto accepts any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    sys.exit(main())
