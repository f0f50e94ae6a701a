"""Smoke tests of the benchmark harness pieces: correctness only, nothing is timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks import (
    accounting,
    dataset,
    gorilla,
    peers,
    procs,
    render,
    targets,
    verify,
    workload,
)
from benchmarks.cli import main as bench_main
from benchmarks.ingestrun import parse_counters
from benchmarks.memory import RssSampler
from benchmarks.names import FIRST_RUN, WARM
from benchmarks.profile import inclusive, top_frames
from benchmarks.results import Results, Run, Section
from benchmarks.suites import Contender, hive_files, run_rounds
from benchmarks.suites.build import published_seconds
from benchmarks.suites.ingest import raw_store_problems
from tailor.config import StoreConfig
from tailor.format import framing, layout
from tailor.format.records import ObjectRecord
from tailor.shards import ShardMap
from tailor.storage import Store

H = 1767225600


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> workload.Prepared:
    work = tmp_path_factory.mktemp("bench")
    return workload.prepare(20_000, 3, work, "t")


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


def test_sorted_check_and_bit_exact_compare(small: workload.Prepared) -> None:
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


@pytest.mark.parametrize("engine", ["duckdb", "polars", "chdb", "datafusion"])
def test_peers_match_the_oracle_bit_for_bit(small: workload.Prepared, tmp_path: Path,
                                            engine: str) -> None:
    """Each peer as the harness runs it (a process of its own), checked as strictly as Tailor."""
    assert pq.ParquetFile(small.raw_points).metadata.num_rows == small.points
    if peers.missing(engine):
        pytest.skip(peers.missing(engine) or "")
    out = tmp_path / engine
    subprocess.run([sys.executable, "-m", "benchmarks.peers", engine, "--points",
                    small.raw_points, "--out", str(out), "--json", str(tmp_path / "t.json")],
                   check=True, cwd=str(procs.REPO), env=procs.clean_env())
    chk = verify.compare(engine, verify.hive_files(out), small.reference)
    assert chk.ok, chk.problems
    assert chk.rows == small.rows
    assert json.loads((tmp_path / "t.json").read_text())["seconds"] > 0


def test_duckdb_struct_arg_max_is_caught(small: workload.Prepared, tmp_path: Path) -> None:
    """The pitfall PITFALLS names: arg_max over a struct key loses NaN payloads, and the
    bit-for-bit check sees it (the synth data has NaN payloads)."""
    import duckdb

    con = duckdb.connect()
    t = con.sql(f"""SELECT org_id % 64 AS shard, ts - ts % 14400 AS win, org_id, metric_id,
                           context_key, ts, arg_max(value, {{'i': intake_ns, 'x': idx}}) AS value
                    FROM read_parquet('{small.raw_points}') GROUP BY ALL
                    ORDER BY shard, win, org_id, metric_id, context_key, ts""").to_arrow_table()
    con.close()
    got = {}
    for shard, win in {(int(a), int(b)) for a, b in zip(t.column("shard").to_pylist(),
                                                           t.column("win").to_pylist(),
                                                           strict=True)}:
        d = tmp_path / f"shard={shard}" / f"win={win}"
        d.mkdir(parents=True)
        part = t.filter((t.column("shard").to_numpy() == shard)
                        & (t.column("win").to_numpy() == win))
        pq.write_table(part.drop_columns(["shard", "win"]), d / "p.parquet")
    got = verify.hive_files(tmp_path)
    assert not verify.compare("struct", got, small.reference).ok
    assert verify.compare("lenient", got, small.reference, exact_nan=False).ok


def test_direct_raw_objects_are_framed_and_indexed(small: workload.Prepared,
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


def test_sampler_counters_profile_and_report(small: workload.Prepared, tmp_path: Path) -> None:
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
    assert published_seconds("x\ntailor build: 3/3 chunk(s) published in 4.2s\n") == 4.2
    assert published_seconds("no summary") is None


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


# -- accounting, the round runner, results and render ---------------------------------


def _system(sec: Section, name: str, kind: str, *runs: Run) -> None:
    sec.system(name, kind).runs.extend(runs)  # type: ignore[arg-type]


def _ok(rnd: int, secs: float, **extra: float) -> Run:
    return Run(round=rnd, seconds=secs, checked=True, extra=extra)


def test_a_wrong_or_failed_system_is_in_no_ratio() -> None:
    sec = Section(points=1000)
    _system(sec, WARM, "tailor", _ok(1, 2.0), _ok(2, 2.0))
    _system(sec, FIRST_RUN, "tailor", _ok(1, 2.5), Run(round=2, seconds=0.1, exit_code=1))
    # the fastest peer, but its second round's output was wrong: left out
    _system(sec, "fast", "peer", _ok(1, 1.0),
            Run(round=2, seconds=1.0, checked=True, problems=["chunk (0, 0): 1 row differs"]))
    # a peer whose process failed once: a non-zero exit never counts, even checked
    _system(sec, "crashy", "peer", _ok(1, 1.5), Run(round=2, seconds=0.5, exit_code=137,
                                                    checked=True))
    _system(sec, "slow", "peer", _ok(1, 8.0), _ok(2, 6.0))
    assert accounting.seconds(sec.get("crashy")).values == [1.5]  # type: ignore[arg-type]
    assert accounting.best_peer(sec) is sec.get("slow")
    r = accounting.speedup(sec, WARM)
    assert (r.value, r.over, r.missing) == (3.5, "slow", "")
    assert "output WRONG" in (accounting.excluded(sec.get("fast")) or "")  # type: ignore[arg-type]
    assert "exit code 137" in (accounting.excluded(sec.get("crashy")) or "")  # type: ignore[arg-type]
    # a Tailor line with a failed run has no ratio at all
    first = accounting.slowdown(sec, FIRST_RUN, WARM)
    assert first.value != first.value and "exit code 1" in first.missing
    # an unchecked run never counts either
    _system(sec, "unchecked", "peer", Run(round=1, seconds=0.01))
    assert accounting.best_peer(sec) is sec.get("slow")
    md = render.render(Results(command="x", build=sec))
    assert "| fast (**does not count**: round 2: output WRONG" in md
    assert f"**warm CLI vs the best peer** (slow): {targets.BUILD_WARM.verdict(3.5)}" in md
    assert "3.50× (target ≥ 3×: met)" in md


def test_every_round_of_every_system_is_checked(small: workload.Prepared,
                                                tmp_path: Path) -> None:
    """Round 2 of "flaky" writes one chunk backwards; "crash" exits 1 after a right output."""
    ref = small.reference

    def write(out: str, backwards: bool) -> None:
        for (shard, win), t in ref.items():
            d = Path(out) / f"shard={shard}" / f"win={win}"
            d.mkdir(parents=True)
            t = verify.normalize(t)
            if backwards and t.num_rows > 1:
                t = t.take(list(range(t.num_rows - 1, -1, -1)))
                backwards = False
            pq.write_table(t, d / "p.parquet")

    def good(rnd: int, out: str) -> Run:
        write(out, False)
        return Run(round=rnd, seconds=1.0)

    def flaky(rnd: int, out: str) -> Run:
        write(out, rnd == 2)
        return Run(round=rnd, seconds=0.5)

    def crash(rnd: int, out: str) -> Run:
        write(out, False)
        return Run(round=rnd, seconds=0.1, exit_code=1)

    sec, res = Section(), Results(command="x")
    run_rounds(sec, [Contender(WARM, "tailor", good, hive_files, "good"),
                     Contender("flaky", "peer", flaky, hive_files, "flaky"),
                     Contender("crash", "peer", crash, hive_files, "crash")],
               2, ref, tmp_path, res, lambda: None)
    good_s, flaky_s, crash_s = sec.systems
    assert [r.checked and not r.problems for r in good_s.runs] == [True, True]
    assert [bool(r.problems) for r in flaky_s.runs] == [False, True]
    assert "not strictly sorted" in " ".join(flaky_s.runs[1].problems)
    assert [r.checked for r in crash_s.runs] == [False, False]  # a failed process: not read
    assert accounting.best_peer(sec) is None
    assert "no peer counts" in accounting.speedup(sec, WARM).missing


def test_results_round_trip_and_render_command(tmp_path: Path) -> None:
    sec = Section(points=4_000_000, stages={"zstd": [1.0, 2.0], "thread-cpu": [0.5, 0.5]})
    _system(sec, WARM, "tailor", _ok(1, 2.0, startup_s=1.0, published_s=1.5))
    _system(sec, FIRST_RUN, "tailor", _ok(1, 4.0, startup_s=3.0))
    _system(sec, "duckdb", "peer", _ok(1, 7.0, startup_s=0.2), _ok(2, 5.0, startup_s=0.2))
    res = Results(command="python -m benchmarks --points 20000", build=sec,
                  dataset={"points_target": 20_000, "records": 1, "valid": 1, "invalid": 0,
                           "points": 4_000_000, "payload_bytes": 1, "record_bytes": 1,
                           "gen_s": 0.1, "rows": 1, "chunks": 1, "windows": ["2026-01-01T00"],
                           "raw_points_bytes": 1},
                  size={"rows": 10, "series_blocks": 1, "tailor": 50, "gorilla_streams": 40,
                        "gorilla_keys": 20, "gorilla_total": 60, "duckdb": 100,
                        "tailor_files": 1})
    res.add_memory("1×", "worker", 2**30)
    path, md_path = tmp_path / "results.json", tmp_path / "RESULTS.md"
    res.save(path)
    assert Results.load_file(path) == res
    assert bench_main(["render", str(path), "-o", str(md_path)]) == 0
    md = md_path.read_text()
    assert md == render.render(res)
    assert f"| {WARM} | 1/1 | 2.00 s | 2,000,000 | 1.00 s (50%) | 1.50 s |" in md
    assert "| duckdb | 2/2 | 6.00 s (5.00–7.00) | 666,667 |" in md
    assert ("warm `tailor build` CLI vs the best peer (issue 12; ≥ 5× is the next step) | "
            "3.00× (target ≥ 3×: met) against duckdb |") in md
    assert "2.00× (target ≤ 1.5×: NOT met)" in md  # first run / warm
    assert "| **zstd** | 1.50 s (1.00–2.00) |" in md
    assert "S files / Gorilla streams only: 1.25× (target ≤ 1×: NOT met)" in md
    assert "| 1× | worker | 1024 MiB" in md


def test_raw_store_check_counts_payloads_once_per_object(small: workload.Prepared,
                                                        tmp_path: Path) -> None:
    """Objects indexed under several hours count once; quarantine entries are read back."""
    from tailor.format.records import QuarantineEntry

    store = Store(StoreConfig(url=str(tmp_path)))
    dataset.write_raw_objects(small.valid, store, ShardMap(), max_object_bytes=1 << 14)
    assert len(store.list("index")) > len(store.list("objects"))  # several hours per object
    for off in range(2):
        e = QuarantineEntry(topic="t", partition=0, offset=off, reason="bad_key", detail="",
                            key_b64=None, value_b64=None)
        store.put(layout.quarantine_key("t", 0, off), e.model_dump_json().encode())
    assert raw_store_problems(str(tmp_path), len(small.valid), 2) == []
    assert len(raw_store_problems(str(tmp_path), len(small.valid) + 1, 1)) == 2


def test_an_ingest_round_counts_only_when_committed_to_the_acknowledged_end() -> None:
    from benchmarks.ingestrun import IngestResult

    ends = {("t", 0): 10, ("t", 1): 5}

    def result(committed: dict[tuple[str, int], int], consumed: int = 15,
               rc: int = 0) -> IngestResult:
        return IngestResult(records=14, value_bytes=1, seconds=1.0, end_to_end_s=2.0,
                            exit_code=rc, peak_rss=0, consumed=consumed, total=15,
                            committed=committed, ends=ends)

    assert result({("t", 0): 10, ("t", 1): 5}).complete
    # every record consumed (the counters), but one partition's commit is short
    short = result({("t", 0): 10, ("t", 1): 4})
    assert not short.complete and "t/1: 4 of 5" in short.problems()[0]
    assert not result({("t", 0): 10}).complete  # a partition never committed
    assert "exit code 1" in result(dict(ends), rc=1).problems()
    assert "consumed only 14" in result(dict(ends), consumed=14).problems()[0]


def test_a_process_over_its_rss_limit_is_stopped_and_says_why() -> None:
    """A peer past the harness's memory limit is killed and never counts (scale suite)."""
    from benchmarks import procs
    from benchmarks.accounting import why_not

    grow = ("b = bytearray(400 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n"
            "import time\ntime.sleep(30)")
    e = procs.timed([sys.executable, "-c", grow], label="hog", rss_limit=200 * 2**20)
    assert e.exit_code == -9 and e.seconds < 20
    assert "more than 0.2 GiB of RSS" in e.reason
    run = Run(round=1, seconds=e.seconds, exit_code=e.exit_code, reason=e.reason)
    assert "RSS" in (why_not(run) or "")
