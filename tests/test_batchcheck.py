"""The batch validator agrees with :func:`tailor.payload.validate` record by record,
and the batch framing with :func:`tailor.framing.encode_frame`.  Pure, no Kafka."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from tailor import batchcheck, framing, zstdframe
from tailor import payload as pl
from tailor.errors import InvalidPayload
from tailor.layout import HOUR
from tailor.shards import Dedicated, ShardMap

T0 = 1767225600


def _points(n: int, seed: int, spread_hours: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.zeros(n, dtype=pl.RECORD_DTYPE)
    p["metric_id"] = rng.integers(0, 50, n)
    p["ts"] = T0 + rng.integers(0, spread_hours * HOUR, n)
    p["value"] = rng.normal(size=n)
    return p


def _records() -> list[tuple[bytes | None, bytes | None]]:
    """Valid payloads of every shape and invalid ones of every kind, plus mutations."""
    rng = np.random.default_rng(7)
    out: list[tuple[bytes | None, bytes | None]] = []
    for i in range(24):
        org = int(rng.integers(0, 2**32)) if i % 5 == 0 else 100 + i
        value = pl.encode(org, 10**18 + i, _points(int(rng.integers(0, 60)), i, 1 + i % 12),
                          checksum=bool(i % 2), content_size=bool(i % 3))
        out.append((str(org).encode(), value))
    raw = pl.HEADER.pack(pl.MAGIC, 9, 1, 2, 0) + _points(2, 1).tobytes()
    c = zstandard.ZstdCompressor
    out += [
        (b"0009", c().compress(raw)),  # leading zeros: int value 9
        (b"9" * 30, c().compress(raw)),  # far past u32
        (b"", c().compress(raw)), (None, c().compress(raw)), (b"9", None), (b"9", b""),
        (b"-9", c().compress(raw)), (b"9 ", c().compress(raw)), (b"\xd9\xa9", c().compress(raw)),
        (b"9", c(write_content_size=False).compress(raw[:-1])),
        (b"9", c().compress(b"")),  # declared size 0
        (b"9", c(write_content_size=False).compress(b"")),
        (b"9", c().compress(raw) + b"\0"),
        (b"9", b"\x50\x2a\x4d\x18\x00\x00\x00\x00"),  # skippable frame
        (b"9", c().compress(raw.replace(b"TLP1", b"TLP2"))),
        (b"9", c().compress(raw[:20] + b"\1" + raw[21:])),  # reserved field
        (b"9", c(level=1, write_content_size=False).compress(bytes(pl.MAX_DECOMPRESSED + 1))),
        (b"9", c(level=1).compress(bytes(pl.MAX_DECOMPRESSED + 1))),
    ]
    good = pl.encode(9, 5, _points(40, 3), checksum=True, content_size=False)
    for k in range(60):  # flipped and truncated frames
        b = bytearray(good)
        if k % 3 == 0:
            b = b[: int(rng.integers(1, len(b)))]
        else:
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        out.append((b"9", bytes(b)))
    return out


def _expect(key: bytes | None, value: bytes | None) -> pl.Payload | str:
    try:
        return pl.validate(key, value)
    except InvalidPayload as exc:
        return exc.reason


def test_check_agrees_with_validate() -> None:
    recs = _records()
    chk = batchcheck.check([k for k, _ in recs], [v for _, v in recs])
    for i, (key, value) in enumerate(recs):
        exp = _expect(key, value)
        if isinstance(exp, str):
            assert not chk.ok[i] and chk.errors[i].reason == exp, i
            continue
        assert chk.ok[i] and i not in chk.errors, i
        ts = exp.points()["ts"].astype(np.int64)
        assert (chk.org[i], chk.intake_ns[i], chk.n_points[i], chk.raw_len[i]) == (
            exp.org_id, exp.intake_ns, exp.n_points, len(exp.raw))
        assert (chk.min_ts[i], chk.max_ts[i]) == ((ts.min(), ts.max()) if len(ts) else (-1, -1))
        sel = chk.hour_rec == i
        got = dict(zip(chk.hour_start[sel].tolist(), chk.hour_points[sel].tolist(), strict=True))
        h, n = np.unique(ts // HOUR * HOUR, return_counts=True)
        assert got == dict(zip(h.tolist(), n.tolist(), strict=True)), i


def test_an_unexpected_exception_costs_one_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug while classifying one record makes it invalid (internal_error, with the
    exception text), never an exception out of check(); the others are decided."""
    real = pl.validate

    def buggy(key: bytes | None, value: bytes | None) -> pl.Payload:
        if key == b"7":
            raise RuntimeError("boom at record 7")
        return real(key, value)

    monkeypatch.setattr(pl, "validate", buggy)
    raw = pl.HEADER.pack(pl.MAGIC, 7, 1, 0, 0)
    bad_size = zstandard.ZstdCompressor().compress(raw + b"x")  # goes to the Python path
    keys: list[bytes | None] = [b"5", b"7", b"9" * 5000, b"5"]
    vals: list[bytes | None] = [pl.encode(5, 1, _points(3, 1)), bad_size, b"junk",
                                pl.encode(5, 2, _points(3, 2))]
    chk = batchcheck.check(keys, vals)
    assert chk.ok.tolist() == [True, False, False, True]
    assert chk.errors[1].reason == pl.INTERNAL_ERROR and "boom at record 7" in chk.errors[1].detail
    assert chk.errors[2].reason == pl.NOT_ONE_FRAME


