"""Volume placed into chunks (pure): shard map, cutovers, distributions."""

from __future__ import annotations

import numpy as np

from tailor.ops.volume import Dist, Volume, place
from tailor.shards import Dedicated, ShardMap

T0 = 1767225600
H = 3600


def test_place_follows_the_map_and_splits_an_hour_at_a_cutover() -> None:
    vol = Volume(org=np.array([1, 1, 1, 2, 6], np.int64),
                 hour=np.array([T0, T0 + H, T0 + 5 * H, T0, T0 + H], np.int64),
                 points=np.array([100.0, 100.0, 50.0, 10.0, 7.0]), org_bytes={}, objects=1)
    shard_map = ShardMap(4, {1: Dedicated(1, T0 + H + H // 4)})  # a quarter into hour 1
    placed = place(vol, shard_map, 4 * H)
    assert placed.chunks() == {("org-1", T0): 75, ("org-1", T0 + 4 * H): 50,
                               ("org-mod-1", T0): 125, ("org-mod-2", T0): 17}
    assert placed.org_totals("org-mod-2") == {2: 10.0, 6: 7.0}
    orgs, v = vol.org_windows([T0, T0 + 4 * H], 4 * H)
    assert orgs.tolist() == [1, 2, 6] and v.tolist() == [[200, 50], [10, 0], [7, 0]]


def test_dist_uses_nearest_rank() -> None:
    d = Dist.of([5, 1, 100, 3, 4])
    assert (d.chunks, d.min, d.median, d.p99, d.max, d.total) == (5, 1, 4, 100, 100, 113)
    assert d.skew == 25.0 and Dist.of([]).skew == 0.0
    big = Dist.of(range(1, 201))
    assert (big.median, big.p99) == (100, 198)
