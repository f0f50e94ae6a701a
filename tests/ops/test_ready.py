"""`build --ready` end to end on real components: broker, ingest, Dask, leases.

One synthetic stream is produced and ingested once per module; the tests
build it into fresh output roots.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tailor.config import BuildConfig, ProduceConfig, StoreConfig
from tailor.format import payload
from tailor.format.layout import HOUR, stamp
from tailor.ops.diff import read_chunk
from tailor.ops.readiness import chunk_rows
from tailor.ops.ready import build_ready
from tailor.ops.state import load_state
from tailor.shards import load
from tailor.storage import Store
from tailor.testing.oracle import POINT_SCHEMA
from tailor.testing.services import Broker, create_topics
from tailor.testing.stream import Synth, SynthRecord, generate
from tests.pipeline import ingest, mismatches, send

T0 = 1767225600
W = 4 * HOUR


class Stream:
    """A synth stream produced to fresh topics and ingested into ``root/raw``.

    ``cutover``: the stream's biggest org moves to its own shard at that ts.
    """

    def __init__(self, broker: Broker, root: Path, cutover: int | None = None) -> None:
        import asyncio

        tag = uuid.uuid4().hex[:8]
        self.topics = [f"ops-{tag}-0", f"ops-{tag}-1"]
        asyncio.run(create_topics(broker.bootstrap, self.topics, 4))
        self.shards_file = str(root / "shards.yaml")
        Path(self.shards_file).write_text("shared_shards: 2\n")
        self.broker = broker
        self.raw = StoreConfig(url=str(root / "raw"))
        pcfg = ProduceConfig(brokers=broker.bootstrap, topics=self.topics, partitions=4,
                             points=4000, orgs=8, hours=8, seed=7, invalid_rate=0.02,
                             shards_file=self.shards_file)
        self.synth: Synth = generate(pcfg)
        self.moved: int | None = None
        if cutover is not None:
            orgs, inv = np.unique(self.synth.pay_org, return_inverse=True)
            self.moved = int(orgs[np.argmax(np.bincount(inv, weights=self.synth.pay_n))])
            Path(self.shards_file).write_text(
                f"shared_shards: 2\ndedicated:\n  - org: {self.moved}\n    since: {cutover}\n")
            self.synth = generate(pcfg)  # the oracle reads the shards file
        send(broker.bootstrap, self.synth.records)
        ingest(broker.bootstrap, self.topics, self.raw, shards_file=self.shards_file)
        self.late: list[tuple[tuple[str, int], dict[str, Any]]] = []  # points sent since

    def expected(self) -> dict[tuple[str, int], pa.Table]:
        """The oracle's chunks, with the points tests sent later (new keys) added."""
        exp = dict(self.synth.expected())
        for chunk, row in self.late:
            t = pa.concat_tables([exp[chunk], pa.Table.from_pylist([row], schema=POINT_SCHEMA)])
            exp[chunk] = t.sort_by([(c, "ascending") for c in POINT_SCHEMA.names[:4]])
        return exp

    def cfg(self, out: Path, grace_s: float = 900.0) -> BuildConfig:
        return BuildConfig(raw=self.raw, out=StoreConfig(url=str(out)),
                           shards=load(self.shards_file).all_shards(), windows=[],
                           shards_file=self.shards_file, ready=True, grace_s=grace_s)


