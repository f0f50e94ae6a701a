"""How many fsyncs one published chunk costs on a local directory, and that they suffice.

Wraps ``os.fsync`` on a temporary store (no services).  Every fsync is
recorded with what it covers: a file's inode, or a directory and the names
in it at that moment (an fsync of a directory makes every entry it holds
then durable).  A published manifest must be covered all the way: the data
of every file it names and of itself, and every directory entry on the path
from the store root to each of them, by an fsync made before the publish
returned.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tailor.compute import publish as pub
from tailor.config import StoreConfig
from tailor.format import layout
from tailor.format.records import Manifest
from tailor.storage import Store

from .rawgen import T0, W
from .test_publish_race import _rows

SHARD = "org-mod-7"


class Syncs:
    """Every ``os.fsync`` made: file inodes, and directories with their entries then."""

    def __init__(self) -> None:
        self.files: set[int] = set()
        self.dirs: list[tuple[str, frozenset[str]]] = []
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def entry_durable(self, path: str) -> bool:
        parent, name = os.path.split(path)
        return any(d == parent and name in names for d, names in self.dirs)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    seen = Syncs()
    real = os.fsync

    def spy(fd: Any) -> None:
        seen.count += 1
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            path = os.readlink(f"/proc/self/fd/{fd}")
            seen.dirs.append((path, frozenset(os.listdir(path))))
        else:
            seen.files.add(st.st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def _publish(out: Store, attempt: str, n_parts: int) -> Manifest:
    parts = [pub.write_part(out, SHARD, T0, attempt, i, _rows(i)) for i in range(n_parts)]
    return pub.publish(out, SHARD, T0, W, attempt, parts, [], min_ts=T0 + 1, max_ts=T0 + 1,
                       corrupt=0, invalid=0, duplicates=0)


def _assert_covered(root: Path, m: Manifest, seen: Syncs) -> None:
    folder = root / layout.chunk_dir(SHARD, T0)
    named = [folder / f.path for f in m.files] + [folder / "_manifest.json"]
    for p in named:
        assert os.stat(p).st_ino in seen.files, f"data of {p} not fsynced"
        q = p
        while q != root:  # every entry from the root down to the file
            assert seen.entry_durable(str(q)), f"entry {q} not fsynced"
            q = q.parent


@pytest.mark.parametrize("n_parts", [1, 3])
def test_a_published_chunk_is_durable_with_one_fsync_per_part_and_four_more(
        tmp_path: Path, syncs: Syncs, n_parts: int) -> None:
    """A rebuild (its folders exist): one fsync per part file's data, then the
    claim (data, folder) and the manifest (data, folder).  The part files'
    folder is the manifest's: its fsync after the manifest's link covers them."""
    root = tmp_path / "root"
    root.mkdir()
    out = Store(StoreConfig(url=str(root)))
    first = _publish(out, pub.new_attempt(), n_parts)  # fresh: creates every folder
    _assert_covered(root, first, syncs)
    before = len(syncs)  # what the first publish synced stays synced
    m = _publish(out, pub.new_attempt(), n_parts)
    assert m.generation == 2
    _assert_covered(root, m, syncs)
    assert len(syncs) - before == n_parts + 4


def test_a_first_publish_fsyncs_each_new_folder_once(tmp_path: Path, syncs: Syncs) -> None:
    """A chunk of a new shard: besides the rebuild's fsyncs, the parent of each
    of the folders it creates (``{shard}``, ``{shard}/{window}``, ``_claims``,
    ``_claims/{shard}``, ``_claims/{shard}/{window}``) once."""
    root = tmp_path / "root"
    root.mkdir()
    out = Store(StoreConfig(url=str(root)))
    m = _publish(out, pub.new_attempt(), 2)
    _assert_covered(root, m, syncs)
    assert len(syncs) == 2 + 4 + 5


def test_folders_made_ahead_cost_one_fsync_per_parent(tmp_path: Path, syncs: Syncs) -> None:
    """`prepare_folders` for 3 shards of 2 windows on a fresh root: one fsync of
    the root, of ``_claims``, of each shard folder and of each shard's claim
    folder (8, not 3 * 2 * 2 + 3 * 2 + 2 = 20); then each chunk publishes with
    only its rebuild's fsyncs, and is still durable all the way."""
    root = tmp_path / "root"
    root.mkdir()
    out = Store(StoreConfig(url=str(root)))
    shards = ["org-mod-1", "org-mod-2", SHARD]
    pub.prepare_folders(out, [(s, w) for s in shards for w in (T0, T0 + W)])
    assert len(syncs) == 8
    before = len(syncs)
    m = _publish(out, pub.new_attempt(), 2)
    _assert_covered(root, m, syncs)
    assert len(syncs) - before == 2 + 4


def test_a_retried_publish_that_finds_its_own_manifest_makes_it_durable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publisher that died between the manifest's link and its folder's fsync:
    the retry sees its own manifest and returns it, and only after fsyncing the
    folder (so "published" is never said of an entry a power cut could undo)."""
    root = tmp_path / "root"
    root.mkdir()
    out = Store(StoreConfig(url=str(root)))
    attempt = pub.new_attempt()
    parts = [pub.write_part(out, SHARD, T0, attempt, i, _rows(i)) for i in range(2)]

    def publish_once() -> Manifest:
        return pub.publish(out, SHARD, T0, W, attempt, parts, [], min_ts=T0 + 1,
                           max_ts=T0 + 1, corrupt=0, invalid=0, duplicates=0)

    first = publish_once()
    seen = Syncs()  # the retry's fsyncs only: the first process's are "lost"
    real = os.fsync

    def spy(fd: Any) -> None:
        seen.count += 1
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            path = os.readlink(f"/proc/self/fd/{fd}")
            seen.dirs.append((path, frozenset(os.listdir(path))))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    again = publish_once()
    assert again.attempt == first.attempt == attempt
    assert seen.entry_durable(str(root / layout.manifest_key(SHARD, T0)))
