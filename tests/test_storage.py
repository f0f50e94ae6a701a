"""The store's conditional writes and local durability, on a directory and on moto S3."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from tailor.config import StoreConfig
from tailor.storage import Store


def test_compare_and_swap(store: Store) -> None:
    assert store.get_versioned("c/m.json") is None
    assert store.put_if_match("c/m.json", b"one", None)
    assert not store.put_if_match("c/m.json", b"again", None)  # exists already
    got = store.get_versioned("c/m.json")
    assert got is not None and got[0] == b"one"
    assert store.put_if_match("c/m.json", b"two", got[1])
    assert not store.put_if_match("c/m.json", b"three", got[1])  # stale token
    now = store.get_versioned("c/m.json")
    assert now is not None and now[0] == b"two" and now[1] != got[1]
    assert not store.put_if_match("c/absent.json", b"x", now[1])  # a token of another key


def _race(store: Store, key: str, token: str, tag: str, n: int) -> list[int]:
    """``n`` threads write ``key`` if it is still at ``token``; returns who won."""
    wins: list[int] = []
    barrier = threading.Barrier(n)

    def go(k: int) -> None:
        barrier.wait()
        if store.put_if_match(key, f"{tag}-{k}".encode(), token):
            wins.append(k)

    threads = [threading.Thread(target=go, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return wins


def test_compare_and_swap_has_one_winner_per_version(store: Store) -> None:
    """Threads racing on one version: exactly one write lands per round."""
    assert store.put_if_match("c/race.json", b"0", None)
    for rnd in range(5):
        got = store.get_versioned("c/race.json")
        assert got is not None
        wins = _race(store, "c/race.json", got[1], str(rnd), 6)
        assert len(wins) == 1, wins
        final = store.get_versioned("c/race.json")
        assert final is not None and final[0] == f"{rnd}-{wins[0]}".encode()


def test_delete_skips_missing_keys(store: Store) -> None:
    store.put("d/a", b"1")
    store.delete(["d/a", "d/never", "d/a"])
    assert not store.exists("d/a")


def test_local_writes_fsync_the_directories_they_change(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename, a link and a new folder are durable only once their directory is
    fsynced: every local write does that before it returns."""
    synced: list[str] = []
    real = os.fsync

    def spy(fd: Any) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    root = tmp_path / "root"
    root.mkdir()
    store = Store(StoreConfig(url=str(root)))
    monkeypatch.setattr(os, "fsync", spy)
    store.put("a/b/obj", b"1")  # two new folders and a rename
    assert synced == [str(root), str(root / "a"), str(root / "a" / "b")]
    synced.clear()
    store.put("a/b/obj", b"2")  # a rename into an existing folder
    assert synced == [str(root / "a" / "b")]
    synced.clear()
    assert store.put_if_absent("a/c/lease", b"1")  # a new folder and a link
    assert synced == [str(root / "a"), str(root / "a" / "c")]
    synced.clear()
    got = store.get_versioned("a/c/lease")
    assert got is not None and store.put_if_match("a/c/lease", b"2", got[1])
    assert synced == [str(root / "a" / "c")]


def test_a_write_to_a_missing_bucket_is_a_storage_error(s3: Any) -> None:
    """s3fs reports NoSuchBucket as FileNotFoundError; a write must not pass that
    on as "no such key" (callers retry StorageError) and must say how to fix it."""
    from tailor.errors import StorageError
    from tailor.store_failures import failure_reason

    st = Store(StoreConfig(url="s3://tailor-never-made/raw", s3_endpoint_url=s3.endpoint_url))
    for data, part in ((b"x", 5 << 20), (bytes(6 << 20), 5 << 20)):  # single and multipart
        with pytest.raises(StorageError) as ei:
            st.put("objects/k", data, part_size=part)
        assert failure_reason(ei.value) == "NoSuchBucket"
        assert ei.value.fix is not None and "create the bucket tailor-never-made" in ei.value.fix
    with pytest.raises(FileNotFoundError):  # a read of a missing key stays what it was
        st.get("objects/k")
