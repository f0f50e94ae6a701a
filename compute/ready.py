"""Chunk readiness and staleness (a pure core), and the per-chunk build lease.

Pure core (no I/O): :func:`chunk_rows` turns what the stores hold (index
records, chunk manifests, partition watermarks) into one :class:`ChunkRow`
per shard and window; :func:`select_ready` picks the chunks `build --ready`
must (re)build.  Definitions (issue 4):

- **ready**: every partition's durable watermark
  (:attr:`tailor.format.records.Watermark.durable_until_ns`, the minimum over all
  watermark files, each at most the reader's clock plus a minute: see
  :func:`durable_until`) is at or past the window's end plus the grace
  period.  No watermark at all means nothing is known to be durable: not ready.
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
Leases keep two concurrent ``build --ready`` runs from building one chunk
twice (the runner renews every third of the TTL and re-checks a chunk after
leasing it); they are not what makes publishing safe: a holder whose lease
lapsed still publishes correctly (:mod:`tailor.compute.publish`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from tailor.config import BuildConfig
from tailor.errors import TailorError
from tailor.format.layout import HOUR, object_key, stamp, window_start
from tailor.format.records import CLOCK_SLACK_NS, Manifest, ObjectRecord, Watermark, _Record
from tailor.shards import Dedicated, ShardMap
from tailor.shards import load as load_shards
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
    points.  Both are None when some of the chunk's objects were not read
    because the manifest already accounts for them (see :func:`records_to_read`;
    ``built_points`` is exact then).  ``late`` lists candidate objects missing
    from the manifest.
    """

    shard: str
    window: str
    start: int
    end: int
    objects: int
    points: int | None
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


def durable_until(w: Watermark, now_ns: int | None = None) -> int:
    """How far ``w``'s partition is durable (ns): its
    :attr:`~tailor.format.records.Watermark.durable_until_ns`, at most ``now_ns``
    (default: the wall clock) plus :data:`~tailor.format.records.CLOCK_SLACK_NS`.
    Watermarks are written on other hosts from untrusted intake times, so a
    reader never believes one further ahead of its own clock."""
    now = time.time_ns() if now_ns is None else now_ns
    return min(w.durable_until_ns, now + CLOCK_SLACK_NS)


def ingest_watermark(watermarks: Iterable[Watermark], now_ns: int | None = None) -> int | None:
    """The oldest durable position over all partitions (ns, each clamped by
    :func:`durable_until`); None if none known."""
    now = time.time_ns() if now_ns is None else now_ns
    vals = [durable_until(w, now) for w in watermarks]
    return min(vals) if vals else None


def is_ready(end: int, watermark_ns: int | None, grace_s: float) -> bool:
    """Whether a window ending at ``end`` (Unix s) is ready for this watermark."""
    return watermark_ns is not None and watermark_ns >= (end + grace_s) * 10**9


def _windows_of_hours(hour_starts: Iterable[int], length: int) -> set[int]:
    out: set[int] = set()
    for t in hour_starts:
        w = window_start(t, length)
        while w < t + HOUR:
            out.add(w)
            w += length
    return out


def _windows_of(r: ObjectRecord, length: int) -> set[int]:
    return _windows_of_hours(r.hour_table[0], length)


#: What a listing of ``index/`` shows without reading a record:
#: raw shard → batch id → hour starts the object is indexed under, empty for
#: an object indexed under coarser buckets only (its hours are in its record).
Listing = Mapping[str, Mapping[str, Iterable[int]]]


