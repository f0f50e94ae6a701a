from __future__ import annotations

from tailor import services
from tailor.config import StoreConfig
from tailor.storage import Store


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


def test_local_put_if_absent_never_shows_a_partial_object(tmp_path: object) -> None:
    """Racing creators: exactly one wins, and a reader never sees the key empty."""
    import contextlib
    import threading

    store = Store(StoreConfig(url=str(tmp_path)))
    seen: list[bytes] = []
    for round_ in range(30):
        key = f"lease/{round_}.json"
        wins: list[int] = []
        stop = threading.Event()

        def reader(key: str = key, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                with contextlib.suppress(FileNotFoundError):
                    seen.append(store.get(key))

        def writer(i: int, key: str = key, wins: list[int] = wins) -> None:
            if store.put_if_absent(key, b"x" * 4096 + str(i).encode()):
                wins.append(i)

        r = threading.Thread(target=reader)
        r.start()
        ws = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for w in ws:
            w.start()
        for w in ws:
            w.join()
        stop.set()
        r.join()
        assert len(wins) == 1
        assert store.get(key) == b"x" * 4096 + str(wins[0]).encode()
    assert all(len(b) > 4096 for b in seen)