def test_kernel_accepts_ordinary_payloads_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid payloads with at most K_HOURS hours never reach the Python path."""
    if zstdframe.DECOMPRESS is None:
        pytest.skip("libzstd not loadable")
    calls: list[int] = []
    real = pl.validate
    monkeypatch.setattr(pl, "validate", lambda k, v: calls.append(1) or real(k, v))
    vals = [pl.encode(5, i, _points(30, i, batchcheck.K_HOURS), content_size=bool(i % 2))
            for i in range(20)]
    chk = batchcheck.check([b"5"] * 20, list(vals))
    assert chk.ok.all() and not calls


def test_walk_bound_covers_the_content() -> None:
    for size in (0, 1, 1000, 200_000, 1_000_000):
        data = np.random.default_rng(size).integers(0, 4, size).astype(np.uint8).tobytes()
        for level in (1, 19):
            f = zstandard.ZstdCompressor(level=level, write_content_size=False).compress(data)
            status, length, content, bound = zstdframe.walk(np.frombuffer(f, np.uint8), 0, len(f))
            assert (status, length, content) == (zstdframe.OK, len(f), zstdframe.UNKNOWN)
            assert bound >= size


def test_encode_frames_and_retopic_match_encode_frame() -> None:
    rng = np.random.default_rng(0)
    bodies = [rng.integers(0, 255, int(rng.integers(0, 300))).astype(np.uint8).tobytes()
              for _ in range(40)]
    vlen = np.array([len(b) for b in bodies], np.int64)
    voff = np.concatenate([[0], np.cumsum(vlen)[:-1]]).astype(np.int64)
    n = len(bodies)
    order = rng.permutation(n)

    def col(hi: int) -> np.ndarray:
        return rng.integers(0, hi, n).astype(np.int64)

    raw, org, npts, off, part, tix = (col(2**32), col(2**32), col(2**32), col(2**62),
                                      col(2**31), col(3))
    intake = rng.integers(0, 2**63, n).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    buf, pos = framing.encode_frames(
        np.frombuffer(b"".join(bodies), np.uint8), voff, vlen, order, raw_len=raw, org=org,
        n_points=npts, intake_ns=intake, offset=off, partition=part, topic_idx=tix)

    def expected(topic: np.ndarray) -> bytes:
        return b"".join(framing.encode_frame(
            bodies[i], raw_len=int(raw[i]), org_id=int(org[i]), n_points=int(npts[i]),
            intake_ns=int(intake[i]), offset=int(off[i]), partition=int(part[i]),
            topic_idx=int(topic[i])) for i in order)

    assert buf.tobytes() == expected(tix)
    mapping = np.array([2, 0, 1], np.int64)
    framing.retopic(buf, pos, mapping)
    assert buf.tobytes() == expected(mapping[tix])


def test_shard_codes_match_shard_for() -> None:
    smap = ShardMap(shared_shards=8, dedicated={
        3: Dedicated(3), 11: Dedicated(11, since=T0), 19: Dedicated(19, until=T0)})
    org = np.array([3, 11, 11, 19, 19, 4, 2**32 - 1], np.int64)
    ts = np.array([0, T0 - 1, T0, T0 - 1, T0, 5, 5], np.int64)
    names = smap.all_shards()
    got = [names[c] for c in smap.shard_codes(org, ts)]
    assert got == [smap.shard_for(int(o), int(t)) for o, t in zip(org, ts, strict=True)]
