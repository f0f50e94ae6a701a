"""Test streams and checks for ingest: payloads (valid and of every invalid
kind), producing them to the real broker, and reading back the raw store."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from tailor.config import StoreConfig
from tailor.format import framing, layout
from tailor.format import payload as pl
from tailor.format.records import ObjectRecord, QuarantineEntry
from tailor.storage import Store

T0 = 1767225600  # 2026-01-01T00:00:00Z


def points(n: int, seed: int, late_hours: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.zeros(n, dtype=pl.RECORD_DTYPE)
    p["metric_id"] = rng.integers(0, 50, n)
    p["context_key"] = rng.integers(0, 1000, n)
    p["ts"] = T0 + rng.integers(0, 4 * 3600, n) - late_hours * 3600
    p["value"] = rng.normal(size=n)
    return p


def invalid_kinds(org: int, seed: int) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, reason) for each invalid kind this helper can make cheaply."""
    good = pl.encode(org, T0 * 10**9 + seed, points(3, seed))
    dec = zstandard.ZstdDecompressor().decompress(good)
    c = zstandard.ZstdCompressor()
    return [
        (str(org).encode(), None, pl.MISSING_VALUE),
        (None, good, pl.MISSING_KEY),
        (b"+" + str(org).encode(), good, pl.BAD_KEY),
        (str(org + 1).encode(), good, pl.KEY_MISMATCH),
        (str(org).encode(), b"not zstd at all", pl.NOT_ONE_FRAME),
        (str(org).encode(), good + good, pl.NOT_ONE_FRAME),
        (str(org).encode(), c.compress(b"XXXX" + dec[4:]), pl.BAD_MAGIC),
        (str(org).encode(), c.compress(dec[:-5]), pl.BAD_SIZE),
        (str(org).encode(), good[:-4] + bytes(b ^ 0xFF for b in good[-4:]), pl.CHECKSUM_MISMATCH),
        (str(org).encode(), _too_large(), pl.TOO_LARGE),
    ]


@functools.cache
def _too_large() -> bytes:
    return zstandard.ZstdCompressor(level=1).compress(bytes(pl.MAX_DECOMPRESSED + 1))


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    reason: str | None  # None: valid


