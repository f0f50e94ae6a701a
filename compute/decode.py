"""Decode stage: frames of a :class:`~tailor.compute.read.RawRange` → point columns.

zstd runs batch-wise through ``multi_decompress_to_buffer`` (one C call per
batch, output in one contiguous buffer); a batch that fails falls back to
frame-by-frame decompression to pinpoint the bad payload.  One numba kernel
then validates each payload header (docs/contracts.md, "Point payload") and writes the
points whose ts lies in the window straight into columns.  No Python object
per point or per payload unless a batch holds an invalid payload.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import zstandard
from distributed.metrics import context_meter

from tailor.errors import InvalidPayload
from tailor.format import framing, payload
from tailor.format.validate_batch import (
    RAW_MAGIC,
    RAW_OK,
    RAW_RESERVED,
    RAW_SHORT,
    RAW_SIZE,
    raw_status,
)
from tailor.metrics import STAGE_DECODE, STAGE_ZSTD
from tailor.shards import ShardMap

from .read import RawRange

#: Decompressed bytes per zstd batch (bounds the transient buffer).
BATCH_BYTES = 32 * 2**20

# Kernel status codes (tailor.format.validate_batch.RAW_*, then 5) → contract reasons.
_KEY_MISMATCH = 5
_REASON = {RAW_SHORT: payload.BAD_SIZE, RAW_MAGIC: payload.BAD_MAGIC,
           RAW_RESERVED: payload.BAD_RESERVED, RAW_SIZE: payload.BAD_SIZE,
           _KEY_MISMATCH: payload.KEY_MISMATCH}


@dataclass(slots=True)
class Points:
    """Columns of decoded points plus what the decoder found wrong.

    ``value`` is float64 carried bit-exactly; ``intake_ns``/``idx`` decide
    the winner among duplicates.  ``frames``: frames decoded; ``decoded``:
    points in their valid payloads (any ts, before the window and shard filter).
    ``corrupt`` / ``invalid`` hold ``(object key, offset[, reason])`` tuples.
    ``sys.getsizeof`` (hence Dask's memory accounting and spilling) counts the
    columns' bytes.
    """

    org: np.ndarray
    metric: np.ndarray
    ctx: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    intake_ns: np.ndarray
    idx: np.ndarray
    frames: int = 0
    decoded: int = 0
    corrupt: list[tuple[str, int]] = field(default_factory=list)
    invalid: list[tuple[str, int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.org.shape[0])

    def __sizeof__(self) -> int:
        return 200 + sum(int(a.nbytes) for a in (self.org, self.metric, self.ctx, self.ts,
                                                 self.value, self.intake_ns, self.idx))

    def take(self, sel: np.ndarray) -> Points:
        """Rows ``sel`` (indices or mask), without the reports."""
        return Points(self.org[sel], self.metric[sel], self.ctx[sel], self.ts[sel],
                      self.value[sel], self.intake_ns[sel], self.idx[sel])

    def copy(self) -> Points:
        """An owning copy of the columns, without the reports."""
        return Points(self.org.copy(), self.metric.copy(), self.ctx.copy(), self.ts.copy(),
                      self.value.copy(), self.intake_ns.copy(), self.idx.copy())

    def slice(self, a: int, b: int) -> Points:
        return Points(self.org[a:b], self.metric[a:b], self.ctx[a:b], self.ts[a:b],
                      self.value[a:b], self.intake_ns[a:b], self.idx[a:b])


def empty_points() -> Points:
    return alloc_points(0)


def alloc_points(n: int) -> Points:
    return Points(np.empty(n, np.uint32), np.empty(n, np.uint64), np.empty(n, np.uint64),
                  np.empty(n, np.uint32), np.empty(n, np.float64), np.empty(n, np.uint64),
                  np.empty(n, np.uint32))


def concat(parts: list[Points]) -> Points:
    """One Points of all rows, in order (reports are not carried)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return empty_points()
    def cat(c: str) -> np.ndarray:
        return np.concatenate([getattr(p, c) for p in parts])

    return Points(cat("org"), cat("metric"), cat("ctx"), cat("ts"), cat("value"),
                  cat("intake_ns"), cat("idx"))


@numba.njit(cache=True, nogil=True)
def _le32(b, p):  # type: ignore[no-untyped-def]
    return (np.uint32(b[p]) | (np.uint32(b[p + 1]) << np.uint32(8))
            | (np.uint32(b[p + 2]) << np.uint32(16)) | (np.uint32(b[p + 3]) << np.uint32(24)))


@numba.njit(cache=True, nogil=True)
def _le64(b, p):  # type: ignore[no-untyped-def]
    return np.uint64(_le32(b, p)) | (np.uint64(_le32(b, p + 4)) << np.uint64(32))


@numba.njit(cache=True, nogil=True)
def decode_payloads(dec, off, length, frame_org, lo, hi, o_org, o_metric, o_ctx,  # type: ignore[no-untyped-def]
                    o_ts, o_val, o_intake, o_idx, n_out, status):
    """Validate payloads ``dec[off[i]:off[i]+length[i]]`` and append in-window points.

    Writes ``status[i]`` (0 valid, else a code of ``_REASON``); returns the
    new row count.  ``o_val`` is the value column viewed as uint64.
    """
    n = n_out
    for i in range(off.shape[0]):
        p = off[i]
        code = raw_status(dec, p, length[i])
        if code != RAW_OK:
            status[i] = code
            continue
        npts = np.int64(_le32(dec, p + 16))
        org = _le32(dec, p + 4)
        if np.int64(org) != frame_org[i]:
            status[i] = _KEY_MISMATCH
            continue
        status[i] = 0
        intake = _le64(dec, p + 8)
        q = p + 24
        for k in range(npts):
            ts = _le32(dec, q + 16)
            if ts >= lo and ts < hi:
                o_org[n] = org
                o_metric[n] = _le64(dec, q)
                o_ctx[n] = _le64(dec, q + 8)
                o_ts[n] = ts
                o_val[n] = _le64(dec, q + 20)
                o_intake[n] = intake
                o_idx[n] = k
                n += 1
            q += 28
    return n


def _base(seg: Any) -> int:
    """Address of the start of the output buffer that holds segment ``seg``."""
    return int(np.frombuffer(seg, np.uint8).ctypes.data) - int(seg.offset)


def _joined(out: zstandard.BufferWithSegmentsCollection, total: int) -> np.ndarray | None:
    """The collection's output as one uint8 array.

    python-zstandard may spread the output over several buffers; each buffer
    holds a run of consecutive segments.  Runs are found by bisection on the
    buffer address (a few segment lookups, not one per frame); a single run
    is viewed without a copy, several are concatenated.  None if the layout
    is not the expected one (the caller then decodes frame by frame).
    """
    n = len(out)
    if n == 0:
        return np.empty(0, np.uint8)
    runs: list[np.ndarray] = []
    i = 0
    while i < n:
        base = _base(out[i])
        lo, hi = i, n - 1  # last index whose segment lives in the same buffer
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if _base(out[mid]) == base:
                lo = mid
            else:
                hi = mid - 1
        first: Any = out[i]
        last: Any = out[lo]
        start, end = int(first.offset), int(last.offset) + len(memoryview(last))
        runs.append(np.frombuffer(
            memoryview((ctypes.c_uint8 * (end - start)).from_address(base + start)), np.uint8))
        i = lo + 1
    buf = runs[0] if len(runs) == 1 else np.concatenate(runs)
    return buf if buf.shape[0] == total else None


def _decompress_batch(raw: RawRange, sel: np.ndarray, dctx: zstandard.ZstdDecompressor,
                      invalid: list[tuple[str, int, str]]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, object]:
    """Decompress frames ``sel``; returns (buffer, offsets, lengths, frames kept, keepalive)."""
    ints = raw.ints
    pos = ints[sel, framing.F_POS] + framing.HEADER_SIZE
    blen = ints[sel, framing.F_BODY_LEN]
    rlen = ints[sel, framing.F_RAW_LEN]
    segs = np.empty((len(sel), 2), np.uint64)
    segs[:, 0] = pos
    segs[:, 1] = blen
    try:
        bws = zstandard.BufferWithSegments(raw.buf.data, segs.tobytes())
        out = dctx.multi_decompress_to_buffer(
            bws, decompressed_sizes=rlen.astype(np.uint64).tobytes(), threads=1)
        total = int(rlen.sum())
        buf = _joined(out, total)
        if buf is not None:
            offs = np.zeros(len(sel), np.int64)
            np.cumsum(rlen[:-1], out=offs[1:])
            return buf, offs, rlen.astype(np.int64), sel, out
    except zstandard.ZstdError:
        pass
    # Slow path: frame by frame, to find the bad one(s).
    pieces: list[bytes] = []
    kept: list[int] = []
    for j, f in enumerate(sel):
        p0 = int(pos[j])
        body = raw.buf[p0:p0 + int(blen[j])].tobytes()
        try:
            pieces.append(payload.decompress(body))
            kept.append(int(f))
        except InvalidPayload as exc:
            invalid.append((raw.key, raw.base + int(ints[f, framing.F_POS]), exc.reason))
    lens = np.array([len(x) for x in pieces], np.int64)
    offs = np.zeros(len(pieces), np.int64)
    if len(pieces) > 1:
        np.cumsum(lens[:-1], out=offs[1:])
    buf = np.frombuffer(b"".join(pieces), np.uint8)
    return buf, offs, lens, np.array(kept, np.int64), None


def capacity(raw: RawRange) -> int:
    """Rows :func:`decode_into` may write for ``raw``: the points its frames' sizes allow."""
    rlen = raw.ints[:, framing.F_RAW_LEN]
    ok = (rlen >= payload.HEADER_SIZE) & (rlen <= payload.MAX_DECOMPRESSED)
    return int(np.maximum((rlen[ok] - payload.HEADER_SIZE) // payload.RECORD_SIZE, 0).sum())


@dataclass(frozen=True, slots=True)
class Report:
    """What decoding one range found, for the build summary: its frames, the points in
    its valid payloads (decoded once, whatever their ts), and its corrupt frames /
    invalid payloads (``(key, offset[, reason])``, sorted)."""

    frames: int
    points: int
    corrupt: list[tuple[str, int]]
    invalid: list[tuple[str, int, str]]


def decode_into(raw: RawRange, out: Points, n: int, lo: int, hi: int) -> tuple[int, Report]:
    """Write the points of ``raw``'s owned frames with ts in ``[lo, hi)`` to ``out[n:]``.

    ``out`` needs room for :func:`capacity` more rows.  Returns the new row
    count and the range's report.  Never raises on bad data: corrupt frames and
    invalid payloads land in the report with object key and offset.
    """
    ints = raw.ints
    nf = ints.shape[0]
    corrupt = [(raw.key, int(x)) for x in raw.corrupt]
    invalid: list[tuple[str, int, str]] = []
    rlen = ints[:, framing.F_RAW_LEN]
    ok = (rlen >= payload.HEADER_SIZE) & (rlen <= payload.MAX_DECOMPRESSED)
    for f in np.flatnonzero(~ok):
        reason = payload.TOO_LARGE if rlen[f] > payload.MAX_DECOMPRESSED else payload.BAD_SIZE
        invalid.append((raw.key, raw.base + int(ints[f, framing.F_POS]), reason))
    good = np.flatnonzero(ok)
    val_bits = out.value.view(np.uint64)
    decoded = 0
    dctx = zstandard.ZstdDecompressor()
    # Batches of frames with at most BATCH_BYTES decompressed (at least one frame each).
    csum = np.cumsum(rlen[good])
    a = 0
    while a < len(good):
        b = int(np.searchsorted(csum, (csum[a - 1] if a else 0) + BATCH_BYTES, side="right"))
        b = max(b, a + 1)
        sel = good[a:b]
        with context_meter.meter(STAGE_ZSTD):
            buf, offs, lens, kept, keep = _decompress_batch(raw, sel, dctx, invalid)
        with context_meter.meter(STAGE_DECODE):
            status = np.zeros(len(kept), np.int64)
            forg = ints[kept, framing.F_ORG]
            n = decode_payloads(buf, offs, lens, forg, lo, hi, out.org, out.metric, out.ctx,
                                out.ts, val_bits, out.intake_ns, out.idx, n, status)
            for j in np.flatnonzero(status):
                invalid.append((raw.key, raw.base + int(ints[kept[j], framing.F_POS]),
                                _REASON[int(status[j])]))
            # a valid payload is exactly 24 + 28 × n_points bytes
            decoded += int(((lens[status == 0] - payload.HEADER_SIZE)
                            // payload.RECORD_SIZE).sum())
        del keep, buf
        a = b
    return n, Report(nf, decoded, corrupt, sorted(invalid))


def finish(out: Points, n: int, shard: str, shard_map: ShardMap) -> Points:
    """The first ``n`` rows of ``out`` that belong to ``shard`` (a copy when that gives
    back more than half of ``out``'s capacity, else views)."""
    with context_meter.meter(STAGE_DECODE):
        pts = out.slice(0, n)
        if n < len(out) // 2:  # give the unused capacity back
            pts = pts.copy()
        mask = shard_map.keep_mask(shard, pts.org, pts.ts)
        return pts if mask is None else pts.take(mask)


def decode_range(raw: RawRange, shard: str, shard_map: ShardMap, lo: int, hi: int) -> Points:
    """Points of the owned frames of ``raw`` with ts in ``[lo, hi)`` that belong to ``shard``.

    Never raises on bad data: corrupt frames and invalid payloads land in
    the result's ``corrupt``/``invalid`` with object key and offset.
    """
    out = alloc_points(capacity(raw))
    n, rep = decode_into(raw, out, 0, lo, hi)
    pts = finish(out, n, shard, shard_map)
    pts.frames, pts.decoded, pts.corrupt, pts.invalid = (rep.frames, rep.points, rep.corrupt,
                                                         rep.invalid)
    return pts
