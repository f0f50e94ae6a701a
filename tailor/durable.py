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
from collections.abc import Iterator


def fsync_dir(path: str) -> None:
    """fsync directory ``path``: a rename, link or new entry in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: str) -> None:
    """``os.makedirs(path)``, fsyncing the parent of every directory it creates."""
    missing: list[str] = []
    p = path
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            os.mkdir(d)
        fsync_dir(os.path.dirname(d))


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
