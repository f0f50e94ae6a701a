"""``tailor diff A B``: a one-to-one, point-by-point comparison of two S-file roots.

Both roots are read through their manifests (a chunk without a manifest does
not exist).  For every (shard, window) present in either root it counts
points only in A, only in B, and in both with different values; values are
compared bit for bit, so a NaN equals the same NaN and ``-0.0`` differs from
``0.0``.  The pure core is :func:`compare`; :func:`run` is the adapter.
Exit code 0 only when the roots hold the same points with the same values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import click
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailor.compute.encode import COLUMNS
from tailor.compute.publish import read_manifest
from tailor.config import DiffConfig
from tailor.errors import ConfigError, StorageError
from tailor.format.layout import chunk_dir, manifest_key, stamp
from tailor.storage import Store

from .state import list_chunks

_KEY_DTYPES = (np.uint32, np.uint64, np.uint64, np.uint32)


@dataclass(frozen=True, slots=True)
class Points:
    """Columns of a chunk (any order; keys should be unique)."""

    org: np.ndarray
    metric: np.ndarray
    context: np.ndarray
    ts: np.ndarray
    value: np.ndarray

    @staticmethod
    def empty() -> Points:
        return Points(*(np.empty(0, dt) for dt in (*_KEY_DTYPES, np.float64)))

    @staticmethod
    def from_table(table: pa.Table) -> Points:
        cols = [table.column(c).to_numpy() for c in COLUMNS]
        return Points(*(np.ascontiguousarray(c, dtype=dt)
                        for c, dt in zip(cols, (*_KEY_DTYPES, np.float64), strict=True)))

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, slots=True)
class Example:
    """One differing point: ``kind`` is ``only_a``, ``only_b``, ``changed`` or ``duplicate``."""

    kind: str
    shard: str
    window: str
    org_id: int
    metric_id: int
    context_key: int
    ts: int
    value_a: float | None
    value_b: float | None


@dataclass(slots=True)
class ChunkDiff:
    """The comparison of one chunk; ``examples`` holds at most the asked number."""

    shard: str
    window: str
    points_a: int = 0
    points_b: int = 0
    only_a: int = 0
    only_b: int = 0
    changed: int = 0
    duplicates_a: int = 0  # repeated keys inside A (a broken chunk)
    duplicates_b: int = 0
    in_a: bool = True  # the chunk exists in A
    in_b: bool = True
    examples: list[Example] = field(default_factory=list)

    @property
    def differing(self) -> int:
        return self.only_a + self.only_b + self.changed + self.duplicates_a + self.duplicates_b

    @property
    def share(self) -> float:
        """Differing points over distinct points of A ∪ B (0 when both are empty)."""
        u = self.points_a - self.duplicates_a + self.only_b
        return self.differing / u if u else 0.0


def _value_repr(value: float) -> float | str:
    """JSON-safe value: NaN/inf as text with their bits."""
    if np.isfinite(value):
        return float(value)
    bits = int(np.float64(value).view(np.uint64))
    return f"{value!r} (0x{bits:016x})"


def compare(a: Points, b: Points, *, shard: str = "", window: str = "",
            examples: int = 5) -> ChunkDiff:
    """Point-by-point comparison of two chunks (pure).

    A key present in both with equal value bits is identical; ``only_a`` /
    ``only_b`` count keys on one side; ``changed`` counts keys on both sides
    whose values differ in any bit.  Repeated keys within one side count as
    ``duplicates_*`` (the first of them is compared).  Examples are the
    first differences in key order, ``examples`` of each kind at most.
    """
    d = ChunkDiff(shard, window, points_a=len(a), points_b=len(b))
    n = len(a) + len(b)
    if n == 0:
        return d
    cols = [np.concatenate([x, y]) for x, y in zip(
        (a.org, a.metric, a.context, a.ts), (b.org, b.metric, b.context, b.ts), strict=True)]
    bits = np.concatenate([a.value.view(np.uint64), b.value.view(np.uint64)])
    src = np.concatenate([np.zeros(len(a), np.uint8), np.ones(len(b), np.uint8)])
    order = np.lexsort((src, cols[3], cols[2], cols[1], cols[0]))
    org, met, ctx, ts = (c[order] for c in cols)
    bits, src = bits[order], src[order]
    same_key = np.ones(n - 1, dtype=bool)
    for c in (org, met, ctx, ts):
        same_key &= c[1:] == c[:-1]
    # Duplicates inside one side: same key and same side as the previous row.
    dup = np.zeros(n, dtype=bool)
    dup[1:] = same_key & (src[1:] == src[:-1])
    d.duplicates_a = int((dup & (src == 0)).sum())
    d.duplicates_b = int((dup & (src == 1)).sum())
    # Drop duplicates, then a key in both sides is an adjacent (A, B) pair.
    keep = ~dup
    dup_keys = [c[dup] for c in (org, met, ctx, ts)]  # in key order, for the examples
    org, met, ctx, ts, bits, src = (x[keep] for x in (org, met, ctx, ts, bits, src))
    m = len(ts)
    pair = np.zeros(m, dtype=bool)  # row i is an A row whose next row is its B twin
    if m > 1:
        eq = (org[1:] == org[:-1]) & (met[1:] == met[:-1]) & (ctx[1:] == ctx[:-1]) & (
            ts[1:] == ts[:-1])
        pair[:-1] = eq
    twin = np.zeros(m, dtype=bool)
    twin[1:] = pair[:-1]
    single = ~pair & ~twin
    only_a = single & (src == 0)
    only_b = single & (src == 1)
    changed = np.zeros(m, dtype=bool)
    changed[:-1] = pair[:-1] & (bits[:-1] != bits[1:])
    d.only_a, d.only_b, d.changed = int(only_a.sum()), int(only_b.sum()), int(changed.sum())

    def val(i: int) -> float:
        return float(bits[i:i + 1].view(np.float64)[0])

    def ex(kind: str, i: int, va: float | None, vb: float | None) -> Example:
        return Example(kind, shard, window, int(org[i]), int(met[i]), int(ctx[i]), int(ts[i]),
                       va, vb)

    if examples:
        for i in np.flatnonzero(only_a)[:examples]:
            d.examples.append(ex("only_a", int(i), val(int(i)), None))
        for i in np.flatnonzero(only_b)[:examples]:
            d.examples.append(ex("only_b", int(i), None, val(int(i))))
        for i in np.flatnonzero(changed)[:examples]:
            d.examples.append(ex("changed", int(i), val(int(i)), val(int(i) + 1)))
        for o, mt, c, t in list(zip(*dup_keys, strict=True))[:examples]:
            d.examples.append(Example("duplicate", shard, window, int(o), int(mt), int(c),
                                      int(t), None, None))
    return d


# -- reading roots ------------------------------------------------------------------------

def read_chunk(store: Store, shard: str, start: int) -> Points:
    """Every point of a chunk, reading the files its manifest lists, in order."""
    m = read_manifest(store, shard, start)
    if m is None:
        raise FileNotFoundError(manifest_key(shard, start))
    tables = []
    for f in m.files:
        key = f"{chunk_dir(shard, start)}/{f.path}"
        try:
            tables.append(pq.read_table(pa.BufferReader(store.get(key)), columns=list(COLUMNS)))
        except FileNotFoundError:
            raise StorageError("a part file the manifest lists is missing", key=key,
                               store=store.url,
                               fix="rebuild the chunk with `tailor build`") from None
    if not tables:
        return Points.empty()
    return Points.from_table(pa.concat_tables(tables))


@dataclass(slots=True)
class DiffReport:
    chunks: list[ChunkDiff]

    @property
    def identical(self) -> bool:
        return all(c.differing == 0 for c in self.chunks)

    def totals(self) -> dict[str, Any]:
        t: dict[str, Any] = {k: sum(getattr(c, k) for c in self.chunks) for k in (
            "points_a", "points_b", "only_a", "only_b", "changed", "duplicates_a",
            "duplicates_b")}
        union = sum(c.points_a - c.duplicates_a + c.only_b for c in self.chunks)
        differing = sum(c.differing for c in self.chunks)
        t["chunks"] = len(self.chunks)
        t["chunks_differing"] = sum(1 for c in self.chunks if c.differing)
        t["differing"] = differing
        t["share"] = differing / union if union else 0.0
        t["identical"] = self.identical
        return t


def diff_roots(a: Store, b: Store, *, shard: str | None = None,
               windows: Sequence[int] | None = None, examples: int = 5) -> DiffReport:
    """Compare every chunk of ``a`` and ``b`` (optionally one shard / some windows)."""
    ca, cb = list_chunks(a, shard), list_chunks(b, shard)
    keys = sorted(set(ca) | set(cb))
    if windows is not None:
        ws = set(windows)
        keys = [k for k in keys if k[1] in ws]
    out: list[ChunkDiff] = []
    shown: dict[str, int] = {}
    for s, w in keys:
        pa_ = read_chunk(a, s, w) if (s, w) in ca else Points.empty()
        pb_ = read_chunk(b, s, w) if (s, w) in cb else Points.empty()
        d = compare(pa_, pb_, shard=s, window=stamp(w), examples=examples)
        d.in_a, d.in_b = (s, w) in ca, (s, w) in cb
        kept = []
        for e in d.examples:  # at most ``examples`` of each kind over the whole diff
            if shown.get(e.kind, 0) < examples:
                shown[e.kind] = shown.get(e.kind, 0) + 1
                kept.append(e)
        d.examples = kept
        out.append(d)
    return DiffReport(out)


def _example_dict(example: Example) -> dict[str, Any]:
    d = asdict(example)
    for k in ("value_a", "value_b"):
        if d[k] is not None:
            d[k] = _value_repr(d[k])
    return d


def render_json(report: DiffReport) -> str:
    chunks = []
    for c in report.chunks:
        chunks.append({
            "shard": c.shard, "window": c.window, "in_a": c.in_a, "in_b": c.in_b,
            "points_a": c.points_a, "points_b": c.points_b, "only_a": c.only_a,
            "only_b": c.only_b, "changed": c.changed, "duplicates_a": c.duplicates_a,
            "duplicates_b": c.duplicates_b, "differing": c.differing, "share": c.share,
            "examples": [_example_dict(e) for e in c.examples],
        })
    return json.dumps({"totals": report.totals(), "chunks": chunks}, indent=2)


def render_table(report: DiffReport, a: str, b: str) -> str:
    t = report.totals()
    lines = [f"A = {a}", f"B = {b}", ""]
    head = ("shard", "window", "points A", "points B", "only A", "only B", "changed", "share")
    rows = [head]
    for c in report.chunks:
        pa_ = str(c.points_a) if c.in_a else "(none)"
        pb_ = str(c.points_b) if c.in_b else "(none)"
        rows.append((c.shard, c.window, pa_, pb_, str(c.only_a), str(c.only_b), str(c.changed),
                     f"{c.share:.4%}"))
    widths = [max(len(x[i]) for x in rows) for i in range(len(head))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)).rstrip()
              for x in rows]
    ex = [e for c in report.chunks for e in c.examples]
    if ex:
        lines += ["", "examples (org, metric, context, ts):"]
        for e in ex:
            va = "-" if e.value_a is None else repr(_value_repr(e.value_a))
            vb = "-" if e.value_b is None else repr(_value_repr(e.value_b))
            lines.append(f"  {e.kind:<9} {e.shard}/{e.window}  ({e.org_id}, {e.metric_id}, "
                         f"{e.context_key}, {e.ts})  A={va}  B={vb}")
    dup = t["duplicates_a"] + t["duplicates_b"]
    lines += ["", (f"{t['chunks']} chunk(s), {t['points_a']} points in A, {t['points_b']} in B: "
                   + ("identical" if report.identical else
                      f"{t['only_a']} only in A, {t['only_b']} only in B, {t['changed']} changed"
                      + (f", {dup} repeated keys" if dup else "")
                      + f" ({t['share']:.4%} of points differ, "
                        f"{t['chunks_differing']} chunk(s))"))]
    return "\n".join(lines)


def run(cfg: DiffConfig, *, as_json: bool = False) -> int:
    """Print the comparison; 0 when identical, 1 when anything differs.

    Raises :class:`ConfigError` (exit 2) when neither root holds any chunk
    in scope: comparing nothing is never a pass.
    """
    a, b = Store(cfg.a), Store(cfg.b)
    report = diff_roots(a, b, shard=cfg.shard, windows=cfg.windows, examples=cfg.examples)
    if not report.chunks:  # a typo in a URL must not pass a migration check
        raise ConfigError("nothing to compare: neither root holds a chunk"
                          + (f" of shard {cfg.shard}" if cfg.shard else "")
                          + (" in those windows" if cfg.windows else ""),
                          a=cfg.a.url, b=cfg.b.url,
                          fix="check both URLs (a chunk is {shard}/{YYYY-MM-DDTHH}/_manifest.json "
                              "under the root), --shard and --windows")
    click.echo(render_json(report) if as_json else render_table(report, cfg.a.url, cfg.b.url))
    return 0 if report.identical else 1
