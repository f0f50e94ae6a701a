"""The series model of the synthetic stream: org ids, series, point counts.

Pure numpy helpers of :func:`tailor.testing.stream.generate`; every random
choice comes from the generator passed in, so a seed fixes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

#: Series intervals (seconds) and how often each is drawn.
INTERVALS: Final = np.array([1, 10, 15, 60], dtype=np.int64)
INTERVAL_P: Final = np.array([0.1, 0.5, 0.15, 0.25])
U64: Final = np.uint64


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64) + U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> U64(31)), dtype=np.uint64)


def draw_org_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct u32 org ids: small, medium and >= 2**31 ones; the first is large."""
    bands = np.array([[1, 10_000], [10_000, 2**31], [2**31, 2**32]], dtype=np.int64)
    ids: list[int] = []
    seen: set[int] = set()
    for _ in range(100):
        band = rng.choice(3, size=2 * n + 8, p=[0.4, 0.3, 0.3])
        cand = rng.integers(bands[band, 0], bands[band, 1])
        for c in cand.tolist():
            if c not in seen:
                seen.add(c)
                ids.append(c)
        if len(ids) >= n:
            break
    out = np.array(ids[:n], dtype=np.int64)
    big = np.flatnonzero(out >= 2**31)
    if len(big):
        out[[0, big[0]]] = out[[big[0], 0]]
    else:
        out[0] = 2**32 - 1 - int(rng.integers(0, 1000))
    return out.astype(np.uint32)


def segmented_cumsum(x: np.ndarray, starts: np.ndarray, sid: np.ndarray) -> np.ndarray:
    cs = np.cumsum(x)
    return np.asarray(cs - (cs[starts] - x[starts])[sid])


@dataclass
class Series:
    org: np.ndarray  # index into the org table
    interval: np.ndarray
    count: np.ndarray
    gappy: np.ndarray


def series_counts(rng: np.random.Generator, n_base: int, n_orgs: int, span: int) -> Series:
    """Series (org index, interval, point count) whose counts sum to ``n_base``."""
    weights = 1.0 / np.arange(1, n_orgs + 1) ** 1.1
    weights /= weights.sum()
    cap = max(8, n_base // (4 * n_orgs))  # every org and many series, even in small runs
    parts: list[tuple[np.ndarray, ...]] = []
    total, first = 0, True
    while total < n_base:  # every series has >= 1 point: bounded by n_base / batch
        batch = max(256, n_orgs)
        org = rng.choice(n_orgs, size=batch, p=weights)
        if first:
            org[:n_orgs] = np.arange(n_orgs)  # every org gets a series first
            first = False
        interval = rng.choice(INTERVALS, size=batch, p=INTERVAL_P)
        capacity = np.maximum(1, span // interval)
        frac = np.where(rng.random(batch) < 0.6, 1.0, rng.uniform(0.05, 1.0, batch))
        count = np.clip((capacity * frac).astype(np.int64), 1, cap)
        parts.append((org, interval, count, rng.random(batch) < 0.15))
        total += int(count.sum())
    org, interval, count, gappy = (np.concatenate(c) for c in zip(*parts, strict=True))
    cum = np.cumsum(count)
    s = int(np.searchsorted(cum, n_base)) + 1
    count = count[:s].copy()
    count[-1] -= int(cum[s - 1]) - n_base
    return Series(org[:s], interval[:s], count, gappy[:s])
