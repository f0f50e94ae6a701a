"""The points every suite runs on, and their oracle.

:func:`prepare`: one ``tailor.testing.stream`` stream (the 1× dataset) as Kafka
records, its valid payloads decoded once to a Parquet file of raw points for
the peers, and the oracle's chunks.  :func:`prepare_scaled`: ``k`` independent
streams (the 10× dataset) written straight to a raw store and one points
file, with the oracle computed a few shards at a time to bound memory.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import dataset, verify

TOPICS = ("bench-points-0", "bench-points-1")
PARTITIONS = 4


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Prepared:
    points_target: int
    records: list[Any]
    valid: list[dataset.Valid]
    invalid: int
    reference: dict[verify.ChunkKey, Any]
    windows: list[int]
    raw_points: str
    points: int
    payload_bytes: int
    record_bytes: int
    gen_s: float

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.reference.values())


def synth(points: int, seed: int) -> Any:
    from tailor.config import ProduceConfig
    from tailor.testing.stream import generate

    cfg = ProduceConfig(brokers="127.0.0.1:9", topics=list(TOPICS), partitions=PARTITIONS,
                        points=points, seed=seed)
    return generate(cfg)


def reference_chunks(s: Any) -> dict[verify.ChunkKey, Any]:
    return {(verify.shard_number(sh), int(ws)): t for (sh, ws), t in s.expected().items()}


def prepare(points: int, seed: int, work: Path, tag: str) -> Prepared:
    t0 = time.perf_counter()
    s = synth(points, seed)
    records = list(s.records)
    gen_s = time.perf_counter() - t0
    valid, invalid = dataset.valid_payloads(records)
    ref = reference_chunks(s)
    raw_points = str(work / f"points-{tag}.parquet")
    n = dataset.write_raw_points(valid, raw_points)
    windows = sorted({ws for _, ws in ref})
    return Prepared(points, records, valid, invalid, ref, windows, raw_points, n,
                    sum(len(v.value) for v in valid),
                    sum(len(r.value or b"") for r in records), gen_s)


def write_direct(valid: list[dataset.Valid], raw_dir: str) -> int:
    """Raw objects and index records as ingest writes them, without Kafka."""
    from tailor.config import StoreConfig
    from tailor.shards import ShardMap
    from tailor.storage import Store

    shutil.rmtree(raw_dir, ignore_errors=True)
    return dataset.write_raw_objects(valid, Store(StoreConfig(url=raw_dir)), ShardMap())


def facts(prep: Prepared) -> dict[str, Any]:
    """The dataset lines of RESULTS.md."""
    import os

    from tailor.format import layout

    return {
        "points_target": prep.points_target, "records": len(prep.records),
        "valid": len(prep.valid), "invalid": prep.invalid, "points": prep.points,
        "payload_bytes": prep.payload_bytes, "record_bytes": prep.record_bytes,
        "gen_s": prep.gen_s, "rows": prep.rows,
        "chunks": sum(1 for t in prep.reference.values() if t.num_rows),
        "windows": [layout.stamp(w) for w in prep.windows],
        "raw_points_bytes": os.path.getsize(prep.raw_points),
    }


@dataclass
class Scaled:
    """The k× dataset: a raw store, a points file for the peers, and the oracle."""

    points_target: int
    points: int
    records: int
    objects: int
    raw: str
    raw_points: str
    reference: dict[verify.ChunkKey, Any]
    windows: list[int]
    gen_s: float

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.reference.values())


def prepare_scaled(points: int, k: int, seed: int, work: Path, *,
                   points_file: bool = True) -> Scaled:
    """``k`` independent synth streams (seeds ``seed .. seed+k-1``) of ``points`` each.

    One synth stream of ``k×`` the points does not fit memory (synth holds
    every point and record at once), so the streams are generated one after
    the other into one raw store (one Kafka offset sequence per partition)
    and, for the peers, one points file.  Their series ids are random u64s, so
    streams do not share points; the oracle is :func:`tailor.testing.oracle.oracle`
    over the union of their valid payloads, 8 shard groups at a time.
    """
    import numpy as np

    from tailor.config import StoreConfig
    from tailor.format import layout
    from tailor.shards import ShardMap
    from tailor.storage import Store
    from tailor.testing.oracle import oracle

    raw = str(work / f"raw-{k}x")
    raw_points = str(work / f"points-{k}x.parquet")
    shutil.rmtree(raw, ignore_errors=True)
    store, shard_map = Store(StoreConfig(url=raw)), ShardMap()
    offsets: dict[tuple[str, int], int] = {}
    parts: list[tuple[Any, Any, Any, Any]] = []
    n_obj = records = n_points = 0
    t0 = time.perf_counter()
    writer = dataset.RawPointsWriter(raw_points) if points_file else None
    try:
        for i in range(k):
            s = synth(points, seed + i)
            valid = list(dataset.iter_valid(s.records))
            n_obj += dataset.write_raw_objects(valid, store, shard_map, offsets=offsets)
            if writer is not None:
                n_points += writer.write(valid)
            else:
                n_points += sum(v.payload.n_points for v in valid)
            records += len(s.records)
            parts.append((s.points, np.asarray(s.pay_org), np.asarray(s.pay_intake_ns),
                          np.asarray(s.pay_n)))
            del s, valid
            log(f"{k}× dataset: stream {i + 1}/{k} written")
    finally:
        if writer is not None:
            writer.close()
    ref: dict[verify.ChunkKey, Any] = {}
    groups = 8
    for g in range(groups):
        pts, org, intake, cnt = [], [], [], []
        for p_pts, p_org, p_intake, p_n in parts:
            sel = (p_org % shard_map.shared_shards) % groups == g
            pts.append(p_pts[np.repeat(sel, p_n)])
            org.append(p_org[sel])
            intake.append(p_intake[sel])
            cnt.append(p_n[sel])
        got = oracle(np.concatenate(pts), np.concatenate(org), np.concatenate(intake),
                     np.concatenate(cnt), shard_map, layout.WINDOW_SECONDS)
        ref.update({(verify.shard_number(sh), int(ws)): t for (sh, ws), t in got.items()})
    del parts
    return Scaled(points * k, n_points, records, n_obj, raw, raw_points if points_file else "",
                  ref, sorted({ws for _, ws in ref}), time.perf_counter() - t0)
