"""Chunk readiness and staleness (a pure core), and the per-chunk build lease.

Pure core (no I/O): :func:`chunk_rows` turns what the stores hold (index
records, chunk manifests, partition watermarks) into one :class:`ChunkRow`
per shard and window; :func:`select_ready` picks the chunks `build --ready`
must (re)build.  Definitions (issue 4):

- **ready**: every partition's durable watermark
  (:attr:`tailor.records.Watermark.durable_until_ns`, the minimum over all
  watermark files) is at or past the window's end plus the grace period.  No
  watermark at all means nothing is known to be durable: not ready.
- **stale**: the chunk is built and an index record of an object holding
  points of the window is not among the manifest's ``inputs`` (late data).
- **candidate objects** of chunk (shard S, window W): the index records under
  every hour of W of every raw shard in ``ShardMap.sources(S)``; a source
  restricted to one moved org counts only when the record holds that org and
  the org belongs to S for some ts of W (its cutover does not exclude W).

The lease (:func:`acquire`, :func:`renew`, :func:`release`) is a chain of
conditionally created objects ``_leases/{shard}/{window}/{n:010d}.json`` in
the output store: whoever creates ``n + 1`` after seeing ``n`` expired or
released holds the chunk, so a takeover is as safe as the first acquisition.
Two concurrent ``build --ready`` runs publish each chunk at most once as long
as a holder renews before its lease expires (the runner renews every third of
the TTL) and the runner re-checks a chunk after leasing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import ValidationError

from tailor.layout import HOUR, parse_stamp, stamp, window_start
from tailor.records import Manifest, ObjectRecord, Watermark, _Record
from tailor.shards import Dedicated, ShardMap
from tailor.storage import Store

Action = Literal["build", "rebuild", "wait", "ok"]


# -- resharding ---------------------------------------------------------------------

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
    import datetime as dt

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


def _org_in_window(smap: ShardMap, shard: str, d: Dedicated, start: int, end: int) -> bool:
    """Does org ``d.org`` belong to ``shard`` for some ts in ``[start, end)``?"""
    if shard == f"org-{d.org}":
        return (d.since is None or d.since < end) and (d.until is None or d.until > start)
    inside = (d.since is None or d.since <= start) and (d.until is None or d.until >= end)
    return not inside


# -- readiness and staleness ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ChunkRow:
    """What status knows about one chunk; JSON-ready via :meth:`as_dict`.

    ``points`` and ``max_ts`` come from index records at hour granularity:
    ``points`` counts every point of the candidate objects in the window's
    hours (an upper bound next to a resharding cutover); ``max_ts`` is exact
    for objects ending inside the window, else the end of the last hour with
    points.  ``late`` lists candidate objects missing from the manifest.
    """

    shard: str
    window: str
    start: int
    end: int
    objects: int
    points: int
    max_ts: int | None
    watermark_ns: int | None
    ready: bool
    built: bool
    built_points: int | None
    duplicates_dropped: int | None
    built_ns: int | None
    inputs: list[str]
    late: list[str]
    stale: bool
    action: Action

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest_watermark(watermarks: Iterable[Watermark]) -> int | None:
    """The oldest durable position over all partitions (ns); None if none known."""
    vals = [w.durable_until_ns for w in watermarks]
    return min(vals) if vals else None


def is_ready(end: int, watermark_ns: int | None, grace_s: float) -> bool:
    """Whether a window ending at ``end`` (Unix s) is ready for this watermark."""
    return watermark_ns is not None and watermark_ns >= (end + grace_s) * 10**9


def _windows_of(r: ObjectRecord, length: int) -> set[int]:
    out: set[int] = set()
    for h, n in r.hours.items():
        if n <= 0:
            continue
        t = parse_stamp(h)
        w = window_start(t, length)
        while w < t + HOUR:
            out.add(w)
            w += length
    return out


def candidates(smap: ShardMap, shard: str, by_raw: Mapping[str, Sequence[ObjectRecord]],
               length: int) -> dict[int, list[ObjectRecord]]:
    """Window start → candidate objects of ``shard`` (module docstring)."""
    out: dict[int, dict[str, ObjectRecord]] = {}
    for raw, org in smap.sources(shard):
        for r in by_raw.get(raw, ()):
            if org is not None and org not in r.orgs:
                continue
            for w in _windows_of(r, length):
                if org is not None and not _org_in_window(
                        smap, shard, smap.dedicated[org], w, w + length):
                    continue
                out.setdefault(w, {})[r.key] = r
    return {w: sorted(rs.values(), key=lambda r: r.key) for w, rs in out.items()}


def _max_ts(records: Sequence[ObjectRecord], start: int, end: int) -> int | None:
    best: int | None = None
    for r in records:
        if start <= r.max_ts < end:
            m = r.max_ts
        else:
            hrs = [parse_stamp(h) for h, n in r.hours.items()
                   if n > 0 and start <= parse_stamp(h) < end]
            if not hrs:
                continue
            m = min(max(hrs) + HOUR, end) - 1
        best = m if best is None else max(best, m)
    return best


def chunk_rows(
    smap: ShardMap,
    shards: Sequence[str],
    records: Iterable[ObjectRecord],
    manifests: Mapping[tuple[str, int], Manifest],
    watermarks: Sequence[Watermark],
    *,
    length: int,
    grace_s: float,
) -> list[ChunkRow]:
    """One row per (shard, window) that has candidate objects or a manifest.

    ``records`` are the raw index records (any raw shard, duplicates by key
    allowed); ``manifests`` are keyed by ``(shard, window_start)``.  Rows are
    sorted by shard (in ``shards`` order) then window.
    """
    by_raw: dict[str, dict[str, ObjectRecord]] = {}
    for r in records:
        by_raw.setdefault(r.shard, {})[r.key] = r
    raw_lists = {k: list(v.values()) for k, v in by_raw.items()}
    wm = ingest_watermark(watermarks)
    rows: list[ChunkRow] = []
    for shard in shards:
        cands = candidates(smap, shard, raw_lists, length)
        starts = set(cands) | {w for (s, w) in manifests if s == shard}
        for start in sorted(starts):
            end = start + length
            recs = cands.get(start, [])
            m = manifests.get((shard, start))
            ready = is_ready(end, wm, grace_s)
            inputs = sorted(i.key for i in m.inputs) if m is not None else []
            have = set(inputs)
            late = [r.key for r in recs if r.key not in have] if m is not None else []
            stale = bool(late)
            action: Action
            if m is None:
                action = "build" if ready and recs else "wait"
            elif stale:
                action = "rebuild" if ready else "wait"
            else:
                action = "ok"
            rows.append(ChunkRow(
                shard=shard, window=stamp(start), start=start, end=end, objects=len(recs),
                points=sum(r.points_in(start, length) for r in recs),
                max_ts=_max_ts(recs, start, end), watermark_ns=wm, ready=ready,
                built=m is not None, built_points=m.points if m else None,
                duplicates_dropped=m.duplicates_dropped if m else None,
                built_ns=m.built_ns if m else None, inputs=inputs, late=late, stale=stale,
                action=action,
            ))
    return rows


@dataclass(frozen=True, slots=True)
class Selected:
    """A chunk `build --ready` will (re)build, and why."""

    shard: str
    start: int
    reason: Literal["build", "rebuild"]


def select_ready(rows: Iterable[ChunkRow]) -> list[Selected]:
    """Every ready chunk not yet built, and every ready stale one, in row order."""
    return [Selected(r.shard, r.start, r.action) for r in rows
            if r.action == "build" or r.action == "rebuild"]


# -- the lease -------------------------------------------------------------------------

LEASE_ROOT = "_leases"


class LeaseRecord(_Record):
    """Content of one link of a chunk's lease chain."""

    owner: str
    state: Literal["held", "released"]
    acquired_ns: int
    expires_ns: int


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease this process holds on chunk (``shard``, ``start``)."""

    shard: str
    start: int
    n: int
    owner: str
    expires_ns: int


def lease_prefix(shard: str, start: int) -> str:
    return f"{LEASE_ROOT}/{shard}/{stamp(start)}/"


def lease_key(shard: str, start: int, n: int) -> str:
    return f"{lease_prefix(shard, start)}{n:010d}.json"


def default_owner() -> str:
    """``host:pid:random``: unique per process and run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _latest(store: Store, shard: str, start: int) -> tuple[int, LeaseRecord | None] | None:
    """(n, record) of the newest link; (-1, None) if there is none; None if unreadable."""
    prefix = lease_prefix(shard, start)
    ns = []
    for k in store.list(prefix):
        name = k[len(prefix):]
        if name.endswith(".json") and name[:-5].isdigit():
            ns.append(int(name[:-5]))
    if not ns:
        return -1, None
    n = max(ns)
    try:
        rec = LeaseRecord.model_validate(json.loads(store.get(lease_key(shard, start, n))))
    except FileNotFoundError:
        return None  # deleted under us by a release's cleanup: let the caller retry later
    except (ValueError, ValidationError):
        # A torn or foreign link: treat it as expired so the chain can move on.
        rec = LeaseRecord(owner="?", state="released", acquired_ns=0, expires_ns=0)
    return n, rec


