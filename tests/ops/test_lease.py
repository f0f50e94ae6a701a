"""The per-chunk lease: conditional creates on a local directory and on S3 (moto)."""

from __future__ import annotations

import threading

from tailor.ops.lease import acquire, lease_prefix, release, renew
from tailor.storage import Store

T0 = 1767225600
S = 10**9




def test_one_holder_at_a_time_and_release_hands_over(store: Store) -> None:
    a = acquire(store, "org-mod-1", T0, "a", 60, now_ns=100 * S)
    assert a is not None and a.n == 0
    assert acquire(store, "org-mod-1", T0, "b", 60, now_ns=101 * S) is None
    assert acquire(store, "org-mod-2", T0, "b", 60, now_ns=101 * S) is not None  # other chunk
    assert release(store, a, now_ns=102 * S)
    b = acquire(store, "org-mod-1", T0, "b", 60, now_ns=103 * S)
    assert b is not None and b.n == 2
    # Release cleaned the older links; the chain keeps counting.
    assert [k.rsplit("/", 1)[-1] for k in store.list(lease_prefix("org-mod-1", T0))] == [
        "0000000001.json", "0000000002.json"]


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(store: Store) -> None:
    a = acquire(store, "org-mod-1", T0, "a", 10, now_ns=100 * S)
    assert a is not None
    assert acquire(store, "org-mod-1", T0, "b", 10, now_ns=109 * S) is None
    b = acquire(store, "org-mod-1", T0, "b", 10, now_ns=111 * S)
    assert b is not None and b.n == a.n + 1
    assert renew(store, a, 10, now_ns=105 * S) is None  # its next link is taken
    assert not release(store, a, now_ns=112 * S)
    b2 = renew(store, b, 10, now_ns=115 * S)
    assert b2 is not None and b2.expires_ns == 125 * S
    assert acquire(store, "org-mod-1", T0, "c", 10, now_ns=122 * S) is None  # renewed


def test_racing_acquirers_get_exactly_one_lease(store: Store) -> None:
    won: list[str] = []
    barrier = threading.Barrier(6)

    def go(name: str) -> None:
        barrier.wait(5)
        if acquire(store, "org-mod-0", T0, name, 60) is not None:
            won.append(name)

    threads = [threading.Thread(target=go, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1
