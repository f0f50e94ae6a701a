"""Publishing one chunk from several builders at once: no manifest ever lists a missing file.

The pure sweep rule first, then the protocol driven step by step on real
stores (a local directory and moto S3), then a stress run of many threads
publishing one chunk while a reader checks every manifest it sees.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from tailor.compute import publish as pub
from tailor.compute.decode import Points
from tailor.config import StoreConfig
from tailor.format import layout
from tailor.format.records import Manifest, PartFile
from tailor.storage import Store

from .rawgen import T0, W

SHARD = "org-mod-7"
H = pub.HOUR_NS


def _rows(seed: int, n: int = 5) -> Points:
    rng = np.random.default_rng(seed)
    ctx = np.sort(rng.choice(1000, n, replace=False)).astype(np.uint64)
    return Points(np.full(n, 7, np.uint32), np.full(n, 1, np.uint64), ctx,
                  np.full(n, T0 + 1, np.uint32), rng.standard_normal(n),
                  np.zeros(n, np.uint64), np.zeros(n, np.uint32))


def _write(out: Store, attempt: str, seed: int, n_parts: int = 2) -> list[PartFile]:
    return [pub.write_part(out, SHARD, T0, attempt, i, _rows(seed * 10 + i))
            for i in range(n_parts)]


def _publish(out: Store, attempt: str, parts: list[PartFile]) -> Manifest:
    return pub.publish(out, SHARD, T0, W, attempt, parts, [], min_ts=T0 + 1, max_ts=T0 + 1,
                       corrupt=0, invalid=0, duplicates=0)


def _assert_readable(out: Store) -> Manifest:
    """The chunk's manifest, and every file it lists exists."""
    m = pub.read_manifest(out, SHARD, T0)
    assert m is not None
    folder = layout.chunk_dir(SHARD, T0) + "/"
    missing = [f.path for f in m.files if not out.exists(folder + f.path)]
    assert not missing, f"manifest {m.attempt} lists missing files {missing}"
    return m


def _attempts_left(out: Store) -> set[str | None]:
    """Attempts that still have part files in the chunk folder."""
    return {layout.part_attempt(k.rsplit("/", 1)[1])
            for k in out.list(layout.chunk_dir(SHARD, T0) + "/") if "/part-" in k}


def _manifest(attempt: str, gen: int, files: list[str], prev: str | None = None,
              prev_files: list[str] | None = None) -> Manifest:
    return Manifest(shard=SHARD, window=layout.stamp(T0), window_start=T0, window_end=T0 + W,
                    attempt=attempt, files=[PartFile(path=f, rows=1, row_offset=0, bytes=1,
                                                     sha256="", min_key=[], max_key=[])
                                            for f in files],
                    points=len(files), min_ts=None, max_ts=None, inputs=[], built_ns=0,
                    tailor_version="t", generation=gen, previous_attempt=prev,
                    previous_files=prev_files or [])


# -- the pure rule --------------------------------------------------------------------

def test_sweepable_keeps_current_previous_and_live_attempts() -> None:
    now = 100 * H
    a, b, c = (f"{t:x}-0000000{i}" for i, t in enumerate((now - 3 * H, now - 2 * H, now - H)))
    young, old = f"{now - H:x}-young000", f"{now - 30 * H:x}-old00000"
    later = f"{now:x}-later000"
    cur = _manifest(c, 3, [f"part-{c}-00000.parquet"], prev=b,
                    prev_files=[f"part-{b}-00000.parquet"])
    names = [f"part-{x}-00000.parquet" for x in (a, b, c, young, old, later)] + [
        f"part-{b}-00001.parquet", "_manifest.json", "notes.txt", "part-foreign.parquet"]
    claims = {a: 0, b: 1, c: 2, later: 3}
    got = pub.sweepable(names, cur, claims, now)
    # a: claimed at generation 0 < 3, dead; old: unclaimed and older than the sweep age.
    # b's other file stays (previous attempt), c is current, young may still be building,
    # later claimed at the current generation and may still win.
    assert got == sorted([f"part-{a}-00000.parquet", f"part-{old}-00000.parquet"])
    # the replaced generation's files go when the publisher names them
    assert f"part-{young}-00000.parquet" in pub.sweepable(
        names, cur, claims, now, replaced=[f"part-{young}-00000.parquet"])
    # never published: only old unclaimed files
    assert pub.sweepable(names, None, {}, now) == [f"part-{old}-00000.parquet"]
    assert pub.stale_claims([a, old, later, "junk"], now) == [old]


