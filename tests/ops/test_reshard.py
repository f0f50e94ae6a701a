"""Resharding: an org moves to its own shard at a cutover in the middle of a window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tailor.cli import main
from tailor.format.layout import HOUR
from tailor.ops.diff import read_chunk
from tailor.ops.ready import build_ready
from tailor.storage import Store
from tailor.testing.services import Broker
from tests.ops.test_ready import T0, Stream
from tests.pipeline import mismatches

CUT = T0 + 2 * HOUR + 1234  # mid-window, not on an hour


def test_cutover_mid_window_matches_oracle_and_status_shows_the_move(
        broker: Broker, dask_client: Any, tmp_path: Path) -> None:
    st = Stream(broker, tmp_path, cutover=CUT)
    org = st.moved
    assert org is not None
    shared = f"org-mod-{org % 2}"
    expected = st.synth.expected()
    # The oracle splits the org's first window at the cutover: both chunks hold some of it.
    assert (f"org-{org}", T0) in expected and (shared, T0) in expected
    cfg = st.cfg(tmp_path / "out")
    rep = build_ready(cfg, dask_client)
    assert rep.exit_code == 0, rep.summary()
    out = Store(cfg.out)
    assert mismatches(out, expected) == []
    before = read_chunk(out, shared, T0)
    after = read_chunk(out, f"org-{org}", T0)
    assert ((before.org == org) & (before.ts < CUT)).sum() > 0
    assert ((before.org == org) & (before.ts >= CUT)).sum() == 0
    assert ((after.org == org) & (after.ts >= CUT)).sum() > 0
    assert (after.ts >= CUT).all() and (after.org == org).all()

    runner = CliRunner()
    base = ["status", "--raw", cfg.raw.url, "--out", cfg.out.url, "--shards", st.shards_file]
    res = runner.invoke(main, [*base, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    (mv,) = doc["shards"][shared]["moves"]
    assert (mv["org"], mv["direction"], mv["other"], mv["since"]) == (org, "out", f"org-{org}",
                                                                      CUT)
    (mv,) = doc["shards"][f"org-{org}"]["moves"]
    assert (mv["direction"], mv["other"]) == ("in", shared)
    rows = [c for s in doc["shards"].values() for c in s["chunks"]]
    assert rows and all(c["built"] and c["ready"] and not c["stale"] for c in rows)
    assert doc["watermark_ns"] is not None and len(doc["partitions"]) == 8
    res = runner.invoke(main, base)
    assert res.exit_code == 0, res.output
    assert f"moved: org {org} out (to org-{org}, dedicated 2026-01-01T02:20:34Z..)" in res.output
    assert f"moved: org {org} in (from {shared}" in res.output