@pytest.fixture(scope="module")
def stream(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Stream:
    return Stream(broker, tmp_path_factory.mktemp("stream"))


def test_ready_builds_every_chunk_once_and_matches_the_oracle(
        stream: Stream, dask_client: Any, tmp_path: Path) -> None:
    cfg = stream.cfg(tmp_path / "out")
    expected = stream.expected()
    rep = build_ready(cfg, dask_client)
    assert rep.exit_code == 0, rep.summary()
    assert sorted((o.shard, o.start) for o in rep.by("built")) == sorted(expected)
    out = Store(cfg.out)
    assert mismatches(out, expected) == []
    # Nothing left to do: a second run selects nothing.
    again = build_ready(cfg, dask_client)
    assert again.outcomes == [] and again.exit_code == 0


def test_two_concurrent_runs_publish_each_chunk_once(
        stream: Stream, dask_client: Any, tmp_path: Path) -> None:
    from distributed import Client

    cfg = stream.cfg(tmp_path / "out")
    reports: list[Any] = []
    barrier = threading.Barrier(2)

    def one(name: str) -> None:
        with Client(dask_client.scheduler.address, set_as_default=False) as c:
            barrier.wait(30)
            reports.append(build_ready(cfg, c, owner=name))

    threads = [threading.Thread(target=one, args=(f"run{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(reports) == 2
    built = [(o.shard, o.start) for r in reports for o in r.by("built")]
    expected = stream.expected()
    assert sorted(built) == sorted(expected)  # every chunk once, by one run or the other
    assert all(r.exit_code == 0 for r in reports), [r.summary() for r in reports]
    out = Store(cfg.out)
    assert mismatches(out, expected) == []
    # One attempt's files per chunk: nobody published over anybody.
    for shard, start in expected:
        from tailor.format.layout import chunk_dir

        parts = [k for k in out.list(chunk_dir(shard, start) + "/") if k.endswith(".parquet")]
        assert len({k.rsplit("/", 1)[-1].split("-")[1] for k in parts}) == 1, parts


def test_late_point_marks_chunk_stale_and_rebuild_includes_it(
        stream: Stream, dask_client: Any, tmp_path: Path) -> None:
    cfg = stream.cfg(tmp_path / "out")
    assert build_ready(cfg, dask_client).exit_code == 0
    shard_map = load(stream.shards_file)
    raw, out = Store(cfg.raw), Store(cfg.out)
    # Everything is built: status lists the index but reads no record.
    assert load_state(raw, out, shard_map, shard_map.all_shards()).records == []
    # A new point for the first window of an org's shard, arriving much later.
    org = int(stream.synth.pay_org[0])
    shard = shard_map.shard_for(org, T0)
    pts = np.zeros(1, dtype=payload.RECORD_DTYPE)
    pts[0] = (4242, 4343, T0 + 60, 3.25)
    intake = int(stream.synth.pay_intake_ns.max()) + 10**9
    late = SynthRecord(stream.topics[0], 1, str(org).encode(), payload.encode(org, intake, pts),
                       "valid", org, intake, 1)
    send(stream.broker.bootstrap, [late])
    ingest(stream.broker.bootstrap, stream.topics, stream.raw, shards_file=stream.shards_file)
    stream.late.append(((shard, T0), {"org_id": org, "metric_id": 4242, "context_key": 4343,
                                      "ts": T0 + 60, "value": 3.25}))

    st = load_state(raw, out, shard_map, shard_map.all_shards())
    assert [r.points for r in st.records] == [1]  # only the new object's record is read
    rows = {(r.shard, r.start): r for r in chunk_rows(
        shard_map, shard_map.all_shards(), st.records, st.manifests, st.watermarks, length=W,
        grace_s=cfg.grace_s, listing=st.listing)}
    stale = [k for k, r in rows.items() if r.stale]
    assert stale == [(shard, T0)], rows
    assert rows[(shard, T0)].action == "rebuild"
    from click.testing import CliRunner

    from tailor.cli import main

    res = CliRunner().invoke(main, ["status", "--raw", cfg.raw.url, "--out", cfg.out.url,
                                    "--shards", stream.shards_file, "--shard", shard, "--json"])
    assert res.exit_code == 0, res.output
    (chunk,) = [c for c in json.loads(res.output)["shards"][shard]["chunks"] if c["start"] == T0]
    assert chunk["stale"] and chunk["action"] == "rebuild" and len(chunk["late"]) == 1
    assert chunk["late"][0] not in chunk["inputs"]

    rep = build_ready(cfg, dask_client)
    assert [(o.shard, o.start, o.reason, o.status) for o in rep.outcomes] == [
        (shard, T0, "rebuild", "built")], rep.summary()
    got = read_chunk(out, shard, T0)
    hit = (got.org == org) & (got.metric == 4242) & (got.context == 4343) & (got.ts == T0 + 60)
    assert int(hit.sum()) == 1 and float(got.value[hit][0]) == 3.25
    st = load_state(raw, out, shard_map, shard_map.all_shards())
    assert not any(r.stale for r in chunk_rows(
        shard_map, shard_map.all_shards(), st.records, st.manifests, st.watermarks, length=W,
        grace_s=cfg.grace_s, listing=st.listing))


def test_held_lease_is_skipped_expired_one_taken_over_and_cli_exit_codes(
        stream: Stream, dask_client: Any, tmp_path: Path) -> None:
    import time

    from click.testing import CliRunner

    from tailor.cli import main
    from tailor.ops.lease import acquire

    cfg = stream.cfg(tmp_path / "out")
    out = Store(cfg.out)
    chunks = sorted(stream.expected())
    held, expiring = chunks[0], chunks[1]
    assert acquire(out, *held, "someone-else", 3600) is not None
    assert acquire(out, *expiring, "crashed-run", 0.2) is not None
    time.sleep(0.3)
    cli = ["build", "--raw", cfg.raw.url, "--out", cfg.out.url, "--all-shards", "--ready",
           "--shards", stream.shards_file, "--scheduler", dask_client.scheduler.address]
    res = CliRunner().invoke(main, cli)
    assert res.exit_code == 0, res.output
    assert "another run holds its lease" in res.output
    assert f"{len(chunks) - 1} built, 0 failed, 1 skipped" in res.output
    assert out.exists(f"{expiring[0]}/2026-01-01T{(expiring[1] - T0) // HOUR:02d}/_manifest.json")
    assert not out.exists(f"{held[0]}/2026-01-01T{(held[1] - T0) // HOUR:02d}/_manifest.json")


def test_one_failing_chunk_does_not_stop_the_others(
        stream: Stream, dask_client: Any, tmp_path: Path) -> None:
    import shutil

    from click.testing import CliRunner

    from tailor.cli import main

    raw_copy = tmp_path / "raw"
    shutil.copytree(stream.raw.url, raw_copy)
    raw = Store(StoreConfig(url=str(raw_copy)))
    shard_map = load(stream.shards_file)
    st = load_state(raw, Store(StoreConfig(url=str(tmp_path / "out"))), shard_map,
                    shard_map.all_shards())
    rows = chunk_rows(shard_map, shard_map.all_shards(), st.records, {}, [], length=W, grace_s=0)
    # Remove the one raw object of a chunk that has exactly one: that chunk must fail,
    # and so must every other chunk that object holds points of; nothing else.
    victim = next(r for r in rows if r.objects == 1)
    rec = next(rec for rec in st.records
               if victim.shard == rec.shard and rec.points_in(victim.start, W))
    raw.delete([rec.key])
    expected = stream.expected()
    doomed = {(s, w) for s, w in expected if s == rec.shard and rec.points_in(w, W)}
    assert (victim.shard, victim.start) in doomed and len(doomed) < len(expected)
    out = tmp_path / "out"
    cli = ["build", "--raw", str(raw_copy), "--out", str(out), "--all-shards",
           "--ready", "--shards", stream.shards_file, "--scheduler",
           dask_client.scheduler.address]
    res = CliRunner().invoke(main, cli)
    assert res.exit_code == 1, res.output
    failed = [ln for ln in res.output.splitlines() if ln.startswith("failed")]
    assert len(failed) == len(doomed) and all(victim.shard in ln for ln in failed), res.output
    assert any(rec.key.rsplit("/", 1)[-1] in ln or "FileNotFound" in ln
               or "not found" in ln.lower() for ln in failed), res.output
    built = [ln for ln in res.output.splitlines() if ln.startswith("built")]
    assert len(built) == len(expected) - len(doomed), res.output
    # every other chunk is built and equals the oracle; the failed ones are not published
    others = {k: t for k, t in expected.items() if k not in doomed}
    store = Store(StoreConfig(url=str(out)))
    assert mismatches(store, others) == []
    assert not any(store.exists(f"{s}/{stamp(w)}/_manifest.json") for s, w in doomed)


def test_status_skips_folders_that_are_not_chunks(tmp_path: Path) -> None:
    from tailor.ops.state import load_manifests

    out = Store(StoreConfig(url=str(tmp_path / "out")))
    out.put("org-mod-0/notes/_manifest.json", b"{}")  # not a window stamp: readers skip it
    assert load_manifests(out, ["org-mod-0"]) == {}
