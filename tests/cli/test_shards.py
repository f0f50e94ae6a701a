"""`tailor shards report|plan` on a local raw store of hand-written index records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tailor.cli import main
from tailor.config import StoreConfig
from tailor.format.layout import HOUR, index_key, stamp
from tailor.format.records import ObjectRecord
from tailor.shards import Dedicated, load
from tailor.storage import Store

T0 = 1767225600  # 2026-01-01T00
W = 4 * HOUR


def put_record(raw: Path | StoreConfig, shard: str, batch: str,
               org_hour_points: dict[tuple[int, int], int], *, old_format: bool = False) -> None:
    """One object's index record, under every hour it holds points of."""
    orgs = sorted({o for o, _ in org_hour_points})
    hours: dict[str, int] = {}
    for (_, h), n in org_hour_points.items():
        hours[stamp(h)] = hours.get(stamp(h), 0) + n
    pts = sum(org_hour_points.values())
    rec = ObjectRecord(
        key=f"objects/0000/{shard}/{batch}.tlr", shard=shard, batch_id=batch, bytes=10 * pts,
        payloads=len(orgs), points=pts, min_ts=min(h for _, h in org_hour_points),
        max_ts=max(h for _, h in org_hour_points) + HOUR - 1, min_intake_ns=1, max_intake_ns=2,
        topics=["t"], offsets=[], orgs=orgs, hours=hours, written_ns=3,
        org_points=[] if old_format else [sum(n for (o, _), n in org_hour_points.items()
                                              if o == org) for org in orgs],
        org_bytes=[] if old_format else [10 * sum(n for (o, _), n in org_hour_points.items()
                                                  if o == org) for org in orgs],
        org_hours=[] if old_format else [(o, h, n) for (o, h), n in org_hour_points.items()])
    store = Store(raw if isinstance(raw, StoreConfig) else StoreConfig(url=str(raw)))
    for h in {h for _, h in org_hour_points}:
        store.put(index_key(shard, h, batch), rec.dumps())


def fill(root: Path | StoreConfig) -> None:
    """Shared shards 2: org 2 big, orgs 4 and 6 small in org-mod-0, org 3 in org-mod-1;
    two windows; the org-mod-1 records in the old format."""
    for w in (T0, T0 + W):
        put_record(root, "org-mod-0", f"a{w}", {(2, w): 900, (4, w): 60, (2, w + HOUR): 100,
                                                (6, w + 2 * HOUR): 40})
        put_record(root, "org-mod-1", f"b{w}", {(3, w): 200, (3, w + 3 * HOUR): 100},
                   old_format=True)


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    fill(tmp_path / "raw")
    (tmp_path / "shards.yaml").write_text("shared_shards: 2\n")
    return tmp_path / "raw"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args), env=env)
    return res.exit_code, res.output


