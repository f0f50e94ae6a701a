"""``tailor build --ready``: the runner, and the heartbeat thread that renews its leases.

:func:`build_ready` selects the chunks (:func:`tailor.ops.readiness.chunk_rows`
on what :func:`tailor.ops.state.load_state` reads), leases each one
(:mod:`tailor.ops.lease`), re-checks it, builds the rest in one
:func:`tailor.compute.build.build_chunks` call while :class:`_Heartbeat`
renews the leases, and releases them after.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tailor.compute.build import build_chunks, connect, dashboard_line
from tailor.config import BuildConfig
from tailor.errors import TailorError
from tailor.format.layout import stamp
from tailor.shards import load as load_shards
from tailor.storage import Store

from .lease import Lease, acquire, default_owner, release, renew
from .readiness import Selected, chunk_rows, select_ready
from .state import load_chunk, load_state


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

    Selection uses :func:`~tailor.ops.readiness.chunk_rows` on the
    stores' current state.  Each selected chunk is leased
    (:func:`~tailor.ops.lease.acquire`), then checked again; chunks
    another run holds or already built are skipped.  The rest go to
    :func:`tailor.compute.build.build_chunks` in one call (independent Dask
    jobs: one failing does not stop the others) on ``client``, or on a
    cluster from ``cfg`` when None.  Leases are renewed while building and
    released after.  Raises only for a bad shards file or an unusable store.
    """
    say = echo or (lambda _m: None)
    shard_map = load_shards(cfg.shards_file)
    length = cfg.window_seconds
    raw, out = Store(cfg.raw), Store(cfg.out)
    owner = owner or default_owner()
    state = load_state(raw, out, shard_map, cfg.shards, length=length)
    rows = chunk_rows(shard_map, cfg.shards, state.records, state.manifests, state.watermarks,
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
            recs, m = load_chunk(raw, out, shard_map, sel.shard, sel.start, length)
            again = [r for r in chunk_rows(shard_map, [sel.shard], recs,
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