# -- the protocol on real stores --------------------------------------------------------

@pytest.fixture()
def out(store: Store) -> Store:
    """The output root: a directory and moto S3 (the ``store`` fixture)."""
    return store


def test_interleaving_of_the_issue_publishes_only_existing_files(out: Store) -> None:
    """A and B write their parts; A publishes; B publishes (the issue's reproduction:
    A's clean-up used to delete B's parts before B's manifest listed them)."""
    a, b = pub.new_attempt(), pub.new_attempt()
    pa, pb = _write(out, a, 1), _write(out, b, 2)
    ma = _publish(out, a, pa)
    assert ma.attempt == a and ma.generation == 1
    _assert_readable(out)
    mb = _publish(out, b, pb)
    assert mb.attempt == b and mb.generation == 2 and mb.previous_attempt == a
    _assert_readable(out)
    # a third publish keeps B (current) and A (previous) until it replaces them
    c = pub.new_attempt()
    mc = _publish(out, c, _write(out, c, 3))
    assert mc.generation == 3
    _assert_readable(out)
    assert _attempts_left(out) == {b, c}


class _Pausing(Store):
    """A real store whose manifest compare-and-swap waits for ``go`` once (test seam)."""

    def __init__(self, cfg: StoreConfig) -> None:
        super().__init__(cfg)
        self.reached, self.go = threading.Event(), threading.Event()

    def _pause(self, key: str) -> None:
        if key.endswith("_manifest.json") and not self.go.is_set():
            self.reached.set()
            assert self.go.wait(60)

    def put_if_match(self, key: str, data: bytes, token: str | None) -> bool:
        self._pause(key)
        return super().put_if_match(key, data, token)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._pause(key)
        return super().put_if_absent(key, data)


def test_two_builders_on_one_generation_one_wins_the_other_yields(out: Store) -> None:
    slow = _Pausing(out.config)
    a, b = pub.new_attempt(), pub.new_attempt()
    pa, pb = _write(out, a, 1), _write(out, b, 2)
    got: dict[str, Manifest] = {}
    t = threading.Thread(target=lambda: got.__setitem__("a", _publish(slow, a, pa)))
    t.start()
    assert slow.reached.wait(60)  # A read generation 0 and claimed; it has not written yet
    mb = _publish(out, b, pb)  # B publishes generation 1 meanwhile
    slow.go.set()
    t.join(60)
    assert mb.attempt == b
    assert got["a"].attempt == b  # A lost its compare-and-swap: it reports B's manifest
    m = _assert_readable(out)
    assert m.attempt == b and m.generation == 1
    assert _attempts_left(out) == {b}  # the loser removed its own files


def test_a_retried_attempt_never_republishes_after_it_was_replaced(out: Store) -> None:
    """A zombie (a publish task run again) of a replaced attempt must not flip the
    chunk back to files the sweep deleted."""
    a, b, c = pub.new_attempt(), pub.new_attempt(), pub.new_attempt()
    pa = _write(out, a, 1)
    _publish(out, a, pa)
    _publish(out, b, _write(out, b, 2))
    _publish(out, c, _write(out, c, 3))  # sweeps A's files (two generations back)
    again = _publish(out, a, _write(out, a, 1))  # the zombie even rewrote its parts
    assert again.attempt == c
    m = _assert_readable(out)
    assert m.attempt == c and m.generation == 3


