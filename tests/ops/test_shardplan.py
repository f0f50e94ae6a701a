"""The shard planner alone (pure): Zipf volumes in, the next shards.yaml out."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tailor.errors import ConfigError
from tailor.ops.shardplan import Plan, plan
from tailor.shards import Dedicated, ShardMap, dump, parse

W = 4 * 3600
T0 = 1767225600
WINDOWS = [T0 + i * W for i in range(6)]
SINCE = T0 + 6 * W


def zipf(seed: int, n_orgs: int, total: float = 1e6, noise: float = 0.1
         ) -> tuple[np.ndarray, np.ndarray]:
    """Distinct org ids and their points per window: Zipf sizes, per-window noise."""
    rng = np.random.default_rng(seed)
    orgs = np.sort(rng.choice(10**6, n_orgs, replace=False)).astype(np.int64)
    w = 1.0 / np.arange(1, n_orgs + 1) ** 1.1
    w = rng.permutation(w / w.sum())
    v = np.outer(w * total, np.ones(len(WINDOWS)))
    return orgs, np.round(v * rng.uniform(1 - noise, 1 + noise, v.shape))


def shared_chunks(p: Plan) -> dict[tuple[str, int], int]:
    return {k: x for k, x in p.chunks_after.items() if k[0].startswith("org-mod-")}


def fewest(orgs: np.ndarray, v: np.ndarray, n: int, target: int) -> int:
    """Brute force: the fewest orgs to take out of their shared shards so that every
    shared chunk of every window is at most ``target``."""
    total = 0
    for k in range(n):
        rows = np.flatnonzero(orgs % n == k)
        load = v[rows].sum(axis=0)
        for size in range(len(rows) + 1):
            if any((load - v[list(c)].sum(axis=0) <= target).all()
                   for c in itertools.combinations(rows.tolist(), size)):
                total += size
                break
    return total


@pytest.mark.parametrize("seed", range(12))
def test_zipf_plan_meets_the_target_with_the_fewest_moves(seed: int) -> None:
    orgs, v = zipf(seed, 36)
    shard_map = ShardMap(4)
    before = max(v[orgs % 4 == k].sum(axis=0).max() for k in range(4))
    target = int(before * 0.6)
    p = plan(shard_map, orgs, v, WINDOWS, target=target, since=SINCE)
    assert p.reached and p.minimal
    assert max(shared_chunks(p).values()) <= target
    assert p.before.max == round(before) and p.after.max <= max(target, max(
        x for o, x in p.oversize) if p.oversize else 0)
    assert all(m.kind == "dedicate" for m in p.moves)
    assert len(p.moves) == fewest(orgs, v, 4, target) > 0
    assert {m.org for m in p.moves} == {o for o, d in p.shard_map.dedicated.items()}
    assert all(d.since == SINCE and d.until is None for d in p.shard_map.dedicated.values())
    assert parse(dump(p.shard_map)) == p.shard_map  # the written file reads back as the plan


def test_a_plan_is_stable_and_nothing_to_do_changes_nothing() -> None:
    orgs, v = zipf(3, 200)
    shard_map = ShardMap(8, {int(orgs[0]): Dedicated(int(orgs[0]), T0)})
    target = int(max(v[orgs % 8 == k].sum(axis=0).max() for k in range(8)) * 0.5)
    first = plan(shard_map, orgs, v, WINDOWS, target=target, since=SINCE)
    assert first.moves and first.reached
    again = plan(first.shard_map, orgs, v, WINDOWS, target=target, since=SINCE)
    assert again.moves == () and again.shard_map == first.shard_map
    assert again.before == again.after == first.after
    later = plan(first.shard_map, orgs, v, WINDOWS, target=target, since=SINCE + W)
    assert later.moves == () and later.shard_map == first.shard_map
    big = plan(shard_map, orgs, v, WINDOWS, target=10**9, since=SINCE)
    assert big.moves == () or all(m.kind == "return" for m in big.moves)


def test_no_ts_before_since_changes_shard() -> None:
    orgs, v = zipf(5, 120)
    rng = np.random.default_rng(0)
    hist = {int(o): Dedicated(int(o), T0 + W, None) for o in orgs[:3]}
    hist[int(orgs[3])] = Dedicated(int(orgs[3]), None, T0 + 2 * W)  # returned long ago
    hist[int(orgs[4])] = Dedicated(int(orgs[4]), None, None)  # always dedicated
    shard_map = ShardMap(8, hist)
    p = plan(shard_map, orgs, v, WINDOWS, target=int(v.sum(axis=0).max() / 30), since=SINCE)
    assert p.moves
    for o in [*orgs.tolist(), 7, 2 ** 32 - 1]:
        for ts in [*rng.integers(0, SINCE, 50).tolist(), SINCE - 1]:
            assert p.shard_map.shard_for(o, ts) == shard_map.shard_for(o, ts), (o, ts)
    # History is kept: entries only ever gain an `until` at since, or stay as they were.
    for o, d in shard_map.dedicated.items():
        nd = p.shard_map.dedicated[o]
        assert nd.since == d.since and nd.until in (d.until, SINCE)


def test_small_dedicated_orgs_return_and_big_ones_stay() -> None:
    orgs, v = zipf(7, 100)
    order = np.argsort(-v.sum(axis=1))
    big, small = int(orgs[order[0]]), [int(orgs[i]) for i in order[-3:]]
    shard_map = ShardMap(4, {big: Dedicated(big, T0), small[0]: Dedicated(small[0], T0),
                        small[1]: Dedicated(small[1], None), small[2]: Dedicated(small[2], SINCE)})
    v[order[0]] *= 3
    loads = [v[(orgs % 4 == k) & ~np.isin(orgs, [big, *small])].sum(axis=0) for k in range(4)]
    low = max(x.max() for x in loads) + sum(v[order[-3:]].max(axis=1))
    high = (loads[big % 4] + v[order[0]]).min()
    assert low < high
    target = int(low + high)  # half of it: above every shared shard with the small orgs back,
    # below the big org's shard with it back
    p = plan(shard_map, orgs, v, WINDOWS, target=target, since=SINCE)
    assert {(m.org, m.kind) for m in p.moves} == {(o, "return") for o in small}
    assert p.shard_map.dedicated[big] == shard_map.dedicated[big]
    assert p.shard_map.dedicated[small[0]] == Dedicated(small[0], T0, SINCE)
    assert p.shard_map.dedicated[small[1]] == Dedicated(small[1], None, SINCE)
    assert small[2] not in p.shard_map.dedicated  # it had not started yet: cancelled
    assert all(p.shard_map.shard_for(o, SINCE) == f"org-mod-{o % 4}" for o in small)
    assert max(shared_chunks(p).values()) <= target * 0.5
    assert plan(p.shard_map, orgs, v, WINDOWS, target=target, since=SINCE).moves == ()


def test_max_moves_relieves_the_largest_shard_first() -> None:
    orgs, v = zipf(11, 60)
    loads = {k: v[orgs % 4 == k].sum(axis=0).max() for k in range(4)}
    target = int(sorted(loads.values())[-2] * 0.7)  # at least two shards over it
    full = plan(ShardMap(4), orgs, v, WINDOWS, target=target, since=SINCE)
    assert len(full.moves) >= 2
    one = plan(ShardMap(4), orgs, v, WINDOWS, target=target, since=SINCE, max_moves=1)
    assert len(one.moves) == 1 and not one.reached
    worst = max(loads, key=lambda k: loads[k])
    assert one.moves[0].source == f"org-mod-{worst}" and one.moves[0] in full.moves
    zero = plan(ShardMap(4), orgs, v, WINDOWS, target=target, since=SINCE, max_moves=0)
    assert zero.moves == () and zero.shard_map == ShardMap(4) and zero.before == zero.after


def test_shared_shards_change_only_when_asked() -> None:
    orgs, v = zipf(2, 80)
    target = int(v.sum(axis=0).max() / 3)
    p = plan(ShardMap(4), orgs, v, WINDOWS, target=target, since=SINCE)
    assert p.shard_map.shared_shards == 4 and not p.notes
    q = plan(ShardMap(4), orgs, v, WINDOWS, target=target, since=SINCE, shared_shards=16)
    assert q.shard_map.shared_shards == 16 and "new raw store" in q.notes[0]
    assert len(q.moves) <= len(p.moves) and max(shared_chunks(q).values()) <= target


def test_an_org_alone_over_the_target_is_dedicated_and_reported() -> None:
    orgs = np.array([1, 5, 9, 13], np.int64)  # all in org-mod-1 of 4
    v = np.array([[900.0] * 6, [50.0] * 6, [40.0] * 6, [30.0] * 6])
    p = plan(ShardMap(4), orgs, v, WINDOWS, target=500, since=SINCE)
    assert [m.org for m in p.moves] == [1] and p.reached
    assert p.oversize == ((1, 900),) and "org 1 alone" in p.notes[0]
    assert p.after.max == 900 and p.chunks_after[("org-mod-1", WINDOWS[0])] == 120


def test_entry_states_reopen_blocked_and_pending() -> None:
    orgs = np.array([1, 5, 9], np.int64)
    v = np.array([[900.0] * 6, [300.0] * 6, [200.0] * 6])
    reopen = ShardMap(4, {1: Dedicated(1, T0, SINCE)})  # returns exactly at since
    p = plan(reopen, orgs, v, WINDOWS, target=600, since=SINCE)
    assert p.shard_map.dedicated[1] == Dedicated(1, T0, None) and p.reached
    closed = ShardMap(4, {1: Dedicated(1, T0, T0 + W)})  # returned before since
    q = plan(closed, orgs, v, WINDOWS, target=600, since=SINCE)
    assert q.blocked == (1,) and not q.reached
    assert q.shard_map.dedicated[1] == Dedicated(1, T0, T0 + W)
    pending = ShardMap(4, {1: Dedicated(1, SINCE + W)})  # starts after since: left alone
    r = plan(pending, orgs, v, WINDOWS, target=600, since=SINCE)
    assert r.moves == () and r.shard_map == pending


def test_bad_arguments_say_how_to_fix() -> None:
    orgs, v = zipf(1, 10)
    for bad in ({"target": 0}, {"target": 5, "return_below": 1.0},
               {"target": 5, "max_moves": -1}):
        with pytest.raises(ConfigError) as e:
            plan(ShardMap(4), orgs, v, WINDOWS, since=SINCE, **bad)  # type: ignore[arg-type]
        assert e.value.fix
    with pytest.raises(ConfigError, match="no observed window"):
        plan(ShardMap(4), orgs, v[:, :0], [], target=5, since=SINCE)


def test_the_search_finds_fewer_moves_than_greedy_and_says_when_it_could_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tailor.ops import shardplan

    v = np.array([[0, 1, 0], [0, 2, 0], [0, 0, 2], [1, 0, 1], [2, 0, 3], [2, 1, 0]], float)
    load, orgs = v.sum(axis=0), list(range(6))
    rows, ok, proven = shardplan._cover(v, load, 2.0, orgs)
    assert ok and proven and len(rows) == 3
    assert (load - v[rows].sum(axis=0) <= 2).all()
    monkeypatch.setattr(shardplan, "SEARCH_BUDGET", 0)  # greedy (and pruning) only
    rows, ok, proven = shardplan._cover(v, load, 2.0, orgs)
    assert ok and not proven and len(rows) == 4
