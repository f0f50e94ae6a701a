"""The shard planner (issue 13): observed volume in, the next ``shards.yaml`` out.  Pure.

:func:`plan` takes the current :class:`~tailor.shards.ShardMap`, every org's
points per observed window (``orgs``, ``points``), a target chunk size and the
cutover ``since`` (a window boundary after everything built and observed),
and proposes, Slicer-style:

- **dedicate** (``{org, since}``) the fewest orgs of each shared shard whose
  chunks exceed the target in some observed window so that none does.  Shared
  shards are independent (an org only ever leaves its own), so the fewest per
  shard is the fewest overall.  Per shard: a greedy pick (the org removing the
  most excess over the over-target windows), pruned of picks no longer needed,
  then, when that is more than a lower bound (the most orgs any one window
  needs, by size), an exhaustive search of the smaller sets (bounded: a shard
  needing more than :data:`SEARCH_BUDGET` checks keeps the greedy set, and
  the plan says it is not proven minimal);
- **return** (``until: since``) dedicated orgs whose shared shard, with them
  back, stays at or under ``return_below × target`` in every observed window
  (smallest orgs first).  The gap between that and the target is the
  hysteresis that makes plans stable: a dedicated org every pick needs
  (removing it alone breaks the target) can never meet the return rule, and a
  returned org's shard stays under the target, so planning again on the same
  volume proposes nothing;
- the number of shared shards changes only when ``shared_shards`` is given.

Every move takes effect at ``since``: for every ts before it the proposed map
gives every org the shard the current map gives (built windows never move).
Existing entries are kept (their ``since``/``until`` history); an entry
scheduled to start after ``since`` is left alone and its org counts as
dedicated; an org whose entry already ended before ``since`` cannot be
dedicated again (``shards.yaml`` holds one interval per org) and is listed in
:attr:`Plan.blocked`.  ``max_moves`` caps dedications plus returns: the
largest shared chunks are relieved first, returns come last.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tailor.errors import ConfigError
from tailor.shards import Dedicated, ShardMap

from .volume import Dist

#: Subset checks one shard's exhaustive search may spend before settling for greedy.
SEARCH_BUDGET = 200_000


@dataclass(frozen=True, slots=True)
class Move:
    """One org changing shard at ``since``; ``peak``: its largest observed window."""

    org: int
    kind: Literal["dedicate", "return"]
    source: str
    dest: str
    since: int
    peak: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What :func:`plan` proposes and what it would give on the observed windows.

    ``before``/``after``: chunk sizes of the observed windows with every org
    where the current / proposed map puts it from ``since`` on; ``chunks_after``
    holds them per ``(shard, window)``.  ``reached``: every shared chunk meets
    the target (a dedicated org alone over it is in ``oversize``: splitting an
    org is not possible).  ``minimal``: each shard's dedications are a proven
    minimum.
    """

    shard_map: ShardMap
    moves: tuple[Move, ...]
    since: int
    target: int
    before: Dist
    after: Dist
    chunks_after: dict[tuple[str, int], int]
    reached: bool
    minimal: bool
    oversize: tuple[tuple[int, int], ...] = ()  # (org, peak) of dedicated orgs over target
    blocked: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default=())


def _state(dedication: Dedicated | None, since: int) -> str:
    """``shared``, ``reopen`` (ends exactly at since), ``closed``, ``pending`` or ``dedicated``."""
    if dedication is None:
        return "shared"
    if dedication.until is not None and dedication.until <= since:
        return "reopen" if dedication.until == since else "closed"
    if dedication.since is not None and dedication.since > since:
        return "pending"
    return "dedicated"