def records_to_read(smap: ShardMap, shards: Sequence[str], listing: Listing,
                    manifests: Mapping[tuple[str, int], Manifest], *,
                    length: int) -> set[tuple[str, str]]:
    """``(raw_shard, batch_id)`` of the index records status must read.

    An object's key follows from its index key (``layout.object_key``), so a
    listing tells which objects every built chunk already holds.  A record is
    read unless every chunk of ``shards`` it may feed (by its hours; a source
    restricted to a moved org counts as feeding while its cutover allows) is
    built with the object among its inputs.  So a cron run reads only new
    records, not the whole history.
    """
    feeds: dict[str, list[tuple[str, int | None]]] = {}
    for s in shards:
        for raw, org in smap.sources(s):
            feeds.setdefault(raw, []).append((s, org))
    inputs = {k: {i.key for i in m.inputs} for k, m in manifests.items()}
    need: set[tuple[str, str]] = set()
    for raw, batches in listing.items():
        targets = feeds.get(raw, [])
        for batch, hrs in batches.items():
            key = object_key(raw, batch)
            wins = _windows_of_hours(hrs, length)
            coarse = not wins and bool(targets)  # only its record knows its hours
            if coarse or any(
                    key not in inputs.get((s, w), ()) for s, org in targets for w in wins
                    if org is None or _org_in_window(smap, s, smap.dedicated[org], w, w + length)):
                need.add((raw, batch))
    return need


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
            starts = r.hour_table[0]
            i = bisect_left(starts, end) - 1  # the last hour with points before end
            if i < 0 or starts[i] < start:
                continue
            m = min(starts[i] + HOUR, end) - 1
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
    listing: Listing | None = None,
    now_ns: int | None = None,
) -> list[ChunkRow]:
    """One row per (shard, window) that has candidate objects or a manifest.

    ``records`` are the raw index records read (any raw shard, duplicates by
    key allowed); ``manifests`` are keyed by ``(shard, window_start)``.  With
    ``listing``, ``records`` may omit the records :func:`records_to_read`
    left out: those objects count for the chunks whose manifests hold them.
    ``now_ns`` (default: the wall clock) bounds the watermarks
    (:func:`ingest_watermark`).  Rows are sorted by shard (in ``shards`` order) then window.
    """
    by_raw: dict[str, dict[str, ObjectRecord]] = {}
    for r in records:
        by_raw.setdefault(r.shard, {})[r.key] = r
    raw_lists = {k: list(v.values()) for k, v in by_raw.items()}
    unread: dict[tuple[str, int], set[str]] = {}  # (raw shard, window) → object keys
    for raw, batches in (listing or {}).items():
        for batch, hrs in batches.items():
            key = object_key(raw, batch)
            if key not in by_raw.get(raw, {}):
                for w in _windows_of_hours(hrs, length):
                    unread.setdefault((raw, w), set()).add(key)
    wm = ingest_watermark(watermarks, now_ns)
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
            held = {k for raw, _ in smap.sources(shard) for k in unread.get((raw, start), ())
                    if k in have}  # unread objects count only where a manifest holds them
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
                shard=shard, window=stamp(start), start=start, end=end,
                objects=len(recs) + len(held - {r.key for r in recs}),
                points=None if held else sum(r.points_in(start, length) for r in recs),
                max_ts=None if held else _max_ts(recs, start, end), watermark_ns=wm,
                ready=ready,
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



# -- `tailor build --ready` ------------------------------------------------------------

@dataclass(slots=True)
class ReadyOutcome:
    """What happened to one selected chunk in a `build --ready` run.

    ``status``: ``built`` (published by this run), ``failed`` (``detail`` says
    why), ``skipped`` (another run holds its lease, or built it meanwhile).
    """

    shard: str
    start: int
    reason: str  # build | rebuild
    status: Literal["built", "failed", "skipped"]
    detail: str = ""
    points: int | None = None

    @property
    def label(self) -> str:
        return f"{self.shard}/{stamp(self.start)}"


