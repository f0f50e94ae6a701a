"""`tailor shards report` → `plan` → apply, end to end on real components (issue 13).

A skewed stream's first window is ingested and built with 4 shared shards;
the plan (from the index alone) dedicates the orgs that make chunks too big
from the next window on; the second window is ingested and built with the
planned file.  Both windows equal the oracle row for row through an outside
reader, nothing built before the cutover moves, every series reads through
the cutover, and the second window's chunks meet the target.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

import tailor
from tailor.cli import main
from tailor.config import BuildConfig, ProduceConfig, StoreConfig
from tailor.format.layout import HOUR, chunk_dir
from tailor.ops.ready import build_ready
from tailor.shards import Dedicated, load
from tailor.testing.oracle import oracle
from tailor.testing.services import Broker, create_topics
from tailor.testing.stream import generate
from tests.contract import read_chunk
from tests.pipeline import ingest, send

T0 = 1767225600  # 2026-01-01T00
W = 4 * HOUR
TARGET = 2200  # seed 2: org-mod-0 and org-mod-2 exceed it, no org alone does


def _cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def _build(raw: StoreConfig, out: Path, shards_file: str, client: Any) -> list[tuple[str, int]]:
    cfg = BuildConfig(raw=raw, out=StoreConfig(url=str(out)),
                      shards=load(shards_file).all_shards(), windows=[],
                      shards_file=shards_file, ready=True, grace_s=0)
    rep = build_ready(cfg, client)
    assert rep.exit_code == 0, rep.summary()
    return sorted((o.shard, o.start) for o in rep.by("built"))


def test_report_plan_apply_meets_the_target_and_moves_nothing_built(
        broker: Broker, dask_client: Any, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = [f"plan-{tag}-0", f"plan-{tag}-1"]
    asyncio.run(create_topics(broker.bootstrap, topics, 4))
    old, new = tmp_path / "shards.yaml", tmp_path / "shards.next.yaml"
    old.write_text("shared_shards: 4\n")
    raw = StoreConfig(url=str(tmp_path / "raw"))
    out = tmp_path / "out"

    def stream(start: int) -> Any:  # the same orgs and series, 4 h of point time from start
        return generate(ProduceConfig(brokers=broker.bootstrap, topics=topics, partitions=4,
                                      points=6000, orgs=12, hours=4, seed=2, start=start,
                                      shards_file=str(old)))

    first, second = stream(T0), stream(T0 + W)
    send(broker.bootstrap, first.records)
    ingest(broker.bootstrap, topics, raw, shards_file=str(old))
    assert _build(raw, out, str(old), dask_client) == sorted(first.expected())

    # -- report: from the index alone, an upper bound of what the build published
    rng = ["--from", "2026-01-01T00", "--to", "2026-01-01T04"]
    doc = json.loads(_cli("shards", "report", "--raw", raw.url, "--shards", str(old), *rng,
                          "--json"))
    # Every stored payload counts (a duplicate delivery is stored twice): exactly these.
    stored: dict[str, int] = {}
    for r in first.records:
        if r.kind in ("valid", "duplicate"):
            assert r.org_id is not None and r.n_points is not None
            stored[f"org-mod-{r.org_id % 4}"] = stored.get(f"org-mod-{r.org_id % 4}", 0) \
                + r.n_points
    assert {s: r["max"] for s, r in doc["shards"].items()} == stored
    for (s, _), t in first.expected().items():
        assert t.num_rows <= stored[s]
    assert doc["all"]["max"] > TARGET and doc["per_window"][0]["largest_shard"] == "org-mod-2"
    print(_cli("shards", "report", "--raw", raw.url, "--shards", str(old), *rng))

    # -- plan: a cutover before the end of what is built is refused
    base = ["shards", "plan", "--raw", raw.url, "--shards", str(old), *rng,
            "--target-chunk-points", str(TARGET), "--output-root", str(out), "--out", str(new)]
    res = CliRunner().invoke(main, [*base, "--since", "2026-01-01T00"])
    assert res.exit_code == 2 and "2026-01-01T00" in res.output and "built" in res.output
    text = _cli(*base, "--since", "2026-01-01T04")
    print(text)
    assert "after:" in text and "GOAL NOT REACHED" not in text
    planned = json.loads(_cli(*base, "--since", "2026-01-01T04", "--json"))
    assert planned["reached"] and planned["minimal"] and planned["before"]["max"] > TARGET
    assert planned["after"]["max"] <= TARGET
    moved = sorted(m["org"] for m in planned["moves"])
    assert len(moved) == 2 and all(m["kind"] == "dedicate" for m in planned["moves"])
    shard_map = load(new)  # the written file is accepted as it is
    assert shard_map.shared_shards == 4
    assert shard_map.dedicated == {o: Dedicated(o, T0 + W) for o in moved}
    # Planning again on the planned file proposes nothing.
    again = json.loads(_cli("shards", "plan", "--raw", raw.url, "--shards", str(new), *rng,
                            "--target-chunk-points", str(TARGET), "--output-root", str(out),
                            "--since", "2026-01-01T04", "--out", str(tmp_path / "x.yaml"),
                            "--json"))
    assert again["moves"] == [] and load(tmp_path / "x.yaml") == shard_map

    # -- apply: ingest and build the next window with the planned file
    send(broker.bootstrap, second.records)
    ingest(broker.bootstrap, topics, raw, shards_file=str(new))
    later = _build(raw, out, str(new), dask_client)
    assert later and all(w == T0 + W for _, w in later)  # nothing built before moved
    assert {f"org-{o}" for o in moved} <= {s for s, _ in later}

    union = [np.concatenate([a, b]) for a, b in zip(
        (first.points, first.pay_org, first.pay_intake_ns, first.pay_n),
        (second.points, second.pay_org, second.pay_intake_ns, second.pay_n), strict=True)]
    keys = set(zip(union[1].tolist(), union[2].tolist(), strict=True))
    assert len(keys) == len(union[1])  # intake_ns unique per org, as the contract says
    expected = oracle(*union, shard_map, W)
    assert {k for k in expected if k[1] == T0} == set(first.expected())
    fs = fsspec.filesystem("file")
    for (shard, start), want in sorted(expected.items()):
        got = read_chunk(fs, str(out / chunk_dir(shard, start)))
        assert got.equals(want.cast(got.schema)), (shard, start)
    for (shard, start), want in expected.items():
        if start == T0 + W:
            assert want.num_rows <= TARGET, (shard, want.num_rows)
    # Every series of a moved org reads through the cutover: both windows, both shards.
    for org in moved:
        pts = expected[(f"org-mod-{org % 4}", T0)]
        metric = pts.filter(pc.equal(pts["org_id"], org))["metric_id"][0].as_py()
        got = tailor.read_series(str(out), org=org, metric=metric, shards_file=str(new))
        want = pa.concat_tables([
            t.filter(pc.and_(pc.equal(t["org_id"], org),
                             pc.equal(t["metric_id"], pa.scalar(metric, pa.uint64()))))
            for (s, _), t in sorted(expected.items(), key=lambda kv: kv[0][1])
            if s in (f"org-{org}", f"org-mod-{org % 4}")]).sort_by(
                [("context_key", "ascending"), ("ts", "ascending")])
        assert got.equals(want.cast(got.schema))
        assert min(got["ts"].to_pylist()) < T0 + W <= max(got["ts"].to_pylist())
    st = json.loads(_cli("status", "--raw", raw.url, "--out", str(out), "--shards", str(new),
                         "--grace", "0s", "--json"))
    chunks = [c for s in st["shards"].values() for c in s["chunks"]]
    assert len(chunks) == len(expected) and all(c["built"] and not c["stale"] for c in chunks)

    # -- report on both windows with the applied file, and its gauges
    prom = tmp_path / "shards.prom"
    both = ["--from", "2026-01-01T00", "--to", "2026-01-01T08"]
    doc = json.loads(_cli("shards", "report", "--raw", raw.url, "--shards", str(new), *both,
                          "--metrics-file", str(prom), "--json"))
    w0, w1 = doc["per_window"]
    assert w0["max"] > TARGET >= w1["max"] and w1["chunks"] == w0["chunks"] + 2
    print(_cli("shards", "report", "--raw", raw.url, "--shards", str(new), *both))
    gauges = {(m.name, s.labels["window"]): s.value
              for m in text_string_to_metric_families(prom.read_text()) for s in m.samples}
    assert gauges[("tailor_shards_largest_chunk_points", "2026-01-01T04")] == w1["max"]
    assert gauges[("tailor_shards_chunk_skew", "2026-01-01T00")] == w0["skew"]