def test_an_attempt_that_claimed_and_died_publishes_on_retry(out: Store) -> None:
    a = pub.new_attempt()
    pa = _write(out, a, 1)
    assert out.put_if_absent(layout.claim_key(SHARD, T0, a),
                             pub.Claim(attempt=a, base_generation=0, claimed_ns=0).dumps())
    m = _publish(out, a, pa)  # nobody published since its claim: it goes on
    assert m.attempt == a and m.generation == 1
    assert _publish(out, a, pa).attempt == a  # and again: already done


def test_an_attempt_too_old_to_claim_is_refused(out: Store) -> None:
    import time

    from tailor.errors import BuildError

    old = f"{time.time_ns() - 13 * H:x}-00000000"
    with pytest.raises(BuildError, match="too old"):
        _publish(out, old, _write(out, old, 1))
    assert pub.read_manifest(out, SHARD, T0) is None


# -- many builders at once ------------------------------------------------------------

def _stress(out: Store, builders: int, rounds: int) -> tuple[list[str], list[int]]:
    """``builders`` threads publish ``rounds`` attempts each; a reader checks every
    manifest it reads.  Returns the reader's problems and the generations it saw."""
    stop = threading.Event()
    problems: list[str] = []
    seen: list[int] = []
    folder = layout.chunk_dir(SHARD, T0) + "/"

    def reader() -> None:
        for _ in range(100_000):
            if stop.is_set():
                return
            m = pub.read_manifest(out, SHARD, T0)
            if m is None:
                continue
            seen.append(m.generation)
            for f in m.files:
                if not out.exists(folder + f.path):
                    # allowed only once the manifest it came from is no longer current
                    # nor the one before (readers in flight get one generation)
                    now = pub.read_manifest(out, SHARD, T0)
                    if now is not None and now.generation <= m.generation + 1:
                        problems.append(f"gen {m.generation} lists missing {f.path}; "
                                        f"current gen {now.generation}")

    def builder(k: int) -> None:
        for r in range(rounds):
            a = pub.new_attempt()
            _publish(out, a, _write(out, a, 100 * k + r, n_parts=1))

    threads = [threading.Thread(target=builder, args=(k,)) for k in range(builders)]
    rt = threading.Thread(target=reader)
    rt.start()
    run_all(threads)
    stop.set()
    rt.join(60)
    return problems, seen


def run_all(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)


def test_many_concurrent_builders_never_publish_a_missing_file(out: Store) -> None:
    problems, seen = _stress(out, builders=4, rounds=6)
    assert not problems, problems
    assert seen, "the reader read no manifest: nothing overlapped"
    m = _assert_readable(out)
    assert seen == sorted(seen)  # generations only grow
    assert 1 <= m.generation <= 24
    # what is left: the current and previous generations, and nothing else
    assert _attempts_left(out) == {m.attempt, m.previous_attempt}


def test_a_reader_whose_files_vanish_reads_the_new_generation(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk is republished twice between a reader's manifest read and its file
    read (the files it planned are gone): `read_series` plans again."""
    from tailor.ops import sfile_reader

    out = Store(StoreConfig(url=str(tmp_path / "out")))
    a = pub.new_attempt()
    _publish(out, a, _write(out, a, 1, n_parts=1))
    real = sfile_reader.read_file
    calls: list[str] = []

    def republish_first(store: Store, ref: Any, *args: Any) -> Any:
        if not calls:
            for seed in (2, 3):
                x = pub.new_attempt()
                _publish(out, x, _write(out, x, seed, n_parts=1))
        calls.append(ref.manifest.attempt)
        return real(store, ref, *args)

    monkeypatch.setattr(sfile_reader, "read_file", republish_first)
    t = sfile_reader.read_series(str(tmp_path / "out"), 7, 1, ts_from=T0, ts_to=T0 + W)
    current = _assert_readable(out)
    assert calls[0] == a and calls[-1] == current.attempt and len(calls) == 2
    assert t.num_rows == 5
