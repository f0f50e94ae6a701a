from __future__ import annotations

import os
import threading

import pytest

from tailor import durable
from tailor.config import StoreConfig
from tailor.storage import Store
from tailor.testing import services


def test_s3_store_roundtrip(raw_store: StoreConfig) -> None:
    store = Store(raw_store)
    store.put("a/b.bin", b"hello world")
    assert store.get("a/b.bin") == b"hello world"
    assert store.get_range("a/b.bin", 6, 11) == b"world"
    assert store.list("a") == ["a/b.bin"]
    assert store.put_if_absent("a/c.bin", b"1")
    assert not store.put_if_absent("a/c.bin", b"2")
    assert store.get("a/c.bin") == b"1"


def test_local_store_roundtrip(tmp_path: object) -> None:
    store = Store(StoreConfig(url=str(tmp_path)))
    store.put("x/y/z.bin", b"abc")
    assert store.list("x") == ["x/y/z.bin"]
    assert store.put_if_absent("x/q", b"1") and not store.put_if_absent("x/q", b"2")
    assert store.list("nothing-here") == []


def test_broker_accepts_connections(broker: services.Broker) -> None:
    services.wait_port(broker.port, timeout=1)


def test_local_put_if_absent_never_shows_a_partial_object(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Racing creators: exactly one wins, and a reader never sees the key partial.

    Each writer reads the key at the point where its content is written but not yet
    in place (a hook between the two steps), so reads overlap writes for certain: in
    every round the first such read finds the key absent (nobody has linked yet), and
    every read finds it absent or whole.
    """
    store = Store(StoreConfig(url=str(tmp_path)))
    real = durable.write_tmp
    during: list[bytes | None] = []
    lock = threading.Lock()

    def write_then_read(path: str, data: bytes) -> str:
        tmp = real(path, data)
        try:
            got: bytes | None = store.get(os.path.relpath(path, store.root))
        except FileNotFoundError:
            got = None
        with lock:
            during.append(got)
        return tmp

    monkeypatch.setattr(durable, "write_tmp", write_then_read)
    contents = [b"x" * 4096 + str(i).encode() for i in range(4)]
    for round_ in range(10):
        key = f"lease/{round_}.json"
        wins: list[int] = []
        start = threading.Barrier(4)
        n_before = len(during)

        def writer(i: int, key: str = key, wins: list[int] = wins,
                   start: threading.Barrier = start) -> None:
            start.wait(30)
            if store.put_if_absent(key, contents[i]):
                wins.append(i)

        ws = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for w in ws:
            w.start()
        for w in ws:
            w.join(60)
        assert len(wins) == 1
        assert store.get(key) == contents[wins[0]]
        this = during[n_before:]
        assert all(b is None or b in contents for b in this), f"a partial object: {this}"
        assert None in this, f"no read overlapped a write in round {round_}: {this}"
