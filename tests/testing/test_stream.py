"""tailor.testing.stream and .oracle: reproducible, realistic, exactly sized, and an
oracle that agrees with a brute-force pure-Python reference."""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import zstandard

from tailor.config import ProduceConfig
from tailor.errors import InvalidPayload
from tailor.format import payload
from tailor.shards import load as load_shards
from tailor.testing.oracle import POINT_SCHEMA, load_expected
from tailor.testing.stream import DUPLICATE, VALID, Synth, SynthRecord, generate


def cfg(points: int = 3000, **kw: object) -> ProduceConfig:
    base: dict[str, object] = {"brokers": "127.0.0.1:1", "topics": ["a", "b"], "points": points,
                               "seed": 7, "orgs": 40}
    base.update(kw)
    return ProduceConfig.model_validate(base)


@pytest.fixture(scope="module")
def small() -> Synth:
    return generate(cfg())


@pytest.fixture(scope="module")
def medium() -> Synth:
    return generate(cfg(100_000, orgs=300, seed=11))


def reason(r: SynthRecord) -> str:
    try:
        payload.validate(r.key, r.value)
    except InvalidPayload as exc:
        return exc.reason
    return VALID


def test_reproducible_by_seed() -> None:
    a, b = generate(cfg(seed=3)), generate(cfg(seed=3))
    assert a.records == b.records
    c = generate(cfg(seed=4))
    assert [r.value for r in a.records] != [r.value for r in c.records]


@pytest.mark.parametrize("points", [1, 7, 999, 3000])
def test_points_exact(points: int) -> None:
    s = generate(cfg(points))
    valid = [r for r in s.records if r.kind == VALID]
    assert sum(r.n_points or 0 for r in valid) == points == int(s.pay_n.sum())
    assert sum(payload.validate(r.key, r.value).n_points for r in valid) == points


def test_every_record_validates_to_its_kind(small: Synth) -> None:
    counts = small.kind_counts()
    assert all(counts[k] >= 1 for k in payload.REASONS), counts
    assert counts[payload.TOO_LARGE] >= 2
    for r in small.records:
        want = VALID if r.kind == DUPLICATE else r.kind
        assert reason(r) == want, r


def test_too_large_both_forms_small_on_the_wire(small: Synth) -> None:
    big = [r for r in small.records if r.kind == payload.TOO_LARGE]
    declared = {zstandard.frame_content_size(r.value or b"") > payload.MAX_DECOMPRESSED
                for r in big}
    assert declared == {True, False}
    assert all(len(r.value or b"") < 64 * 1024 for r in big)


def test_invalid_rate_zero_and_rate_followed() -> None:
    s0 = generate(cfg(invalid_rate=0.0))
    assert all(r.kind in (VALID, DUPLICATE) for r in s0.records)
    s = generate(cfg(50_000, invalid_rate=0.1))
    inv = sum(s.kind_counts()[k] for k in payload.REASONS)
    assert 0.08 < inv / len(s.records) < 0.12


def test_frames_keys_and_duplicates(medium: Synth) -> None:
    valid = [r for r in medium.records if r.kind == VALID]
    forms = {(zstandard.get_frame_parameters(r.value or b"").has_checksum,
              zstandard.frame_content_size(r.value or b"") >= 0) for r in valid}
    assert forms == {(a, b) for a in (False, True) for b in (False, True)}
    assert any((r.key or b"").startswith(b"0") for r in valid)  # leading zeros are valid
    seen: dict[bytes, int] = {}
    for i, r in enumerate(medium.records):
        if r.kind == VALID:
            seen[r.value or b""] = i
        elif r.kind == DUPLICATE:
            assert (r.value or b"") in seen  # an exact re-delivery of an earlier record
    assert medium.kind_counts()[DUPLICATE] >= 10
    assert any(r.kind == DUPLICATE and (r.topic, r.partition) != next(
        (v.topic, v.partition) for v in valid if v.value == r.value) for r in medium.records)


def test_intake_ns_unique_and_increasing_per_org(medium: Synth) -> None:
    last: dict[int, int] = {}
    for r in medium.records:
        if r.kind == VALID:
            assert r.org_id is not None and r.intake_ns is not None
            assert r.intake_ns > last.get(r.org_id, -1)
            last[r.org_id] = r.intake_ns


def test_realistic_shape(medium: Synth) -> None:
    s = medium
    assert int(s.pay_n.sum()) == s.cfg.points == 100_000  # exact at size too
    orgs = np.repeat(s.pay_org, s.pay_n)
    per_org = np.sort(np.bincount(np.unique(orgs, return_inverse=True)[1]))[::-1]
    assert len(per_org) == 300
    assert per_org[:30].sum() > 0.5 * per_org.sum()  # a few orgs hold most points
    assert (s.pay_org >= 2**31).any() and (s.pay_org < 10_000).any()
    assert (s.points["metric_id"] >= 2**63).any() and (s.points["context_key"] >= 2**63).any()
    ts = s.points["ts"]
    assert ts.min() >= s.cfg.start and ts.max() < s.cfg.start + s.cfg.hours * 3600
    v = s.points["value"]
    assert np.isnan(v).any() and np.isposinf(v).any() and np.isneginf(v).any()
    intake_s = np.repeat(s.pay_intake_ns, s.pay_n) // 10**9
    assert (intake_s >= ts).all()
    assert ((intake_s - ts) > 3600).sum() > 100  # late points
    assert np.median(s.pay_n) >= 10 and s.pay_n.max() <= 20_000
    # an org's data lands on every partition of every topic
    top = int(s.pay_org[np.argmax(s.pay_n)])
    places = {(r.topic, r.partition) for r in s.records if r.org_id == top}
    assert len(places) == len(s.cfg.topics) * s.cfg.partitions


