"""A realistic synthetic intake stream, reproducible by seed (oracle: :mod:`.oracle`).

:func:`generate` is pure (no I/O, no clock): the same :class:`ProduceConfig`
gives the same records, byte for byte.  It models what intake writes to Kafka
(docs/contracts.md, "Point payload"):

- ``cfg.orgs`` orgs with Zipf-like sizes (a few orgs hold most series), org
  ids spread over the whole u32 range (the largest org has an id >= 2**31);
- series ``(org, metric_id, context_key)`` with full-range u64 ids, 1 s / 10 s /
  15 s / 60 s intervals with jitter and gaps; counters, random-walk gauges,
  constant and integer-valued series; rare NaN (also with payload bits),
  +-inf and -0.0 values; point ts in ``[start, start + hours * 3600)``;
- a payload holds one org's points that arrived during a short intake interval
  (10 s for big orgs, longer for small ones so that payloads carry tens to
  thousands of points); ``intake_ns`` is just after the interval, unique per
  org and increasing in send order;
- late points (arriving hours after their ts), re-sent points (same series and
  ts, another value, later arrival: the later one wins, within one payload by
  index), duplicate deliveries (the same bytes again, later, maybe on another
  partition), frames with and without content size and checksum, keys with
  leading zeros, and invalid records of every reason of
  :data:`tailor.format.payload.REASONS` at ``cfg.invalid_rate``;
- records spread uniformly over every partition of every topic.

``cfg.points`` is exactly the number of points in valid (non-duplicate)
payloads.  :meth:`Synth.expected` is the reference outcome (the S-file rows per
shard and window), computed independently of Tailor's build with numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from tailor.config import ProduceConfig
from tailor.format import payload
from tailor.format.layout import stamp
from tailor.shards import load as load_shards
from tailor.testing.invalid import InvalidCrafter
from tailor.testing.oracle import oracle
from tailor.testing.series import U64 as _U64
from tailor.testing.series import draw_org_ids, mix64, segmented_cumsum, series_counts

VALID: Final = "valid"
DUPLICATE: Final = "duplicate"
KINDS: Final = (VALID, DUPLICATE, *payload.REASONS)

PAYLOADS_SCHEMA: Final = pa.schema([
    ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
    ("kind", pa.string()), ("org_id", pa.uint32()), ("intake_ns", pa.uint64()),
    ("n_points", pa.uint32()),
])

_RESEND_SHARE: Final = 0.005
_LATE_SHARE: Final = 0.005
_DUP_SHARE: Final = 0.01
_SPECIAL_SHARE: Final = 3e-4
_LEADING_ZERO_SHARE: Final = 0.01
_MAX_PAYLOAD_POINTS: Final = 2000  # target upper size; big orgs split over intake hosts
_NAN_PAYLOAD: Final = np.array([0x7FF8_0000_DEAD_BEEF], dtype=np.uint64).view(np.float64)[0]


@dataclass(frozen=True, slots=True)
class SynthRecord:
    """One Kafka record to send.

    ``kind`` is :data:`VALID`, :data:`DUPLICATE` (the bytes of an earlier valid
    record again) or the reason :func:`tailor.format.payload.validate` gives.
    ``org_id``, ``intake_ns`` and ``n_points`` are set for valid and duplicate
    records only.
    """

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    kind: str
    org_id: int | None = None
    intake_ns: int | None = None
    n_points: int | None = None


@dataclass
class Synth:
    """A generated stream: ``records`` in send order plus what the oracle needs.

    ``points`` holds the points of the valid payloads (duplicates excluded),
    payload after payload; payload ``i`` is ``points[pay_start[i]:][:pay_n[i]]``
    of org ``pay_org[i]`` at ``pay_intake_ns[i]``.
    """

    cfg: ProduceConfig
    records: list[SynthRecord]
    points: np.ndarray
    pay_org: np.ndarray
    pay_intake_ns: np.ndarray
    pay_start: np.ndarray
    pay_n: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)
    _expected: dict[tuple[str, int], pa.Table] | None = None

    def kind_counts(self) -> dict[str, int]:
        """Records per kind, every kind of :data:`KINDS` listed."""
        out = dict.fromkeys(KINDS, 0)
        for r in self.records:
            out[r.kind] += 1
        return out

    def expected(self) -> dict[tuple[str, int], pa.Table]:
        """The S-file rows per ``(shard, window_start)`` (docs/contracts.md, "S files").

        Each table has :data:`tailor.testing.oracle.POINT_SCHEMA`, is sorted by
        ``(org_id, metric_id, context_key, ts)`` and unique on it; among the copies of a
        point the one with the largest ``(intake_ns, index within payload)`` wins.
        Computed once, then cached.
        """
        if self._expected is None:
            self._expected = oracle(self.points, self.pay_org, self.pay_intake_ns, self.pay_n,
                                    load_shards(self.cfg.shards_file), self.cfg.window_seconds)
        return self._expected

    def summary(self) -> dict[str, Any]:
        """Counts describing the stream and its expected outcome."""
        kinds = self.kind_counts()
        exp = self.expected()
        return {
            "seed": self.cfg.seed,
            "records": len(self.records),
            "valid_payloads": kinds[VALID],
            "duplicate_deliveries": kinds[DUPLICATE],
            "invalid": {r: kinds[r] for r in payload.REASONS},
            "invalid_total": sum(kinds[r] for r in payload.REASONS),
            "points": int(self.pay_n.sum()),
            "unique_points": sum(t.num_rows for t in exp.values()),
            "windows": len({w for _, w in exp}),
            "shards": len({s for s, _ in exp}),
            "chunks": len(exp),
            **self.stats,
            "window_seconds": self.cfg.window_seconds,
            "config": self.cfg.model_dump(mode="json"),
        }

    def write_expected(self, directory: str | Path,
                       offsets: list[int] | None = None) -> Path:
        """Write the expected outcome under ``directory`` (created if needed).

        Writes ``summary.json``, ``points/{shard}/{YYYY-MM-DDTHH}.parquet`` per
        chunk and, when ``offsets`` (one Kafka offset per record, in record
        order) is given, ``payloads.parquet`` with every record's coordinates.
        Raises ``OSError`` if the directory cannot be written.
        """
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        for (shard, start), table in sorted(self.expected().items()):
            d = root / "points" / shard
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, d / f"{stamp(start)}.parquet")
        if offsets is not None:
            if len(offsets) != len(self.records):
                raise ValueError(f"{len(offsets)} offsets for {len(self.records)} records")
            rs = self.records
            cols: dict[str, list[Any]] = {
                "topic": [r.topic for r in rs], "partition": [r.partition for r in rs],
                "offset": list(offsets), "kind": [r.kind for r in rs],
                "org_id": [r.org_id for r in rs], "intake_ns": [r.intake_ns for r in rs],
                "n_points": [r.n_points for r in rs],
            }
            pq.write_table(pa.table(cols, schema=PAYLOADS_SCHEMA), root / "payloads.parquet")
        (root / "summary.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        return root


def generate(cfg: ProduceConfig) -> Synth:
    """Generate the stream of ``cfg`` (pure and deterministic in ``cfg``).

    Raises ``ValueError`` only for configurations that cannot hold a stream
    (none of the validated :class:`ProduceConfig` values do).
    """
    rng = np.random.default_rng(cfg.seed)
    span = max(1, int(cfg.hours * 3600))
    start = int(cfg.start)
    n_total = int(cfg.points)
    n_resend = int(n_total * _RESEND_SHARE) if n_total >= 200 else 0
    n_base = n_total - n_resend

    org_ids = draw_org_ids(rng, cfg.orgs)
    ser = series_counts(rng, n_base, cfg.orgs, span)
    n_ser = len(ser.count)

    # --- series identity and value model
    n_ser_org = np.bincount(ser.org, minlength=cfg.orgs)
    slot = rng.integers(0, 1 + n_ser_org[ser.org] // 4)
    metric = mix64(org_ids[ser.org].astype(np.uint64) * _U64(0x100000001B3)
                    ^ slot.astype(np.uint64) ^ _U64(cfg.seed & 0xFFFFFFFF) << _U64(20))
    ctx = rng.bit_generator.random_raw(n_ser).astype(np.uint64)
    for i, (m, c) in enumerate([(None, 2**64 - 1), (None, 0), (2**63, None), (2**64 - 1, None)]):
        if i < n_ser:
            if m is not None:
                metric[i] = m
            if c is not None:
                ctx[i] = c
    vkind = rng.choice(4, size=n_ser, p=[0.3, 0.45, 0.1, 0.15])  # counter gauge const int
    base = np.where(rng.random(n_ser) < 0.5, rng.normal(0, 1000, n_ser),
                    rng.uniform(0, 1e6, n_ser))
    base = np.where(vkind == 3, np.round(base), base)
    base = np.where((vkind == 2) & (rng.random(n_ser) < 0.3), 0.0, base)
    scale = 10.0 ** rng.uniform(-2, 2, n_ser)

    # --- points of each series
    starts = np.cumsum(ser.count) - ser.count
    ends = starts + ser.count - 1
    sid = np.repeat(np.arange(n_ser), ser.count)
    k = np.arange(n_base, dtype=np.int64) - starts[sid]
    interval = ser.interval[sid]
    extra = np.where(ser.gappy[sid] & (rng.random(n_base) < 0.02),
                     rng.integers(1, 30, n_base), 0)
    extra[starts] = 0
    pos = k + segmented_cumsum(extra, starts, sid)
    jmax = ser.interval // 5
    too_long = pos[ends] * ser.interval + jmax >= span
    pos = np.where(too_long[sid], k, pos)
    length = pos[ends] * ser.interval + jmax + 1
    t0 = start + rng.integers(0, np.maximum(1, span - length + 1))
    ts = t0[sid] + pos * interval + rng.integers(0, jmax[sid] + 1)
    del k, interval, extra, pos  # keep the peak memory of large runs down

    noise = rng.standard_normal(n_base)
    vk = vkind[sid]
    inc = np.select([vk == 0, vk == 1], [np.abs(noise) * scale[sid], noise * scale[sid]], 0.0)
    walk = segmented_cumsum(inc, starts, sid)
    iwalk = segmented_cumsum(np.where(vk == 3, np.round(noise * 2).astype(np.int64), 0),
                              starts, sid)
    value = np.where(vk == 3, base[sid] + iwalk, base[sid] + np.where(vk == 2, 0.0, walk))
    special = np.flatnonzero(rng.random(n_base) < _SPECIAL_SHARE)
    del noise, inc, walk, iwalk
    value[special] = rng.choice(
        np.array([np.nan, np.nan, np.inf, -np.inf, -0.0, _NAN_PAYLOAD]), size=len(special))

    delay = rng.integers(0, 4, n_base)
    late = rng.random(n_base) < _LATE_SHARE
    delay[late] = rng.integers(3600, 6 * 3600, int(late.sum()))
    arrival = ts + delay

    # --- re-sent points: same series and ts, another value, later arrival
    rs = np.sort(rng.choice(n_base, size=n_resend, replace=False)) if n_resend else \
        np.zeros(0, dtype=np.int64)
    rv = value[rs]
    rv = np.where(np.isfinite(rv) & (rv + 1.0 != rv), rv + 1.0, 1.5)
    rdelay = np.select([rng.random(n_resend) < 0.4, rng.random(n_resend) < 0.66],
                       [0, rng.integers(1, 300, n_resend)], rng.integers(3600, 3 * 3600, n_resend))
    p_sid = np.concatenate([sid, sid[rs]])
    p_ts = np.concatenate([ts, ts[rs]])
    p_val = np.concatenate([value, rv])
    p_arr = np.concatenate([arrival, arrival[rs] + rdelay])
    p_resend = np.concatenate([np.zeros(n_base, np.int8), np.ones(n_resend, np.int8)])
    del sid, ts, value, arrival, delay

    # --- payloads: one org's points per intake interval (and intake host)
    p_org = ser.org[p_sid]
    org_pts = np.bincount(p_org, minlength=cfg.orgs).astype(np.float64)
    rate = org_pts / span
    target = float(np.clip(n_total / 40, 5, 300))
    blen = np.clip(np.ceil(target / np.maximum(rate, 1e-9)), 10, 600).astype(np.int64)
    n_sub = np.clip(np.ceil(rate * blen / _MAX_PAYLOAD_POINTS), 1, 999).astype(np.int64)
    phase = rng.integers(0, blen)
    bucket = (p_arr - start + phase[p_org]) // blen[p_org]
    sub = (ctx[p_sid] % n_sub[ser.org][p_sid].astype(np.uint64)).astype(np.int64)
    order = np.lexsort((p_resend, p_arr, sub, bucket, p_org))
    o_org, o_bucket, o_sub = p_org[order], bucket[order], sub[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = ((o_org[1:] != o_org[:-1]) | (o_bucket[1:] != o_bucket[:-1])
               | (o_sub[1:] != o_sub[:-1]))
    pay_start = np.flatnonzero(new)
    pay_n = np.diff(np.append(pay_start, len(order)))
    n_pay = len(pay_start)
    pay_orgi = o_org[pay_start]
    bucket_end = start - phase[pay_orgi] + (o_bucket[pay_start] + 1) * blen[pay_orgi]
    pay_intake = (bucket_end * 1_000_000_000 + o_sub[pay_start] * 1_000_000
                  + rng.integers(0, 1_000_000, n_pay)).astype(np.uint64)
    pay_org = org_ids[pay_orgi]

    points = np.empty(len(order), dtype=payload.RECORD_DTYPE)
    osid = p_sid[order]
    points["metric_id"] = metric[osid]
    points["context_key"] = ctx[osid]
    points["ts"] = p_ts[order]
    points["value"] = p_val[order]

    # --- send order: by intake time; payloads are re-numbered in that order
    send = np.argsort(pay_intake, kind="stable")
    new_start = np.cumsum(pay_n[send]) - pay_n[send]
    points = points[np.repeat(pay_start[send] - new_start, pay_n[send])
                    + np.arange(len(points), dtype=np.int64)]
    pay_org, pay_intake, pay_n = pay_org[send], pay_intake[send], pay_n[send]
    pay_start = new_start

    checksum = rng.random(n_pay) < 0.5
    csize = rng.random(n_pay) < 0.5
    zero_key = rng.random(n_pay) < _LEADING_ZERO_SHARE
    comps = {(a, b): zstandard.ZstdCompressor(level=3, write_checksum=a, write_content_size=b)
             for a in (False, True) for b in (False, True)}
    valid: list[tuple[bytes, bytes, int, int, int]] = []
    for i in range(n_pay):
        o, ins, n = int(pay_org[i]), int(pay_intake[i]), int(pay_n[i])
        raw = payload.HEADER.pack(payload.MAGIC, o, ins, n, 0) + \
            points[pay_start[i]:pay_start[i] + n].tobytes()
        key = (b"00" if zero_key[i] else b"") + str(o).encode()
        valid.append((key, comps[bool(checksum[i]), bool(csize[i])].compress(raw), o, ins, n))

    n_dup = round(_DUP_SHARE * n_pay) if n_pay >= 20 else 0
    dup_of = rng.choice(n_pay, size=n_dup, replace=n_dup > n_pay) if n_dup else \
        np.zeros(0, np.int64)
    rate_inv = min(cfg.invalid_rate, 0.95)
    n_inv = round(rate_inv / (1 - rate_inv) * (n_pay + n_dup)) if rate_inv > 0 else 0
    if rate_inv > 0:
        n_inv = max(n_inv, len(payload.REASONS) + 1)
    inv_kinds = [*payload.REASONS, payload.TOO_LARGE]
    inv_kinds += [str(x) for x in rng.choice(list(payload.REASONS), size=n_inv - len(inv_kinds))] \
        if n_inv > len(inv_kinds) else []
    inv_kinds = inv_kinds[:n_inv]
    rng.shuffle(inv_kinds)
    w = org_pts / max(1.0, org_pts.sum()) if org_pts.sum() else None
    inv_org = org_ids[rng.choice(cfg.orgs, size=n_inv, p=w)].tolist() if n_inv else []
    crafter = InvalidCrafter(rng)
    invalid = [crafter.make(kind, o) for kind, o in zip(inv_kinds, inv_org, strict=True)]

    sort_key = np.concatenate([
        np.arange(n_pay, dtype=np.float64),
        dup_of + rng.uniform(1, 50, n_dup),
        rng.uniform(0, max(1, n_pay), n_inv),
    ])
    rec_order = np.argsort(sort_key, kind="stable")
    places = [(t, p) for t in cfg.topics for p in range(cfg.partitions)]
    where = rng.integers(0, len(places), len(rec_order))
    records: list[SynthRecord] = []
    for j, r in enumerate(rec_order.tolist()):
        topic, part = places[int(where[j])]
        if r < n_pay + n_dup:
            i = r if r < n_pay else int(dup_of[r - n_pay])
            key, val, o, ins, n = valid[i]
            kind = VALID if r < n_pay else DUPLICATE
            records.append(SynthRecord(topic, part, key, val, kind, o, ins, n))
        else:
            kind, key_b, val_b = invalid[r - n_pay - n_dup]
            records.append(SynthRecord(topic, part, key_b, val_b, kind))
    stats = {"resent_points": n_resend, "late_points": int(late.sum()),
             "series": n_ser, "orgs_with_points": int((org_pts > 0).sum())}
    return Synth(cfg, records, points, pay_org.astype(np.uint32), pay_intake,
                 pay_start.astype(np.int64), pay_n.astype(np.int64), stats)
