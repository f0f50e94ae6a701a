"""Resharding moves: the orgs that move between two shards at a cutover (``shards.yaml``).

Pure (no I/O).  :func:`moves` lists them for ``tailor status``;
:func:`org_in_window` says whether a moved org's points belong to a shard for
some ts of a window, which decides the candidate objects of a chunk next to a
cutover (:mod:`tailor.compute.readiness`).
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


def moves(smap: ShardMap, shard: str) -> list[Move]:
    """Orgs that move between ``shard`` and another shard at a cutover."""
    out: list[Move] = []
    for raw, org in smap.sources(shard):
        if org is None:
            continue
        d = smap.dedicated[org]
        dedicated_here = shard == f"org-{org}"
        out.append(Move(org, "in" if dedicated_here else "out", raw, d.since, d.until))
    return out


def org_in_window(smap: ShardMap, shard: str, d: Dedicated, start: int, end: int) -> bool:
    """Does org ``d.org`` belong to ``shard`` for some ts in ``[start, end)``?"""
    if shard == f"org-{d.org}":
        return (d.since is None or d.since < end) and (d.until is None or d.until > start)
    inside = (d.since is None or d.since <= start) and (d.until is None or d.until >= end)
    return not inside