def acquire(store: Store, shard: str, start: int, owner: str, ttl_s: float,
            *, now_ns: int | None = None) -> Lease | None:
    """Take the chunk's lease, or None if someone else holds it (or just took it).

    Creates link ``n + 1`` conditionally after seeing link ``n`` released or
    expired (``expires_ns <= now``); the conditional create decides races.
    """
    now = time.time_ns() if now_ns is None else now_ns
    latest = _latest(store, shard, start)
    if latest is None:
        return None
    n, rec = latest
    if rec is not None and rec.state == "held" and rec.expires_ns > now:
        return None
    expires = now + int(ttl_s * 1e9)
    body = LeaseRecord(owner=owner, state="held", acquired_ns=now, expires_ns=expires)
    if not store.put_if_absent(lease_key(shard, start, n + 1), body.dumps()):
        return None
    return Lease(shard, start, n + 1, owner, expires)


def renew(store: Store, lease: Lease, ttl_s: float, *, now_ns: int | None = None) -> Lease | None:
    """Extend a held lease (creates link ``n + 1``); None if it was lost meanwhile."""
    now = time.time_ns() if now_ns is None else now_ns
    if now >= lease.expires_ns:
        return None  # someone may have taken it over already
    expires = now + int(ttl_s * 1e9)
    body = LeaseRecord(owner=lease.owner, state="held", acquired_ns=now, expires_ns=expires)
    if not store.put_if_absent(lease_key(lease.shard, lease.start, lease.n + 1), body.dumps()):
        return None
    return Lease(lease.shard, lease.start, lease.n + 1, lease.owner, expires)


def release(store: Store, lease: Lease, *, now_ns: int | None = None) -> bool:
    """Hand the chunk back (creates a ``released`` link); False if it was lost.

    Older links are deleted afterwards; the newest one always stays, so the
    chain's numbering never goes back.
    """
    now = time.time_ns() if now_ns is None else now_ns
    body = LeaseRecord(owner=lease.owner, state="released", acquired_ns=now, expires_ns=now)
    n = lease.n + 1
    if not store.put_if_absent(lease_key(lease.shard, lease.start, n), body.dumps()):
        return False
    newest = lease_key(lease.shard, lease.start, n)
    old = [k for k in store.list(lease_prefix(lease.shard, lease.start)) if k < newest]
    with contextlib.suppress(FileNotFoundError):  # another releaser cleaned up first
        store.delete(old)
    return True
