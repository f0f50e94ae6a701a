"""Smoke tests of the benchmark harness pieces: correctness only, nothing is timed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks import dataset, gorilla, harness, peers, verify
from benchmarks.ingestrun import parse_counters
from benchmarks.memory import RssSampler
from benchmarks.profile import inclusive, top_frames
from benchmarks.stats import Runs
from tailor import framing, layout
from tailor.config import StoreConfig
from tailor.records import ObjectRecord
from tailor.shards import ShardMap
from tailor.storage import Store

H = 1767225600


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> harness.Prepared:
    work = tmp_path_factory.mktemp("bench")
    return harness.prepare(20_000, 3, work, "t")


def test_gorilla_counts_the_papers_bits() -> None:
    one = np.zeros(3, dtype=np.uint32)
    ts = np.array([H + 10, H + 20, H + 30], dtype=np.uint32)
    g = gorilla.encode_size(one, one.astype(np.uint64), one.astype(np.uint64), ts,
                            np.full(3, 1.5), H)
    # header 64 + first delta 14 + first value 64, then 2 × (dod 0: 1 bit, xor 0: 1 bit)
    assert g.stream_bytes == (64 + 14 + 64 + 4 + 7) // 8
    assert (g.points, g.series_blocks, g.key_bytes) == (3, 1, 20)
    # two series, one changing value: more bits than the constant one
    org = np.array([1, 1, 2, 2], dtype=np.uint32)
    z = np.zeros(4, dtype=np.uint64)
    ts4 = np.array([H, H + 60, H, H + 60], dtype=np.uint32)
    g2 = gorilla.encode_size(org, z, z, ts4, np.array([1.0, 1.0, 1.0, 2.0]), H)
    assert g2.series_blocks == 2
    assert g2.stream_bytes > 2 * ((64 + 14 + 64 + 9 + 1 + 7) // 8) - 1


def test_sorted_check_and_bit_exact_compare(small: harness.Prepared) -> None:
    t = next(v for v in small.reference.values() if v.num_rows > 3)
    t = verify.normalize(t)
    assert verify.is_strictly_sorted(t)
    assert not verify.is_strictly_sorted(t.take([1, 0, *range(2, t.num_rows)]))
    assert verify.same_rows(t, t)
    vals = t.column("value").to_numpy().copy()
    vals[0] = -vals[0] if vals[0] != 0 else -0.0
    changed = t.set_column(4, "value", [vals])
    assert verify.row_diffs(t, changed)[0] + verify.row_diffs(t, changed)[1] == 1
    assert not verify.same_rows(t, changed)


def test_peers_match_the_oracle(small: harness.Prepared, tmp_path: Path) -> None:
    assert small.points >= 20_000
    got_rows = pq.ParquetFile(small.raw_points).metadata.num_rows
    assert got_rows == small.points
    con = peers.duckdb_connect(threads=2)
    try:
        peers.run_duckdb(peers.Job(small.raw_points, str(tmp_path / "duck")), con)
    finally:
        con.close()
    peers.run_polars(peers.Job(small.raw_points, str(tmp_path / "polars")))
    rows = sum(t.num_rows for t in small.reference.values())
    for name in ("duck", "polars"):
        chk = verify.compare(name, verify.hive_files(tmp_path / name), small.reference,
                             exact_nan=False)
        assert chk.ok, chk.problems
        assert chk.rows == rows
    strict = verify.compare("polars", verify.hive_files(tmp_path / "polars"), small.reference)
    assert strict.ok, strict.problems


def test_direct_raw_objects_are_framed_and_indexed(small: harness.Prepared,
                                                   tmp_path: Path) -> None:
    store = Store(StoreConfig(url=str(tmp_path / "raw")))
    n = dataset.write_raw_objects(small.valid, store, ShardMap(), max_object_bytes=1 << 12)
    objects = store.list("objects")
    assert len(objects) == n > 64
    frames = payloads = 0
    for key in objects:
        buf = np.frombuffer(store.get(key), dtype=np.uint8)
        r = framing.scan(buf, len(buf), at_boundary=True)
        assert r.need_more == -1 and len(r.corrupt) == 0
        frames += len(r.ints)
    for key in store.list("index"):
        rec = ObjectRecord.model_validate(json.loads(store.get(key)))
        assert rec.key in objects and key.startswith(f"index/{rec.shard}/")
        payloads += rec.payloads * (layout.parse_stamp(key.split("/")[2]) == min(
            layout.parse_stamp(h) for h in rec.hours))
    assert frames == payloads == len(small.valid)


def test_sampler_counters_profile_and_report(small: harness.Prepared, tmp_path: Path) -> None:
    import os

    with RssSampler({os.getpid(): "me"}, interval=0.01) as s:
        _ = bytearray(8 << 20)
    assert s.max_by_label()["me"] > 8 << 20
    text = ("# HELP x\ntailor_ingest_payloads_total 10.0\n"
            "tailor_ingest_payload_bytes_total 2048.0\n"
            'tailor_ingest_quarantined_total{reason="bad_key"} 2.0\n'
            'tailor_ingest_quarantined_total{reason="too_large"} 1.0\n')
    assert parse_counters(text) == (10, 2048, 3)
    prof = tmp_path / "p.txt"
    prof.write_text("main (a.py:1);decode_range (decode.py:9);_inner (decode.py:20) 30\n"
                    "main (a.py:1);encode (encode.py:5) 10\n")
    assert top_frames(str(prof), 1) == [("_inner (decode.py)", 0.75)]
    assert inclusive(str(prof), r"decode\.py", 1)[0][1] == 0.75
    res = harness.Results({"seed": 3}, "python -m benchmarks --points 20000")
    res.dataset = {"points_target": 20_000, "records": 1, "valid": 1, "invalid": 0,
                   "points": small.points, "payload_bytes": 1, "record_bytes": 1, "gen_s": 0.1,
                   "rows": 1, "chunks": 1, "windows": ["2026-01-01T00"], "raw_points_bytes": 1}
    res.build = {"tailor": Runs([1.0, 2.0, 3.0]), "duckdb": Runs([4.0, 5.0, 6.0])}
    res.checks = {"tailor": verify.Check("tailor")}
    res.stages = {"zstd": Runs([1.0]), "thread-cpu": Runs([0.5])}
    res.size = {"rows": 10, "series_blocks": 1, "tailor": 50, "gorilla_streams": 40,
                "gorilla_keys": 20, "gorilla_total": 60, "duckdb": 100, "tailor_files": 1}
    md = harness.render(res)
    assert "| tailor | 3 | 2.00 s (1.00–3.00) |" in md
    assert "vs duckdb: 2.50×" in md and "S files / Gorilla + keys: 0.83×" in md


def _reference_bits(ts: list[int], vals: list[float], header: int) -> int:
    """A plain-Python bit writer of the Gorilla scheme, to cross-check the numba count."""
    bits = 64 + 14 + 64
    raw = np.array(vals, dtype=np.float64).view(np.uint64).tolist()
    prev_delta = ts[0] - header
    p_lead = p_trail = -1
    for i in range(1, len(ts)):
        delta = ts[i] - ts[i - 1]
        dod = delta - prev_delta
        prev_delta = delta
        bits += next(n for lo, hi, n in ((0, 0, 1), (-63, 64, 9), (-255, 256, 12),
                                         (-2047, 2048, 16), (-(2**40), 2**40, 36))
                     if lo <= dod <= hi)
        x = raw[i] ^ raw[i - 1]
        if x == 0:
            bits += 1
            continue
        lead = min(64 - x.bit_length(), 31)
        trail = (x & -x).bit_length() - 1
        if p_lead >= 0 and lead >= p_lead and trail >= p_trail:
            bits += 2 + 64 - p_lead - p_trail
        else:
            bits += 13 + 64 - lead - trail
            p_lead, p_trail = lead, trail
    return (bits + 7) // 8


def test_gorilla_matches_a_plain_bit_writer() -> None:
    rng = np.random.default_rng(7)
    total = 0
    orgs, tss, vals = [], [], []
    for s in range(6):
        n = int(rng.integers(1, 300))
        ts = np.sort(rng.choice(np.arange(H, H + 14_400), n, replace=False)).tolist()
        v = np.cumsum(rng.normal(size=n)) if s % 2 else rng.choice([0.0, 1.5, np.nan, -np.inf], n)
        total += _reference_bits(ts, v.tolist(), H)
        orgs += [s] * n
        tss += ts
        vals += v.tolist()
    org = np.array(orgs, dtype=np.uint32)
    z = np.zeros(len(org), dtype=np.uint64)
    g = gorilla.encode_size(org, z, z, np.array(tss, dtype=np.uint32), np.array(vals), H)
    assert (g.series_blocks, g.stream_bytes) == (6, total)
