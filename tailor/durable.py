"""Durable local files: what a :class:`tailor.storage.Store` on a directory builds on.

Every write goes to a temporary file beside its key, fsynced, then is renamed
or linked into place; the directory is fsynced after it and after every
directory a write creates (:func:`makedirs_durable`), so a write that returned
survives a power cut.  :func:`dir_lock` serialises compare-and-swap writes of a
directory's keys between processes (``flock``).  Each raises ``OSError`` on a
failed system call.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterable, Iterator


def fsync_dir(path: str) -> None:
    """fsync directory ``path``: a rename, link or new entry in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: str) -> None:
    """``os.makedirs(path)``, fsyncing the parent of every directory it creates."""
    makedirs_durable_many([path])


def makedirs_durable_many(paths: Iterable[str]) -> int:
    """:func:`makedirs_durable` for each of ``paths``, each parent fsynced once.

    Every missing directory is created (parents first), then the parent of
    each created directory is fsynced once however many it gained: an fsync
    of a directory makes every entry in it durable, so 64 new shard folders
    under one root cost one fsync of the root, not 64.  Every directory is
    durable when it returns.  Returns how many directories it fsynced.
    """
    missing: set[str] = set()
    for path in paths:
        p = path
        while p not in missing and not os.path.isdir(p):
            missing.add(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
    for d in sorted(missing, key=lambda d: d.count("/")):  # parents before children
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            os.mkdir(d)
    parents = sorted({os.path.dirname(d) for d in missing})
    for parent in parents:
        fsync_dir(parent)
    return len(parents)


def write_tmp(path: str, data: bytes | bytearray) -> str:
    """Write ``data`` to a new temporary file beside ``path``, fsynced; return its path.

    Creates (durably) the directories it needs.
    """
    makedirs_durable(os.path.dirname(path))
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


@contextlib.contextmanager
def dir_lock(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on the directory of ``path`` (created if needed)."""
    d = os.path.dirname(path)
    makedirs_durable(d)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def local_token(st: os.stat_result) -> str:
    """The version token of a local file: inode, mtime and size (changes with every replace)."""
    return f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"