def make_stream(topics: list[str], n_valid: int, seed: int, *, invalid_every: int = 10,
                partitions: int = 4, pts: int = 20) -> list[Rec]:
    """Valid payloads over many orgs (some late points), invalid ones mixed in."""
    rng = np.random.default_rng(seed)
    out: list[Rec] = []
    i = 0
    for k in range(n_valid):
        org = int(rng.integers(1, 300))
        value = pl.encode(org, (T0 + 3600 * 5) * 10**9 + seed * 10**7 + k,
                          points(pts, seed * 100_000 + k, late_hours=int(k % 7 == 0) * 30),
                          checksum=bool(k % 2), content_size=bool(k % 3))
        t, p = topics[i % len(topics)], (i // len(topics)) % partitions
        out.append(Rec(t, p, str(org).encode(), value, None))
        i += 1
        if k % invalid_every == 0:
            kinds = invalid_kinds(org, seed * 1000 + k)
            key, v, reason = kinds[(k // invalid_every) % len(kinds)]
            t, p = topics[i % len(topics)], (i // len(topics)) % partitions
            out.append(Rec(t, p, key, v, reason))
            i += 1
    return out


def synth_stream(topics: list[str], points: int, seed: int,
                 invalid_rate: float = 0.05) -> list[Rec]:
    """The project's realistic generator (tailor.testing.stream): skewed orgs, late and
    re-sent points, duplicate deliveries, invalid payloads of every kind."""
    from tailor.config import ProduceConfig
    from tailor.testing.stream import DUPLICATE, VALID, generate

    s = generate(ProduceConfig(brokers="unused", topics=topics, points=points,
                                     invalid_rate=invalid_rate, orgs=60, seed=seed))
    return [Rec(r.topic, r.partition, r.key, r.value,
                None if r.kind in (VALID, DUPLICATE) else r.kind)
            for r in s.records]


async def _produce(bootstrap: str, recs: list[Rec]) -> dict[tuple[str, int, int], Rec]:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 << 20,
                            linger_ms=5)
    await prod.start()
    try:
        futs = [await prod.send(r.topic, value=r.value, key=r.key, partition=r.partition)
                for r in recs]
        metas = await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return {(m.topic, m.partition, m.offset): r for m, r in zip(metas, recs, strict=True)}


def produce(bootstrap: str, recs: list[Rec]) -> dict[tuple[str, int, int], Rec]:
    """Produce ``recs`` to their partitions; returns them by (topic, partition, offset)."""
    return asyncio.run(_produce(bootstrap, recs))


async def _committed(bootstrap: str, group: str, tps: list[tuple[str, int]]
                     ) -> dict[tuple[str, int], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return {tp: await c.committed(TopicPartition(*tp)) or 0 for tp in tps}
    finally:
        await c.stop()


def end_offsets(produced: dict[tuple[str, int, int], Rec]) -> dict[tuple[str, int], int]:
    """End offsets of the (fresh) test partitions: last produced offset + 1.

    Not ListOffsets: Tansu 0.6 answers it with the base offset of the last
    record batch + 1 when batches hold several records.
    """
    ends: dict[tuple[str, int], int] = {}
    for t, p, o in produced:
        ends[(t, p)] = max(ends.get((t, p), 0), o + 1)
    return ends


def committed_offsets(bootstrap: str, group: str,
                      tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offset per partition (0 if none)."""
    return asyncio.run(_committed(bootstrap, group, tps))


@dataclass
class RawContents:
    frames: dict[tuple[str, int, int], list[bytes]]  # coords → bodies (copies)
    quarantined: dict[tuple[str, int, int], QuarantineEntry]
    records: list[ObjectRecord]
    corrupt: int


def read_raw(cfg: StoreConfig) -> RawContents:
    """Every frame of every raw object (via the index records) and quarantine entry."""
    store = Store(cfg)
    index_keys = store.list("index")
    by_key: dict[str, ObjectRecord] = {}
    seen: set[tuple[str, str]] = set()
    for k in index_keys:  # index/{shard}/{hour or bucket}/{batch}.json: one copy each
        parts = k.split("/")
        if (parts[1], parts[3]) not in seen:
            seen.add((parts[1], parts[3]))
            r = ObjectRecord.model_validate_json(store.get(k))
            by_key[r.key] = r
    recs = list(by_key.values())
    frames: dict[tuple[str, int, int], list[bytes]] = {}
    corrupt = 0
    for key in store.list("objects"):
        data = store.get(key)
        buf = np.frombuffer(data, dtype=np.uint8)
        res = framing.scan(buf, len(buf), at_boundary=True)
        corrupt += len(res.corrupt)
        rec = by_key.get(key)
        for row, u in zip(res.ints, res.u64s, strict=True):
            pos, blen = int(row[framing.F_POS]), int(row[framing.F_BODY_LEN])
            topic = rec.topics[int(row[framing.F_TOPIC])] if rec else f"?{row[framing.F_TOPIC]}"
            body = data[pos + framing.HEADER_SIZE: pos + framing.HEADER_SIZE + blen]
            coords = (topic, int(row[framing.F_PARTITION]), int(u[1]))
            frames.setdefault(coords, []).append(body)
    quarantined = {}
    for key in store.list("quarantine"):
        for line in store.get(key).splitlines():
            e = QuarantineEntry.model_validate_json(line)
            quarantined[(e.topic, e.partition, e.offset)] = e
    return RawContents(frames, quarantined, recs, corrupt)


def check_complete(cfg: StoreConfig, produced: dict[tuple[str, int, int], Rec]) -> RawContents:
    """Assert every valid record is in ≥1 raw object (bytes unchanged, findable
    through an index record of every hour, or coarser bucket, it has points in) and every invalid
    one is in quarantine with its coordinates and reason."""
    raw = read_raw(cfg)
    assert raw.corrupt == 0
    valid = {c: r for c, r in produced.items() if r.reason is None}
    invalid = {c: r for c, r in produced.items() if r.reason is not None}
    missing = sorted(set(valid) - set(raw.frames))
    assert not missing, f"{len(missing)} valid payloads missing, e.g. {missing[:5]}"
    for c, bodies in raw.frames.items():
        assert c in valid, f"frame {c} is not a produced valid payload"
        assert all(b == valid[c].value for b in bodies)
    missing_q = sorted(set(invalid) - set(raw.quarantined))
    assert not missing_q, f"{len(missing_q)} invalid payloads not quarantined: {missing_q[:5]}"
    for c, e in raw.quarantined.items():
        assert c in invalid and e.reason == invalid[c].reason, (c, e.reason)
    # every object is found through the index of every hour it holds points of
    store = Store(cfg)
    objects = set(store.list("objects"))
    index = set(store.list("index"))
    assert {r.key for r in raw.records} == objects
    for r in raw.records:
        assert set(layout.index_keys(r.shard, r.hour_starts(), r.batch_id)) <= index
    return raw


def ingest_cmd(bootstrap: str, topics: str, group: str, raw: StoreConfig,
               *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "tailor", "ingest", "--brokers", bootstrap, "--topics", topics,
           "--group", group, "--raw", raw.url, "--flush-age", "0.5s",
           "--metadata-max-age", "2s", "--log-every", "2s"]
    if raw.s3_endpoint_url:
        cmd += ["--s3-endpoint-url", raw.s3_endpoint_url]
    return cmd + list(extra)


def read_log(path: str) -> str:
    return Path(path).read_text(errors="replace")


def start(cmd: list[str], log_path: str,
          procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Start an ingester logging to ``log_path``; ``procs`` (the fixture) reaps it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    procs.append(proc)
    return proc


def wait_exit(proc: subprocess.Popen[bytes], timeout: float, log_path: str) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"ingester did not exit in {timeout} s; log:\n"
                             + read_log(log_path)[-4000:]) from None


def wait_until(cond: object, timeout: float, what: str, step: float = 0.25) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def new_group() -> str:
    """A fresh consumer group id."""
    return f"g-{uuid.uuid4().hex[:8]}"
