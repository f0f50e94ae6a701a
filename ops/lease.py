"""The per-chunk build lease of `build --ready`.

The lease (:func:`acquire`, :func:`renew`, :func:`release`) is a chain of
conditionally created objects ``_leases/{shard}/{window}/{n:010d}.json`` in
the output store: whoever creates ``n + 1`` after seeing ``n`` expired or
released holds the chunk, so a takeover is as safe as the first acquisition.
Leases keep two concurrent ``build --ready`` runs from building one chunk
twice (the runner, :mod:`tailor.ops.ready`, renews every third of the TTL
and re-checks a chunk after leasing it); they are not what makes publishing
safe: a holder whose lease lapsed still publishes correctly
(:mod:`tailor.compute.publish`).  Every call blocks on the store; store
errors propagate (:class:`~tailor.errors.StorageError`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from tailor.format.layout import stamp
from tailor.format.records import _Record
from tailor.storage import Store

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