def _cover(points: np.ndarray, load: np.ndarray, target: float, orgs: Sequence[int]
           ) -> tuple[list[int], bool, bool]:
    """Fewest rows of ``points`` (orgs × windows) whose removal brings ``load`` to ``target``.

    Returns ``(rows, biggest relief first; reached; proven minimal)``.
    """
    excess = load - target
    over = excess > 0
    if not over.any():
        return [], True, True
    vo, ex = points[:, over], excess[over]
    # Candidates: rows that help, biggest first (ties: smaller org id).
    cand = [i for i in sorted(range(len(points)), key=lambda i: (-float(vo[i].sum()), orgs[i]))
            if vo[i].sum() > 0]
    chosen: list[int] = []
    rem = ex.copy()
    while (rem > 0).any():
        gains = [float(np.minimum(vo[i], np.maximum(rem, 0)).sum()) if i not in chosen else -1.0
                 for i in cand]
        if not gains or max(gains) <= 0:
            break
        best = cand[int(np.argmax(gains))]
        chosen.append(best)
        rem -= vo[best]
    if (rem > 0).any():
        return chosen, False, False

    def ok(rows: Sequence[int]) -> bool:
        return bool((vo[list(rows)].sum(axis=0) >= ex).all()) if rows else False

    for i in list(reversed(chosen)):
        rest = [c for c in chosen if c != i]
        if ok(rest):
            chosen = rest
    lower = max(int(np.searchsorted(np.cumsum(np.sort(vo[:, j])[::-1]), ex[j]) + 1)
                for j in range(len(ex)))
    if len(chosen) <= lower:
        return chosen, True, True
    budget = SEARCH_BUDGET
    for size in range(lower, len(chosen)):
        for combo in itertools.combinations(cand, size):
            budget -= 1
            if budget < 0:
                return chosen, True, False
            if ok(combo):
                return sorted(combo, key=lambda i: -float(vo[i].sum())), True, True
    return chosen, True, True