@dataclass(slots=True)
class ReadyReport:
    """The outcome of one `build --ready` run, in selection order."""

    outcomes: list[ReadyOutcome] = field(default_factory=list)
    lost_leases: list[str] = field(default_factory=list)  # chunk labels

    def by(self, status: str) -> list[ReadyOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def exit_code(self) -> int:
        """0 when no chunk failed and no lease was lost, else 1."""
        return 1 if self.by("failed") or self.lost_leases else 0

    def summary(self) -> str:
        lines = []
        for o in self.outcomes:
            pts = f", {o.points} points" if o.points is not None else ""
            lines.append(f"{o.status:<7} {o.label} ({o.reason}{pts})"
                         + (f": {o.detail}" if o.detail else ""))
        lines += [f"LOST LEASE {c}: another run may have rebuilt it meanwhile; "
                  "raise the lease TTL if builds take longer" for c in self.lost_leases]
        b, f, s = (len(self.by(x)) for x in ("built", "failed", "skipped"))
        if f:
            lines.append("to retry: fix the cause above and run "
                         "`tailor build --ready` again; failed chunks stay unbuilt (or stale)")
        lines.append(f"tailor build --ready: {len(self.outcomes)} chunk(s) selected: {b} built, "
                     f"{f} failed, {s} skipped")
        return "\n".join(lines)


class _Heartbeat:
    """Renews the held leases every ``ttl_s / 3`` seconds in a daemon thread."""

    def __init__(self, store: Store, leases: dict[tuple[str, int], Lease], ttl_s: float) -> None:
        self.store, self.leases, self.ttl_s = store, leases, ttl_s
        self.lost: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="tailor-lease", daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.ttl_s / 3):
            with self.lock:
                for k, lease in list(self.leases.items()):
                    try:
                        new = renew(self.store, lease, self.ttl_s)
                    except TailorError:
                        continue  # the store hiccuped: try again next beat, before expiry
                    if new is None:
                        del self.leases[k]
                        self.lost.append(k)
                    else:
                        self.leases[k] = new

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def build_ready(cfg: BuildConfig, client: Any = None, *, owner: str | None = None,
                ttl_s: float = 600.0, echo: Callable[[str], None] | None = None
                ) -> ReadyReport:
    """Build every ready unbuilt chunk and rebuild every stale one of ``cfg.shards``.

    Selection uses :func:`chunk_rows` on the stores' current state.  Each
    selected chunk is leased (:func:`acquire`), then checked again; chunks
    another run holds or already built are skipped.  The rest go to
    :func:`tailor.compute.build.build_chunks` in one call (independent Dask
    jobs: one failing does not stop the others) on ``client``, or on a
    cluster from ``cfg`` when None.  Leases are renewed while building and
    released after.  Raises only for a bad shards file or an unusable store.
    """
    from tailor.compute.build import build_chunks, connect, dashboard_line
    from tailor.compute.status import load_chunk, load_state

    say = echo or (lambda _m: None)
    smap = load_shards(cfg.shards_file)
    length = cfg.window_seconds
    raw, out = Store(cfg.raw), Store(cfg.out)
    owner = owner or default_owner()
    state = load_state(raw, out, smap, cfg.shards, length=length)
    rows = chunk_rows(smap, cfg.shards, state.records, state.manifests, state.watermarks,
                      length=length, grace_s=cfg.grace_s, listing=state.listing)
    report = ReadyReport()
    leases: dict[tuple[str, int], Lease] = {}
    todo: list[Selected] = []
    for sel in select_ready(rows):
        o = ReadyOutcome(sel.shard, sel.start, sel.reason, "skipped")
        report.outcomes.append(o)
        try:
            lease = acquire(out, sel.shard, sel.start, owner, ttl_s)
            if lease is None:
                o.detail = "another run holds its lease"
                continue
            recs, m = load_chunk(raw, out, smap, sel.shard, sel.start, length)
            again = [r for r in chunk_rows(smap, [sel.shard], recs,
                                           {(sel.shard, sel.start): m} if m else {},
                                           state.watermarks, length=length, grace_s=cfg.grace_s)
                     if r.start == sel.start]
            if not select_ready(again):
                release(out, lease)
                o.detail = "built by another run meanwhile"
                continue
        except TailorError as exc:
            o.status, o.detail = "failed", f"lease or re-check failed: {exc}"
            continue
        leases[(sel.shard, sel.start)] = lease
        todo.append(sel)
    say(f"tailor build --ready: {len(rows)} chunk(s) known, {len(report.outcomes)} selected, "
        f"{len(todo)} to build")
    if not todo:
        return report
    hb = _Heartbeat(out, leases, ttl_s)
    try:
        with hb:
            if client is None:
                with connect(cfg) as own:
                    say(f"tailor build --ready: {dashboard_line(cfg, own)}")
                    results = build_chunks(own, cfg, [(t.shard, t.start) for t in todo])
            else:
                results = build_chunks(client, cfg, [(t.shard, t.start) for t in todo])
    finally:
        with hb.lock:
            for lease in hb.leases.values():
                with contextlib.suppress(TailorError):
                    release(out, lease)
    done = {(r.shard, r.start): r for r in results}
    for o in report.outcomes:
        r = done.get((o.shard, o.start))
        if r is None:
            continue
        if r.ok and r.manifest is not None and r.by_other:
            o.status, o.points = "skipped", r.manifest.points
            o.detail = "published by another builder meanwhile"
        elif r.ok and r.manifest is not None:
            o.status, o.points = "built", r.manifest.points
        else:
            o.status, o.detail = "failed", r.error or "unknown error"
    report.lost_leases = [f"{s}/{stamp(w)}" for s, w in hb.lost]
    return report


def run_ready(cfg: BuildConfig) -> int:
    """CLI entry of `tailor build --ready`: build, print the summary, exit code."""
    report = build_ready(cfg, echo=lambda m: print(m, flush=True))
    print(report.summary(), flush=True)
    return report.exit_code
