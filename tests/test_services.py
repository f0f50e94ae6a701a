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