def _chunk_sizes(orgs: np.ndarray, points: np.ndarray, dedicated: np.ndarray, n: int,
                 windows: Sequence[int]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    shared = ~dedicated
    codes = orgs % n
    for k in np.unique(codes[shared]).tolist():
        load = points[shared & (codes == k)].sum(axis=0)
        out.update({(f"org-mod-{k}", w): round(x) for w, x in zip(windows, load.tolist(),
                                                                    strict=True)})
    for i in np.flatnonzero(dedicated).tolist():
        out.update({(f"org-{int(orgs[i])}", w): round(x)
                    for w, x in zip(windows, points[i].tolist(), strict=True)})
    return {k: x for k, x in sorted(out.items()) if x > 0}


def plan(shard_map: ShardMap, orgs: np.ndarray, points: np.ndarray, windows: Sequence[int], *,
         target: int, since: int, max_moves: int | None = None,
         shared_shards: int | None = None, return_below: float = 0.5) -> Plan:
    """Propose the next shard map (module doc).

    ``orgs``: distinct org ids; ``points[i, j]``: points of ``orgs[i]`` in window
    ``windows[j]``.  Orgs of ``shard_map.dedicated`` missing from ``orgs`` count
    with no points.  Raises :class:`ConfigError` for a target below 1, a
    ``return_below`` outside ``(0, 1)`` or a negative ``max_moves``.
    """
    if target < 1:
        raise ConfigError(f"target chunk points {target} is below 1",
                          fix="pass --target-chunk-points N with N >= 1")
    if not 0 < return_below < 1:
        raise ConfigError(f"return_below {return_below} is not in (0, 1)",
                          fix="pass --return-below 0.5 (returns must leave room under the "
                              "target, or plans would flip-flop)")
    if max_moves is not None and max_moves < 0:
        raise ConfigError(f"max moves {max_moves} is negative", fix="pass --max-moves 0 or more")
    if not len(windows):
        raise ConfigError("no observed window to plan from",
                          fix="pass --from/--to around windows that hold data")
    orgs = np.asarray(orgs, np.int64)
    extra = sorted(set(shard_map.dedicated) - set(orgs.tolist()))
    if extra:
        orgs = np.concatenate([orgs, np.asarray(extra, np.int64)])
        points = np.vstack([points, np.zeros((len(extra), len(windows)))])
    n_old = shard_map.shared_shards
    n = shared_shards or n_old
    state = [_state(shard_map.dedicated.get(int(o)), since) for o in orgs.tolist()]
    ded_now = np.array([s in ("pending", "dedicated") for s in state], bool)
    before = Dist.of(_chunk_sizes(orgs, points, ded_now, n_old, windows).values())

    # -- dedications, per shared shard
    codes = orgs % n
    movable = np.array([s in ("shared", "reopen") for s in state], bool)
    per_shard: dict[int, list[int]] = {}
    blocked_rows: list[int] = []
    reached, minimal = True, True
    for k in np.unique(codes[~ded_now]).tolist():
        rows = np.flatnonzero(~ded_now & (codes == k))
        load = points[rows].sum(axis=0)
        mrows = rows[movable[rows]]
        picked, ok, proven = _cover(points[mrows], load, float(target), orgs[mrows].tolist())
        reached &= ok
        minimal &= proven
        if not ok:  # orgs that could have helped, were they movable
            blocked_rows += [int(i) for i in rows if state[i] == "closed" and points[i].sum() > 0]
        if picked:
            per_shard[k] = [int(mrows[i]) for i in picked]
    blocked = tuple(sorted(int(orgs[i]) for i in blocked_rows))
    dedicate: list[int] = []
    budget = max_moves if max_moves is not None else len(orgs) + 1
    loads = {k: points[~ded_now & (codes == k)].sum(axis=0) for k in per_shard}
    queues = {k: list(rs) for k, rs in per_shard.items()}
    while budget > 0 and any(queues.values()):
        k = max((k for k in queues if queues[k]), key=lambda k: (float(loads[k].max()), -k))
        i = queues[k].pop(0)
        dedicate.append(i)
        loads[k] = loads[k] - points[i]
        budget -= 1
    if any(queues.values()):
        reached = False
    ded_new = ded_now.copy()
    ded_new[dedicate] = True

    # -- returns: smallest dedicated orgs first, while their shard stays low
    returns: list[int] = []
    cap = return_below * target
    shard_load = {k: points[~ded_new & (codes == k)].sum(axis=0) for k in np.unique(codes).tolist()}
    for i in sorted((i for i in range(len(orgs)) if state[i] == "dedicated" and ded_new[i]),
                    key=lambda i: (float(points[i].max()), int(orgs[i]))):
        if budget <= 0:
            break
        k = int(codes[i])
        after = shard_load[k] + points[i]
        if (after <= cap).all():
            returns.append(i)
            shard_load[k] = after
            ded_new[i] = False
            budget -= 1

    # -- the proposed map and what it gives
    dedicated = dict(shard_map.dedicated)
    moves: list[Move] = []
    for i in dedicate:
        o = int(orgs[i])
        old = dedicated.get(o)
        dedicated[o] = Dedicated(o, old.since, None) if old is not None else Dedicated(o, since)
        moves.append(Move(o, "dedicate", f"org-mod-{o % n}", f"org-{o}", since,
                          round(float(points[i].max()))))
    for i in returns:
        o = int(orgs[i])
        dedication = dedicated[o]
        if dedication.since == since:
            del dedicated[o]  # it had not started: cancelling it changes no ts before since
        else:
            dedicated[o] = Dedicated(o, dedication.since, since)
        moves.append(Move(o, "return", f"org-{o}", f"org-mod-{o % n}", since,
                          round(float(points[i].max()))))
    new = ShardMap(n, dict(sorted(dedicated.items())))
    chunks = _chunk_sizes(orgs, points, ded_new, n, windows)
    oversize = tuple((int(orgs[i]), round(float(points[i].max()))) for i in np.flatnonzero(ded_new)
                     if points[i].max() > target)
    notes = []
    if n != n_old:
        notes.append(f"shared_shards {n_old} -> {n}: every org not dedicated changes shard, "
                     "for all time (shards.yaml holds one count): for a new raw store and "
                     "output root only")
    notes += [f"org {o} alone has up to {p} points in a window, over the target: its own shard "
              "is the most a shard map can do" for o, p in oversize]
    notes += [f"org {o} would be dedicated but its entry already ended before since "
              "(one interval per org in shards.yaml)" for o in blocked]
    return Plan(new, tuple(moves), since, target, before, Dist.of(chunks.values()), chunks,
                reached, minimal, oversize, blocked, tuple(notes))