def brute_force(s: Synth) -> dict[tuple[str, int], list[tuple[int, int, int, int, int]]]:
    """Pure-Python reference: decode every valid record, keep the winner per point."""
    shard_map = load_shards(s.cfg.shards_file)
    best: dict[tuple[int, int, int, int], tuple[tuple[int, int], int]] = {}
    for r in s.records:
        if r.kind != VALID:
            continue
        p = payload.validate(r.key, r.value)
        for i, (m, c, t, v) in enumerate(p.points().tolist()):
            k = (p.org_id, m, c, t)
            rank = (p.intake_ns, i)
            bits = int(np.float64(v).view(np.uint64))
            if k not in best or best[k][0] < rank:
                best[k] = (rank, bits)
    out: dict[tuple[str, int], list[tuple[int, int, int, int, int]]] = defaultdict(list)
    for (o, m, c, t), (_, bits) in sorted(best.items()):
        w = t - t % s.cfg.window_seconds
        out[(shard_map.shard_for(o, t), w)].append((o, m, c, t, bits))
    return out


def rows(table: pa.Table) -> list[tuple[int, int, int, int, int]]:
    vals = table.column("value").to_numpy().view(np.uint64).tolist()
    cols = [table.column(n).to_pylist() for n in ("org_id", "metric_id", "context_key", "ts")]
    return list(zip(*cols, vals, strict=True))


def test_oracle_matches_brute_force(small: Synth) -> None:
    exp = small.expected()
    ref = brute_force(small)
    assert sorted(exp) == sorted(ref)
    for k, t in exp.items():
        assert t.schema == POINT_SCHEMA
        assert rows(t) == ref[k], k
    assert sum(t.num_rows for t in exp.values()) == small.summary()["unique_points"]


def test_resent_points_later_value_wins(medium: Synth) -> None:
    """Every re-sent point is kept once, with the bits of the copy of the largest
    (intake_ns, index): read from the records themselves, not from the oracle."""
    copies: dict[tuple[int, int, int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for r in medium.records:
        if r.kind != VALID:
            continue
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(r.value or b"")
        org, intake, n = struct.unpack_from("<IQI", raw, 4)
        pts = np.frombuffer(raw, payload.RECORD_DTYPE, n, 24)
        bits = pts["value"].view(np.uint64).tolist()
        for i, (m, c, t) in enumerate(zip(pts["metric_id"].tolist(), pts["context_key"].tolist(),
                                          pts["ts"].tolist(), strict=True)):
            copies[(org, m, c, t)].append((intake, i, bits[i]))
    resent = {k: sorted(v) for k, v in copies.items() if len(v) > 1}
    assert len(resent) == medium.stats["resent_points"] == 500
    kept: dict[tuple[int, int, int, int], int] = {}
    for t in medium.expected().values():
        cols = [t.column(n).to_pylist() for n in ("org_id", "metric_id", "context_key", "ts")]
        for k, v in zip(zip(*cols, strict=True), t.column("value").to_numpy().view(np.uint64),
                        strict=True):
            assert k not in kept, k
            kept[k] = int(v)
    assert len(kept) == len(copies) == medium.cfg.points - 500
    for k, v in resent.items():
        assert v[0][2] != v[-1][2], k  # the copies differ: the check can tell them apart
        assert kept[k] == v[-1][2], (k, v)
    assert any(v[-1][0] == v[0][0] for v in resent.values())  # in one payload: index decides


def test_dedicated_org_moves_at_cutover(tmp_path: Path) -> None:
    base = generate(cfg(20_000, seed=5))
    orgs, inv = np.unique(base.pay_org, return_inverse=True)
    org = int(orgs[np.argmax(np.bincount(inv, weights=base.pay_n))])  # the biggest org
    since = base.cfg.start + 3 * 3600 + 1234
    f = tmp_path / "shards.yaml"
    f.write_text(f"shared_shards: 8\ndedicated:\n  - org: {org}\n    since: {since}\n")
    s = generate(cfg(20_000, seed=5, shards_file=str(f)))
    assert s.records == base.records  # sharding only affects the oracle
    exp = s.expected()
    ded = [t for (sh, _), t in exp.items() if sh == f"org-{org}"]
    mod = [t.filter(pc.equal(t.column("org_id"), org))
           for (sh, _), t in exp.items() if sh == f"org-mod-{org % 8}"]
    assert ded and mod
    assert min(int(pc.min(t.column("ts")).as_py()) for t in ded) >= since
    assert max(int(pc.max(t.column("ts")).as_py()) for t in mod if t.num_rows) < since
    assert sorted(exp) == sorted(brute_force(s))


def test_write_and_load_expected(small: Synth, tmp_path: Path) -> None:
    offsets = list(range(len(small.records)))
    small.write_expected(tmp_path, offsets)
    got = load_expected(tmp_path)
    exp = small.expected()
    assert sorted(got.chunks) == sorted(exp)
    for k in exp:
        assert rows(got.chunks[k]) == rows(exp[k])
    assert got.summary["points"] == small.cfg.points
    assert got.summary["records"] == len(small.records)
    assert got.summary["invalid"] == {k: small.kind_counts()[k] for k in payload.REASONS}
    assert got.payloads is not None and got.payloads.num_rows == len(small.records)
    assert got.payloads.column("kind").to_pylist() == [r.kind for r in small.records]
    assert (tmp_path / "points").is_dir()
