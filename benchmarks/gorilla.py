"""Size of a Gorilla encoding of the same points (Pelkonen et al., VLDB 2015).

The comparator of the size benchmark.  Per series and window (one Gorilla
block), the bit count of the paper's scheme:

- block header: the window start, 64 bits;
- first point: ts - header in 14 bits, the value's 64 raw bits;
- later timestamps: delta-of-delta ``D`` of consecutive ts, ``'0'`` when
  ``D == 0``, ``'10'`` + 7 bits for ``[-63, 64]``, ``'110'`` + 9 bits for
  ``[-255, 256]``, ``'1110'`` + 12 bits for ``[-2047, 2048]``, else
  ``'1111'`` + 32 bits;
- later values: ``X = bits(v) ^ bits(prev)``; ``'0'`` when ``X == 0``, else
  ``'10'`` + the meaningful bits when they fit in the previous window of
  leading/trailing zeros, else ``'11'`` + 5 bits of leading zeros (capped at
  31) + 6 bits of meaningful length + the meaningful bits.

Each series' stream is padded to whole bytes.  The series key (org u32,
metric u64, context u64: 20 bytes) is reported separately, since a Gorilla
store keeps it in its own map while an S file carries it in its columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

KEY_BYTES = 20  # org_id u32 + metric_id u64 + context_key u64


@numba.njit(cache=True, nogil=True)
def _lead(x: np.uint64) -> int:
    n = 0
    bit = np.uint64(1) << np.uint64(63)
    while n < 64 and (x & bit) == np.uint64(0):
        n += 1
        bit >>= np.uint64(1)
    return n


@numba.njit(cache=True, nogil=True)
def _trail(x: np.uint64) -> int:
    n = 0
    bit = np.uint64(1)
    while n < 64 and (x & bit) == np.uint64(0):
        n += 1
        bit <<= np.uint64(1)
    return n


@numba.njit(cache=True, nogil=True)
def _stream_bytes(starts, ts, vbits, header):  # type: ignore[no-untyped-def]
    """Whole bytes of each series' Gorilla stream; ``starts`` has n_series + 1 entries."""
    n_series = starts.shape[0] - 1
    out = np.empty(n_series, dtype=np.int64)
    for s in range(n_series):
        a = starts[s]
        b = starts[s + 1]
        bits = 64 + 14 + 64
        prev_ts = np.int64(ts[a])
        prev_delta = prev_ts - np.int64(header[s])
        prev_v = vbits[a]
        p_lead = -1
        p_trail = -1
        for i in range(a + 1, b):
            t = np.int64(ts[i])
            delta = t - prev_ts
            dod = delta - prev_delta
            if dod == 0:
                bits += 1
            elif -63 <= dod <= 64:
                bits += 2 + 7
            elif -255 <= dod <= 256:
                bits += 3 + 9
            elif -2047 <= dod <= 2048:
                bits += 4 + 12
            else:
                bits += 4 + 32
            prev_delta = delta
            prev_ts = t
            x = vbits[i] ^ prev_v
            prev_v = vbits[i]
            if x == np.uint64(0):
                bits += 1
            else:
                lead = min(_lead(x), 31)
                trail = _trail(x)
                if p_lead >= 0 and lead >= p_lead and trail >= p_trail:
                    bits += 2 + (64 - p_lead - p_trail)
                else:
                    bits += 2 + 5 + 6 + (64 - lead - trail)
                    p_lead = lead
                    p_trail = trail
        out[s] = (bits + 7) // 8
    return out


@dataclass(frozen=True, slots=True)
class GorillaSize:
    points: int
    series_blocks: int  # (series, window) blocks
    stream_bytes: int  # the Gorilla streams, each padded to a byte

    @property
    def key_bytes(self) -> int:
        return self.series_blocks * KEY_BYTES

    @property
    def total_bytes(self) -> int:
        return self.stream_bytes + self.key_bytes

    def __add__(self, other: GorillaSize) -> GorillaSize:
        return GorillaSize(self.points + other.points, self.series_blocks + other.series_blocks,
                           self.stream_bytes + other.stream_bytes)


def series_starts(org: np.ndarray, metric: np.ndarray, context: np.ndarray) -> np.ndarray:
    """Row indices where a new series starts in key-sorted rows, plus ``len``."""
    n = len(org)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    change = ((org[1:] != org[:-1]) | (metric[1:] != metric[:-1])
              | (context[1:] != context[:-1]))
    return np.concatenate(([0], np.flatnonzero(change) + 1, [n])).astype(np.int64)


def encode_size(org: np.ndarray, metric: np.ndarray, context: np.ndarray, ts: np.ndarray,
                value: np.ndarray, window_start: int) -> GorillaSize:
    """Gorilla size of one chunk's rows (sorted by key, unique, one window)."""
    if len(ts) == 0:
        return GorillaSize(0, 0, 0)
    starts = series_starts(org, metric, context)
    header = np.full(len(starts) - 1, window_start, dtype=np.int64)
    vbits = np.ascontiguousarray(value, dtype=np.float64).view(np.uint64)
    per = _stream_bytes(starts, np.ascontiguousarray(ts, dtype=np.int64), vbits, header)
    return GorillaSize(len(ts), len(starts) - 1, int(per.sum()))