def test_report_table_json_and_gauges(raw: Path, tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    code, out = run("shards", "report", "--raw", str(raw), "--shards",
                    str(tmp_path / "shards.yaml"), "--from", "2026-01-01T00", "--to",
                    "2026-01-01T08", "--json", "--metrics-file", str(prom))
    assert code == 0, out
    doc = json.loads(out)
    assert doc["objects"] == 4 and doc["windows"] == ["2026-01-01T00", "2026-01-01T04"]
    s0, s1 = doc["shards"]["org-mod-0"], doc["shards"]["org-mod-1"]
    assert (s0["chunks"], s0["max"], s0["total"]) == (2, 1100, 2200)
    assert [(t["org"], t["share"]) for t in s0["top_orgs"]] == [(2, 0.9091), (4, 0.0545),
                                                                (6, 0.0364)]
    assert (s1["max"], s1["top_orgs"][0]["share"]) == (300, 1.0)  # old records: estimated
    assert [(w["max"], w["largest_shard"], w["skew"]) for w in doc["per_window"]] == [
        (1100, "org-mod-0", 3.667)] * 2
    gauges = {(m.name, s.labels["window"]): s.value
              for m in text_string_to_metric_families(prom.read_text()) for s in m.samples}
    assert gauges == {("tailor_shards_largest_chunk_points", "2026-01-01T00"): 1100,
                      ("tailor_shards_largest_chunk_points", "2026-01-01T04"): 1100,
                      ("tailor_shards_chunk_skew", "2026-01-01T00"): 3.667,
                      ("tailor_shards_chunk_skew", "2026-01-01T04"): 3.667}
    # Flags from the environment and a config file, as for every command.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"shards: {tmp_path / 'shards.yaml'}\nfrom: 2026-01-01T04\n")
    code, out = run("shards", "report", "--config", str(cfg), "--to", "2026-01-01T08",
                    env={"TAILOR_RAW": str(raw)})
    assert code == 0, out
    assert "2026-01-01T04..2026-01-01T08 (1 window(s) of 4 h)" in out
    assert "org-mod-0  1       1100" in out and "2 91%, 4 5%, 6 4%" in out


def test_plan_writes_a_file_every_command_accepts(raw: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "next.yaml"
    base = ["shards", "plan", "--raw", str(raw), "--shards", str(tmp_path / "shards.yaml"),
            "--from", "2026-01-01T00", "--to", "2026-01-01T08", "--target-chunk-points", "500"]
    code, out = run(*base, "--out", str(out_file), "--since", "2026-01-01T08",
                    "--output-root", str(tmp_path / "s"))
    assert code == 0, out
    assert "dedicate  2    org-mod-0  org-2" in out and "after:  6 chunk(s)" in out
    assert "note: org 2 alone has up to 1000 points" in out
    shard_map = load(out_file)
    assert shard_map.dedicated == {2: Dedicated(2, T0 + 2 * W)}
    assert "# Proposed by `tailor shards plan`" in out_file.read_text()
    code, out = run("status", "--raw", str(raw), "--out", str(tmp_path / "s"), "--shards",
                    str(out_file))
    assert code == 0 and "moved: org 2 out (to org-2, dedicated 2026-01-01T08:00:00Z..)" in out
    # Without --since: the next window boundary after now; TAILOR_OUT (the output root of
    # the other commands) is not the plan's file.
    code, out = run(*base, "--json", env={"TAILOR_OUT": str(tmp_path / "nope"),
                                         "TAILOR_PLAN_OUT": str(out_file)})
    assert code == 0, out
    assert json.loads(out)["since"] > T0 + 300 * 86400 and not (tmp_path / "nope").exists()
    # In a config file too: `out` is the output root, the plan's file is `plan-out`.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'nope'}\nplan-out: {tmp_path / 'cfg.yaml'}\n")
    code, out = run(*base, "--config", str(cfg))
    assert code == 0, out
    assert load(tmp_path / "cfg.yaml") == load(out_file) and not (tmp_path / "nope").exists()


@pytest.mark.parametrize(("flags", "named"), [
    (["--target-chunk-points", "0"], "0"),
    (["--since", "2026-01-01T09"], "2026-01-01T09"),  # not a window boundary
    (["--since", "2026-01-01T04"], "2026-01-01T04"),  # before the end of what is observed
    (["--since", "2026-01-01T08"], "--output-root"),  # in the past: built windows unknown
    (["--shared-shards", "8"], "--for-new-store"),
    (["--max-moves", "-1"], "-1"),
    (["--return-below", "1"], "1"),
    (["--from", "2026-01-01T08", "--to", "2026-01-01T04"], "2026-01-01T08"),
    (["--from", "2026-02-01T00", "--to", "2026-02-01T08"], "no indexed points"),
    (["--from", "yesterday"], "yesterday"),
])
def test_bad_plan_flags_exit_2_naming_the_value(raw: Path, tmp_path: Path, flags: list[str],
                                                named: str) -> None:
    base = ["shards", "plan", "--raw", str(raw), "--shards", str(tmp_path / "shards.yaml"),
            "--out", str(tmp_path / "next.yaml"), "--from", "2026-01-01T00", "--to",
            "2026-01-01T08", "--target-chunk-points", "500"]
    code, out = run(*base, *flags)
    assert code == 2 and named in out, out
    assert not (tmp_path / "next.yaml").exists()


def test_report_and_plan_on_s3(raw_store: StoreConfig, out_store: StoreConfig,
                               tmp_path: Path) -> None:
    fill(raw_store)
    (tmp_path / "shards.yaml").write_text("shared_shards: 2\n")
    ep = ["--s3-endpoint-url", str(raw_store.s3_endpoint_url), "--shards",
          str(tmp_path / "shards.yaml")]
    rng = ["--from", "2026-01-01T00", "--to", "2026-01-01T08"]
    code, out = run("shards", "report", "--raw", raw_store.url, *ep, *rng, "--json")
    assert code == 0, out
    assert json.loads(out)["all"]["max"] == 1100
    Store(out_store).put("org-mod-1/2026-01-01T08/_manifest.json", b"{}")  # built: T08
    code, out = run("shards", "plan", "--raw", raw_store.url, *ep, *rng, "--since",
                    "2026-01-01T08", "--target-chunk-points", "500", "--output-root",
                    out_store.url, "--out", str(tmp_path / "p.yaml"))
    assert code == 2 and "2026-01-01T12" in out, out  # after what is built
    code, out = run("shards", "plan", "--raw", raw_store.url, *ep, *rng, "--since",
                    "2026-01-01T12", "--target-chunk-points", "500", "--output-root",
                    out_store.url, "--out", str(tmp_path / "p.yaml"), "--json")
    assert code == 0, out
    assert [m["org"] for m in json.loads(out)["moves"]] == [2]
    assert load(tmp_path / "p.yaml").dedicated == {2: Dedicated(2, T0 + 3 * W)}
