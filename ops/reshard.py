"""Resharding moves: the orgs that move between two shards at a cutover (``shards.yaml``).

Pure (no I/O).  :func:`moves` lists them for ``tailor status``;
:func:`org_in_window` says whether a moved org's points belong to a shard for
some ts of a window, which decides the candidate objects of a chunk next to a
cutover (:mod:`tailor.ops.readiness`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from tailor.shards import Dedicated, ShardMap


@dataclass(frozen=True, slots=True)
class Move:
    """An org that moves into or out of a shard at a cutover (shards.yaml)."""

    org: int
    direction: Literal["in", "out"]  # "in": the org's points come to this shard
    other: str  # the shard on the other side of the move
    since: int | None  # the org is in its dedicated shard for ts in [since, until)
    until: int | None

    def describe(self) -> str:
        span = f"{_when(self.since)}..{_when(self.until)}"
        arrow = "from" if self.direction == "in" else "to"
        return f"org {self.org} {self.direction} ({arrow} {self.other}, dedicated {span})"


def _when(ts: int | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def moves(shard_map: ShardMap, shard: str) -> list[Move]:
    """Orgs that move between ``shard`` and another shard at a cutover."""
    out: list[Move] = []
    for raw, org in shard_map.sources(shard):
        if org is None:
            continue
        moved = shard_map.dedicated[org]
        dedicated_here = shard == f"org-{org}"
        out.append(Move(org, "in" if dedicated_here else "out", raw, moved.since, moved.until))
    return out


def org_in_window(shard_map: ShardMap, shard: str, moved: Dedicated, start: int, end: int) -> bool:
    """Does org ``moved.org`` belong to ``shard`` for some ts in ``[start, end)``?"""
    if shard == f"org-{moved.org}":
        return ((moved.since is None or moved.since < end)
                and (moved.until is None or moved.until > start))
    inside = ((moved.since is None or moved.since <= start)
              and (moved.until is None or moved.until >= end))
    return not inside
