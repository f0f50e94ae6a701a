"""Ingest game days: a synth stream (plus hostile extras), and the end check.

:func:`finish` is the oracle every game day ends with: the raw store holds
every valid payload unchanged and nothing else (:func:`helpers.check_complete`),
every invalid record is quarantined exactly once (one line per coordinate),
and `build --ready` on it publishes exactly the oracle's chunks with zero
points missing, extra or different (:func:`tests.pipeline.mismatches`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tailor.config import BuildConfig, ProduceConfig, StoreConfig
from tailor.format import payload as pl
from tailor.format.records import QuarantineEntry
from tailor.ops.ready import build_ready
from tailor.shards import load
from tailor.storage import Store
from tailor.testing.oracle import oracle
from tailor.testing.stream import DUPLICATE, VALID, Synth, generate
from tests.pipeline import mismatches

from .helpers import Rec, check_complete


@dataclass
class Stream:
    """Records to produce and the oracle of their valid payloads.

    ``extra_*``: valid payloads added beside the synth stream's (their points
    go into the oracle too).
    """

    topics: list[str]
    shards_file: str
    synth: Synth
    recs: list[Rec]
    extra_points: list[np.ndarray] = field(default_factory=list)
    extra_meta: list[tuple[int, int]] = field(default_factory=list)  # (org, intake_ns)

    def add_valid(self, rec: Rec, org: int, intake_ns: int, pts: np.ndarray) -> None:
        self.recs.append(rec)
        self.extra_points.append(pts)
        self.extra_meta.append((org, intake_ns))

    def expected(self) -> dict[tuple[str, int], pa.Table]:
        s = self.synth
        if not self.extra_points:
            return s.expected()
        pts = np.concatenate([s.points, *self.extra_points])
        org = np.concatenate([s.pay_org, [o for o, _ in self.extra_meta]]).astype(np.uint32)
        intake = np.concatenate([s.pay_intake_ns.astype(np.uint64),
                                 np.array([i for _, i in self.extra_meta], dtype=np.uint64)])
        n = np.concatenate([s.pay_n, [len(p) for p in self.extra_points]]).astype(np.int64)
        return oracle(pts, org, intake, n, load(self.shards_file), s.cfg.window_seconds)


def stream(topics: list[str], root: Path, points: int, seed: int,
           invalid_rate: float = 0.05) -> Stream:
    """A synth stream over ``topics`` (4 partitions each) for 2 shared shards."""
    shards_file = root / "shards.yaml"
    shards_file.write_text("shared_shards: 2\n")
    s = generate(ProduceConfig(brokers="unused", topics=topics, points=points, orgs=8,
                                     hours=8, seed=seed, invalid_rate=invalid_rate,
                                     shards_file=str(shards_file)))
    recs = [Rec(r.topic, r.partition, r.key, r.value,
                None if r.kind in (VALID, DUPLICATE) else r.kind)
            for r in s.records]
    return Stream(topics, str(shards_file), s, recs)


def quarantine_lines(raw: StoreConfig) -> Counter[tuple[str, int, int]]:
    """Quarantine lines per Kafka coordinate."""
    store = Store(raw)
    out: Counter[tuple[str, int, int]] = Counter()
    for key in store.list("quarantine"):
        for line in store.get(key).splitlines():
            if line.strip():
                e = QuarantineEntry.model_validate_json(line)
                out[(e.topic, e.partition, e.offset)] += 1
    return out


def finish(st: Stream, raw: StoreConfig, produced: dict[tuple[str, int, int], Rec],
           out: Path, client: Any) -> dict[str, int]:
    """Assert the game day ended exact (module doc); returns a few counts."""
    check_complete(raw, produced)
    lines = quarantine_lines(raw)
    invalid = {c for c, r in produced.items() if r.reason is not None}
    assert set(lines) == invalid
    twice = {c: n for c, n in lines.items() if n != 1}
    assert not twice, f"quarantined more than once: {sorted(twice.items())[:5]}"
    cfg = BuildConfig(raw=raw, out=StoreConfig(url=str(out)),
                      shards=load(st.shards_file).all_shards(), windows=[],
                      shards_file=st.shards_file, ready=True, grace_s=0.0)
    rep = build_ready(cfg, client)
    assert rep.exit_code == 0, rep.summary()
    expected = st.expected()
    built = sorted((o.shard, o.start) for o in rep.by("built"))
    assert built == sorted(expected), (built, sorted(expected), rep.summary())
    assert mismatches(Store(cfg.out), expected) == []
    return {"valid": sum(r.reason is None for r in produced.values()),
            "invalid": len(invalid),
            "points": sum(t.num_rows for t in expected.values())}


def hostile(org: int, good: bytes) -> list[tuple[bytes | None, bytes, str]]:
    """``(key, value, reason)`` beyond synth's kinds: a 5000-digit key, zstd bombs."""
    return [
        (b"9" * 5000, good, pl.KEY_MISMATCH),  # five thousand nines is no org
        (b"0" * 4990 + b"x" + str(org).encode(), good, pl.BAD_KEY),
        (str(org).encode(), zstd_bomb(4 << 30, declared=False), pl.TOO_LARGE),
        (str(org).encode(), zstd_bomb(4 << 30, declared=True), pl.TOO_LARGE),
    ]


def zstd_bomb(size: int, *, declared: bool) -> bytes:
    """A zstd frame of RLE blocks (4 bytes per 128 KiB) that expands to ``size``
    zero bytes: 4 GiB from 128 KiB; ``declared`` puts the size in the header."""
    block = 128 << 10
    n = size // block
    desc = 0xC0 if declared else 0x00  # frame content size: 8 bytes, or absent
    head = (0xFD2FB528).to_bytes(4, "little") + bytes([desc, 7 << 3])  # window 2**17
    if declared:
        head += (n * block).to_bytes(8, "little")
    rle = (1 << 1) | (block << 3)  # block type 1 (RLE), size 128 KiB
    body = (rle.to_bytes(3, "little") + b"\x00") * (n - 1)
    return head + body + (rle | 1).to_bytes(3, "little") + b"\x00"  # last block
