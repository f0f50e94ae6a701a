"""Volume per org of a batch (issue 13): numpy arrays, no Python per payload.  Pure.

An :class:`OrgVolume` holds, for the payloads of one raw shard in one fetch
(or one batch), the points and frame bytes of every org and the points of
every ``(org, hour of ts)``.  Merging keeps every org exact and at most
``keep`` org-hours, the largest: dropping some is always safe, since an org's
total (``points``) and an hour's total (the batch's ``hours``) stay exact and
a kept org-hour only ever becomes a lower bound (see
:func:`tailor.ops.volume.record_volume`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tailor.format.layout import HOUR

_HOUR_BITS = 22  # ts // 3600 < 2**21 for u32 ts


@dataclass(frozen=True, slots=True)
class OrgVolume:
    """Parallel int64 arrays: ``org``/``points``/``nbytes`` (distinct orgs, sorted) and
    ``oh_org``/``oh_hour``/``oh_points`` (distinct org-hours; hour starts in seconds)."""

    org: np.ndarray
    points: np.ndarray
    nbytes: np.ndarray
    oh_org: np.ndarray
    oh_hour: np.ndarray
    oh_points: np.ndarray

    @staticmethod
    def merge(parts: Sequence[OrgVolume], keep: int) -> OrgVolume:
        """The sum of ``parts``, with at most ``keep`` org-hours (the largest; ties:
        smaller ``(org, hour)`` first)."""
        if len(parts) == 1 and len(parts[0].oh_org) <= keep:
            return parts[0]
        org, points, nbytes = _sum_by(np.concatenate([p.org for p in parts]),
                                      np.concatenate([p.points for p in parts]),
                                      np.concatenate([p.nbytes for p in parts]))
        oh_org = np.concatenate([p.oh_org for p in parts])
        key, oh_points = _sum_by((oh_org << _HOUR_BITS)
                                 | (np.concatenate([p.oh_hour for p in parts]) // HOUR),
                                 np.concatenate([p.oh_points for p in parts]))
        if len(key) > keep:  # key order is (org, hour): a stable sort keeps it for ties
            top = np.sort(np.argsort(-oh_points, kind="stable")[:keep])
            key, oh_points = key[top], oh_points[top]
        return OrgVolume(org, points, nbytes, key >> _HOUR_BITS,
                         (key & ((1 << _HOUR_BITS) - 1)) * HOUR, oh_points)

    def triples(self) -> list[tuple[int, int, int]]:
        """``(org, hour, points)``, the largest first (ties: smaller ``(org, hour)``)."""
        order = np.lexsort((self.oh_hour, self.oh_org, -self.oh_points))
        return list(zip(self.oh_org[order].tolist(), self.oh_hour[order].tolist(),
                        self.oh_points[order].tolist(), strict=True))


def _sum_by(key: np.ndarray, *weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distinct ``key`` (sorted) and the sums of each of ``weights`` per key."""
    if not len(key):
        return (key.astype(np.int64), *(w.astype(np.int64) for w in weights))
    order = np.argsort(key)
    k = key[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return (k[starts].astype(np.int64),
            *(np.add.reduceat(w[order].astype(np.int64), starts) for w in weights))


def by_code(codes: np.ndarray, org: np.ndarray, points: np.ndarray, nbytes: np.ndarray,
            oh_codes: np.ndarray, oh_org: np.ndarray, oh_hour: np.ndarray,
            oh_points: np.ndarray) -> dict[int, OrgVolume]:
    """One :class:`OrgVolume` per shard code: payloads ``(codes, org, points, nbytes)``
    and hour counts ``(oh_codes, oh_org, oh_hour, oh_points)``, parallel arrays."""
    key, pts, nb = _sum_by((codes.astype(np.int64) << 32) | org.astype(np.int64), points,
                           nbytes)
    co = (oh_codes.astype(np.int64) << 32) | oh_org.astype(np.int64)
    hi = oh_hour.astype(np.int64) // HOUR
    if len(co) and int(oh_codes.max()) < 1 << (63 - 32 - _HOUR_BITS):
        k3, on = _sum_by((co << _HOUR_BITS) | hi, oh_points)  # (code, org, hour) in one key
        co, oh = k3 >> _HOUR_BITS, (k3 & ((1 << _HOUR_BITS) - 1)) * HOUR
    else:  # too many shards for one key: sort on hour, then (code, org)
        order = np.lexsort((hi, co))
        co, oh, on = co[order], hi[order] * HOUR, oh_points[order].astype(np.int64)
        if len(co):
            starts = np.flatnonzero(np.r_[True, (co[1:] != co[:-1]) | (oh[1:] != oh[:-1])])
            co, oh, on = co[starts], oh[starts], np.add.reduceat(on, starts)
    kc, oc = key >> 32, co >> 32
    codes_here = np.unique(kc)
    ka, kb = np.searchsorted(kc, codes_here), np.searchsorted(kc, codes_here + 1)
    oa, ob = np.searchsorted(oc, codes_here), np.searchsorted(oc, codes_here + 1)
    org_of, oh_org_of = key & 0xFFFFFFFF, co & 0xFFFFFFFF
    return {code: OrgVolume(org_of[a:b], pts[a:b], nb[a:b], oh_org_of[x:y], oh[x:y], on[x:y])
            for code, a, b, x, y in zip(codes_here.tolist(), ka.tolist(), kb.tolist(),
                                        oa.tolist(), ob.tolist(), strict=True)}
