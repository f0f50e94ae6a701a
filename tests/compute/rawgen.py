"""Write raw objects + index records directly (as ingest would), and an oracle.

The oracle (:func:`expected`) is plain Python over the generated payloads, so
it shares no code with the build.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import numpy as np

from tailor.format import framing, layout, payload
from tailor.format.records import ObjectRecord, OffsetRange, hour_counts
from tailor.shards import ShardMap
from tailor.storage import Store

T0 = 1767225600  # 2026-01-01T00:00:00Z
W = layout.WINDOW_SECONDS


@dataclass(frozen=True)
class Gen:
    org: int
    intake_ns: int
    points: np.ndarray  # RECORD_DTYPE


def make_points(rng: np.random.Generator, n: int, *, series: list[tuple[int, int]],
                ts_lo: int, ts_hi: int) -> np.ndarray:
    pts = np.empty(n, payload.RECORD_DTYPE)
    pick = rng.integers(0, len(series), n)
    pts["metric_id"] = np.array([series[i][0] for i in pick], np.uint64)
    pts["context_key"] = np.array([series[i][1] for i in pick], np.uint64)
    pts["ts"] = rng.integers(ts_lo, ts_hi, n).astype(np.uint32)
    pts["value"] = rng.standard_normal(n)
    return pts


def mixed_payloads(seed: int = 1, *, n_payloads: int = 60, orgs: tuple[int, ...] = (7, 71, 135),
                   per_payload: int = 50) -> list[Gen]:
    """Payloads over 3 windows with edge cases: ids >= 2**63, NaN/inf, window
    edges, re-sent points (new intake_ns), repeated points inside a payload."""
    rng = np.random.default_rng(seed)
    series = [(int(rng.integers(0, 2**64, dtype=np.uint64)), int(rng.integers(0, 2**64,
              dtype=np.uint64))) for _ in range(12)] + [(2**64 - 1, 2**63), (0, 0), (2**63, 1)]
    out: list[Gen] = []
    intake = 1_767_300_000_000_000_000
    for i in range(n_payloads):
        org = orgs[i % len(orgs)]
        pts = make_points(rng, per_payload, series=series, ts_lo=T0 - 600, ts_hi=T0 + 2 * W + 600)
        pts["ts"][:4] = [T0, T0 + W - 1, T0 + W, T0 - 1]
        pts["value"][4:8] = [math.nan, math.inf, -math.inf, -0.0]
        pts[9] = pts[8]  # the same point twice in one payload: the later index wins
        pts["value"][9] = 42.0
        intake += int(rng.integers(1, 1000))
        out.append(Gen(org, intake, pts))
    # re-sent: an older payload's points again, later intake and new values
    for g in out[:10]:
        p2 = g.points.copy()
        p2["value"] = p2["value"] + 1.5
        intake += 7
        out.append(Gen(g.org, intake, p2))
    # a re-sent payload with an *older* intake_ns than the original (loses)
    g = out[len(out) // 2]
    p3 = g.points.copy()
    p3["value"] = -999.0
    out.append(Gen(g.org, g.intake_ns - 1_000_000_000, p3))
    return out


def nan_payload_bits() -> Gen:
    """A payload whose values are NaNs with distinct payload bits."""
    pts = np.zeros(3, payload.RECORD_DTYPE)
    pts["metric_id"] = 5
    pts["context_key"] = [1, 2, 3]
    pts["ts"] = T0 + 10
    bits = np.array([0x7FF8000000000001, 0xFFF0000000000002, 0x7FF00000000000FF], np.uint64)
    pts["value"] = bits.view(np.float64)
    return Gen(7, 1_767_400_000_000_000_000, pts)


def frame_of(g: Gen, offset: int, *, checksum: bool = True) -> bytes:
    body = payload.encode(g.org, g.intake_ns, g.points, checksum=checksum,
                          content_size=offset % 2 == 0)
    return framing.encode_frame(body, raw_len=payload.HEADER_SIZE + 28 * len(g.points),
                                org_id=g.org, n_points=len(g.points), intake_ns=g.intake_ns,
                                offset=offset, partition=0)


def write_object(store: Store, shard: str, gens: list[Gen], *, corrupt: list[int] | None = None,
                 junk: list[bytes] | None = None, batch_id: str | None = None) -> tuple[str, bytes]:
    """Write one raw object of ``gens`` (+ its index records); returns (key, bytes).

    ``corrupt``: indexes of frames whose body gets one flipped byte.
    ``junk``: bytes inserted between frames (one item after each frame, if given).
    """
    batch = batch_id or uuid.uuid4().hex
    frames = []
    for i, g in enumerate(gens):
        f = bytearray(frame_of(g, i))
        if corrupt and i in corrupt:
            f[framing.HEADER_SIZE + 3] ^= 0xFF
        frames.append(bytes(f))
        if junk is not None and i < len(junk):
            frames.append(junk[i])
    data = b"".join(frames)
    key = layout.object_key(shard, batch)
    store.put(key, data)
    hrs: dict[int, int] = {}
    for g in gens:
        for t in g.points["ts"]:
            h = int(t) - int(t) % 3600
            hrs[h] = hrs.get(h, 0) + 1
    ts_all = np.concatenate([g.points["ts"] for g in gens])
    rec = ObjectRecord(
        key=key, shard=shard, batch_id=batch, bytes=len(data), payloads=len(gens),
        points=int(sum(len(g.points) for g in gens)), min_ts=int(ts_all.min()),
        max_ts=int(ts_all.max()), min_intake_ns=min(g.intake_ns for g in gens),
        max_intake_ns=max(g.intake_ns for g in gens), topics=["t"],
        offsets=[OffsetRange(topic="t", partition=0, first=0, last=len(gens) - 1)],
        orgs=sorted({g.org for g in gens}), hours=hour_counts(hrs), written_ns=1)
    for h in rec.hour_starts():
        store.put(layout.index_key(shard, h, batch), rec.dumps())
    return key, data


def expected(gens: list[Gen], shard: str, shard_map: ShardMap, start: int,
             length: int = W) -> list[tuple[int, int, int, int, int]]:
    """Oracle rows ``(org, metric, ctx, ts, value_bits)`` sorted, with the winner rule.

    ``gens`` may hold the same payload several times (duplicate delivery).
    """
    best: dict[tuple[int, int, int, int], tuple[int, int, int]] = {}
    for g in gens:
        allbits = np.frombuffer(
            g.points.tobytes(), np.uint8).reshape(-1, 28)[:, 20:28].copy().view(np.uint64)
        for idx, p in enumerate(g.points):
            ts = int(p["ts"])
            if not start <= ts < start + length or shard_map.shard_for(g.org, ts) != shard:
                continue
            k = (g.org, int(p["metric_id"]), int(p["context_key"]), ts)
            bits = int(allbits[idx, 0])
            cand = (g.intake_ns, idx, bits)
            if k not in best or cand > best[k]:
                best[k] = cand
    return [(*k, v[2]) for k, v in sorted(best.items())]


def rows_of(table: object) -> list[tuple[int, int, int, int, int]]:
    """``(org, metric, ctx, ts, value_bits)`` rows of an Arrow table, in order."""
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    vals = table.column("value").to_numpy().view(np.uint64)
    cols = [table.column(c).to_pylist() for c in ("org_id", "metric_id", "context_key", "ts")]
    return [(a, b, c, d, int(v)) for a, b, c, d, v in zip(*cols, vals, strict=True)]
