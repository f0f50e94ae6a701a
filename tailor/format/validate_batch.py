"""Validate many payloads at once (docs/contracts.md, "Point payload"), no Python per valid payload.

The fast path of validation, for a whole Kafka fetch.  Not to be confused
with :func:`tailor.format.payload.validate`, which decides one record and is
the reference every disagreement falls back to, nor with
:mod:`tailor.ingest.classify`, the ingest stage that calls :func:`check` and
then routes and frames the valid payloads.

:func:`check` takes the keys and values of a batch of Kafka records and
returns, per record, whether it is a valid payload and, if so, its header
fields, its min/max point ts and its points per hour of ts.  One numba
kernel (``nogil``: it runs beside the Kafka fetch in another thread) walks
each zstd frame (:func:`tailor.format.zstdframe.walk`), decompresses it with libzstd
into a reused scratch buffer, checks header, size, key and org, and counts
points per hour.  The kernel only ever *accepts*: a record it does not
accept for any reason (invalid, or merely unusual: a frame without a
declared size whose bound exceeds the limit, a window above zstd's default
limit, more than :data:`K_HOURS` distinct hours, libzstd not loadable) is
decided by :func:`tailor.format.payload.validate`, the single authority on
validity and reasons.  The kernel accepts only what ``validate`` accepts;
the test suite checks both agree on every invalid kind.

Memory: scratch grows to the largest declared size (or block bound) of an
accepted frame, never past :data:`tailor.format.payload.MAX_DECOMPRESSED`.
Pure: no I/O but a log line when a record's classification raises (a bug:
that record is then invalid with reason ``internal_error``); never raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

import numba
import numpy as np

from tailor.errors import InvalidPayload
from tailor.format import payload, zstdframe
from tailor.format.layout import HOUR

log = logging.getLogger("tailor.ingest")
#: Distinct hours of ts per payload the kernel counts itself (more: Python).
K_HOURS: Final = 8
_MAX: Final = payload.MAX_DECOMPRESSED
_U32_LIMIT: Final = 1 << 32


@dataclass(slots=True)
class Checked:
    """Per-record outcome of :func:`check` (arrays indexed by record).

    ``ok[i]``: record ``i`` is a valid payload; else ``errors[i]`` says why.
    For valid records: ``org``, ``intake_ns``, ``n_points``, ``raw_len`` and
    ``min_ts``/``max_ts`` (-1 when the payload holds no point).  Point counts
    per hour are the triples ``(hour_rec, hour_start, hour_points)``.
    ``buf``/``voff``/``vlen``: the values concatenated, where each starts and
    its length (None counts as empty).
    """

    ok: np.ndarray
    org: np.ndarray
    intake_ns: np.ndarray
    n_points: np.ndarray
    raw_len: np.ndarray
    min_ts: np.ndarray
    max_ts: np.ndarray
    hour_rec: np.ndarray
    hour_start: np.ndarray
    hour_points: np.ndarray
    buf: np.ndarray
    voff: np.ndarray
    vlen: np.ndarray
    errors: dict[int, InvalidPayload] = field(default_factory=dict)


@numba.njit(cache=True, nogil=True)
def _kernel(vbuf, voff, vlen, kbuf, koff, klen, fn, dctx, ok, org, intake, npts,  # type: ignore[no-untyped-def]
            rawlen, min_ts, max_ts, h_rec, h_hour, h_n):
    """Accept records (see module doc); returns the number of hour triples.

    ``fn``: :data:`tailor.format.zstdframe.DECOMPRESS_ADDR`, ``dctx``: this thread's
    ``ZSTD_DCtx`` (both passed at call time: the kernel is cached on disk)."""
    scratch = np.empty(1 << 16, np.uint8)
    hh = np.empty(K_HOURS, np.int64)
    hn = np.empty(K_HOURS, np.int64)
    nt = 0
    for i in range(voff.shape[0]):
        ok[i] = False
        kl = klen[i]
        if vlen[i] == 0 or kl == 0:
            continue
        key = np.int64(0)
        for j in range(koff[i], koff[i] + kl):
            c = np.int64(kbuf[j])
            if c < 48 or c > 57:
                key = np.int64(-1)
                break
            key = key * 10 + (c - 48)
            if key >= _U32_LIMIT:
                key = np.int64(-1)
                break
        if key < 0:
            continue
        status, flen, content, bound = zstdframe.walk(vbuf, voff[i], vlen[i])
        if status != zstdframe.OK or flen != vlen[i]:
            continue
        cap = content if content != zstdframe.UNKNOWN else bound
        if cap <= 0 or cap > _MAX:
            continue
        if cap > scratch.shape[0]:
            scratch = np.empty(cap, np.uint8)
        r = zstdframe.call_decompress(
            np.uint64(fn), np.uint64(dctx), np.uint64(scratch.ctypes.data), np.uint64(cap),
            np.uint64(vbuf.ctypes.data) + np.uint64(voff[i]), np.uint64(flen))
        if r > zstdframe.ERROR_MIN or (content != zstdframe.UNKNOWN and np.int64(r) != content):
            continue
        ln = np.int64(r)
        if raw_status(scratch, 0, ln) != RAW_OK or _u32(scratch, 4) != key:
            continue
        n = _u32(scratch, 16)
        nh, lo, hi = _hours(scratch, n, hh, hn)
        if nh < 0:
            continue
        for j in range(nh):
            h_rec[nt] = i
            h_hour[nt] = hh[j] * HOUR
            h_n[nt] = hn[j]
            nt += 1
        ok[i] = True
        org[i] = key
        intake[i] = (np.uint64(_u32(scratch, 8))
                     | (np.uint64(_u32(scratch, 12)) << np.uint64(32)))
        npts[i] = n
        rawlen[i] = ln
        min_ts[i] = lo if n else -1
        max_ts[i] = hi if n else -1
    return nt


@numba.njit(cache=True, nogil=True)
def _hours(dec, n, hh, hn):  # type: ignore[no-untyped-def]
    """Distinct hours (``hh``, as ts // HOUR) and points in each (``hn``) of the
    ``n`` records of the payload ``dec``; returns ``(count, min ts, max ts)``,
    count -1 when there are more than ``len(hh)`` distinct hours."""
    lo = np.int64(1) << 40
    hi = np.int64(-1)
    for k in range(n):
        ts = _u32(dec, 40 + 28 * k)
        lo = min(lo, ts)
        hi = max(hi, ts)
    if n == 0:
        return 0, lo, hi
    base = lo // HOUR
    span = hi // HOUR - base + 1
    cap = hh.shape[0]
    if span <= cap:  # the usual case: index by hour, no search
        hn[:span] = 0
        for k in range(n):
            hn[_u32(dec, 40 + 28 * k) // HOUR - base] += 1
        nh = 0
        for j in range(span):
            if hn[j]:
                hh[nh] = base + j
                hn[nh] = hn[j]
                nh += 1
        return nh, lo, hi
    nh = 0
    for k in range(n):
        h = _u32(dec, 40 + 28 * k) // HOUR
        j = 0
        while j < nh and hh[j] != h:
            j += 1
        if j == nh:
            if nh == cap:
                return -1, lo, hi
            hh[j] = h
            hn[j] = 0
            nh += 1
        hn[j] += 1
    return nh, lo, hi


@numba.njit(cache=True, nogil=True)
def _u32(b, p):  # type: ignore[no-untyped-def]
    """Little-endian u32 at ``b[p]`` as int64 (signed: mixes with int64 without floats)."""
    return (np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16)
            | (np.int64(b[p + 3]) << 24))


# raw_status() codes: what is wrong with a decompressed payload's header.
RAW_OK: Final = 0
RAW_SHORT: Final = 1  # shorter than the header: bad_size
RAW_MAGIC: Final = 2  # bad_magic
RAW_RESERVED: Final = 3  # bad_reserved
RAW_SIZE: Final = 4  # not 24 + 28 * n_points bytes: bad_size


@numba.njit(cache=True, nogil=True)
def raw_status(dec, p, ln):  # type: ignore[no-untyped-def]
    """Check the decompressed payload ``dec[p:p + ln]`` as :func:`tailor.format.payload.check_raw`
    does, in the same order; returns a ``RAW_*`` code."""
    if ln < 24:
        return RAW_SHORT
    if dec[p] != 84 or dec[p + 1] != 76 or dec[p + 2] != 80 or dec[p + 3] != 49:
        return RAW_MAGIC
    if _u32(dec, p + 20) != 0:
        return RAW_RESERVED
    if ln != 24 + 28 * np.int64(_u32(dec, p + 16)):
        return RAW_SIZE
    return RAW_OK


def _concat(items: list[bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [b or b"" for b in items]
    lens = np.fromiter(map(len, parts), np.int64, len(parts))
    offs = np.zeros(len(parts), np.int64)
    if len(parts) > 1:
        np.cumsum(lens[:-1], out=offs[1:])
    return np.frombuffer(b"".join(parts), np.uint8), offs, lens


def check(keys: list[bytes | None], values: list[bytes | None]) -> Checked:
    """Validate records ``(keys[i], values[i])``; see the module doc."""
    n = len(values)
    vbuf, voff, vlen = _concat(values)
    kbuf, koff, klen = _concat(keys)
    i64 = np.int64
    ok = np.zeros(n, np.bool_)
    org, npts, rawlen, min_ts, max_ts = (np.zeros(n, i64) for _ in range(5))
    intake = np.zeros(n, np.uint64)
    h_rec, h_hour, h_n = (np.empty(n * K_HOURS, i64) for _ in range(3))
    nt = 0
    fn = zstdframe.DECOMPRESS_ADDR
    if fn is not None and n:
        if vbuf.shape[0] == 0:
            vbuf = np.zeros(1, np.uint8)  # the kernel takes the buffer's address
        try:
            nt = _kernel(vbuf, voff, vlen, kbuf, koff, klen, fn, zstdframe.dctx(), ok, org, intake,
                         npts, rawlen, min_ts, max_ts, h_rec, h_hour, h_n)
        except Exception:  # a bug: decide every record in Python instead
            log.exception("the batch validation kernel failed; validating %d records one by one",
                          n)
            ok[:] = False
            nt = 0
    out = Checked(ok, org, intake, npts, rawlen, min_ts, max_ts, h_rec[:nt], h_hour[:nt],
                  h_n[:nt], vbuf, voff, vlen)
    slow = np.flatnonzero(~ok)
    if len(slow):
        extra = [_slow(out, int(i), keys[i], values[i]) for i in slow]
        recs = [r for r in extra if r is not None]
        if recs:
            out.hour_rec = np.concatenate([out.hour_rec, *(r[0] for r in recs)])
            out.hour_start = np.concatenate([out.hour_start, *(r[1] for r in recs)])
            out.hour_points = np.concatenate([out.hour_points, *(r[2] for r in recs)])
    return out


def _slow(out: Checked, i: int, key: bytes | None, value: bytes | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Decide record ``i`` with :func:`tailor.format.payload.validate`; fill ``out``.

    Returns its ``(hour_rec, hour_start, hour_points)`` when valid.  Never
    raises: an unexpected exception (a bug) makes the record invalid with
    reason :data:`tailor.format.payload.INTERNAL_ERROR` and the exception text, so it
    is quarantined like any invalid record instead of stopping ingest.
    """
    try:
        return _decide(out, i, key, value)
    except InvalidPayload as exc:
        out.errors[i] = exc
    except Exception as exc:
        log.warning("classifying record %d raised; it is quarantined as %s", i,
                    payload.INTERNAL_ERROR, exc_info=True)
        out.errors[i] = InvalidPayload(payload.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:500])
    out.ok[i] = False
    return None


def _decide(out: Checked, i: int, key: bytes | None, value: bytes | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    p = payload.validate(key, value)
    out.ok[i] = True
    out.org[i], out.intake_ns[i], out.n_points[i] = p.org_id, p.intake_ns, p.n_points
    out.raw_len[i] = len(p.raw)
    ts = p.points()["ts"]
    if not len(ts):
        out.min_ts[i] = out.max_ts[i] = -1
        return None
    out.min_ts[i], out.max_ts[i] = int(ts.min()), int(ts.max())
    hours, counts = np.unique(ts // HOUR, return_counts=True)
    return (np.full(len(hours), i, np.int64), hours.astype(np.int64) * HOUR,
            counts.astype(np.int64))


def warm() -> None:
    """Load the kernel now (from numba's disk cache; compiling into it if absent).

    ``tailor compile-kernels`` calls this, so an ingest start only loads it."""
    check([b"1"], [payload.encode(1, 0, np.zeros(1, payload.RECORD_DTYPE))])
