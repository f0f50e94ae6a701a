"""The batch validator and :func:`tailor.format.payload.validate` each give, record by record,
what docs/contracts.md, "Point payload" says (labels by construction, a plain-Python oracle for
damaged frames), and the batch framing agrees with :func:`tailor.format.framing.encode_frame`.
Pure, no Kafka."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pytest
import zstandard

from tailor.errors import InvalidPayload
from tailor.format import framing, payload, validate_batch, zstdframe
from tailor.format.layout import HOUR
from tailor.shards import Dedicated, ShardMap

T0 = 1767225600


def _points(n: int, seed: int, spread_hours: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.zeros(n, dtype=payload.RECORD_DTYPE)
    p["metric_id"] = rng.integers(0, 50, n)
    p["ts"] = T0 + rng.integers(0, spread_hours * HOUR, n)
    p["value"] = rng.normal(size=n)
    return p


@dataclass(frozen=True)
class Valid:
    """What a valid record must give: its header fields and points (known by construction)."""

    org: int
    intake_ns: int
    points: np.ndarray


Want = Valid | frozenset[str]  # valid, or invalid with one of these reasons
ZSTD_REASONS: Final = frozenset({payload.NOT_ONE_FRAME, payload.DECOMPRESS_FAILED,
                                 payload.CHECKSUM_MISMATCH})


def _bad(*reasons: str) -> frozenset[str]:
    return frozenset(reasons)


def _oracle(key: bytes | None, value: bytes | None) -> Want:
    """docs/contracts.md, "Point payload" in plain Python, with the zstandard library to decompress.

    For values damaged at random: whichever zstd failure applies is accepted; a
    value that still decompresses to one whole frame is judged on its content.
    """
    if not value:
        return _bad(payload.MISSING_VALUE)
    if not key:
        return _bad(payload.MISSING_KEY)
    if not key.isdigit():  # bytes.isdigit: ASCII 0-9 only
        return _bad(payload.BAD_KEY)
    if len(value) >= 4 and value[:4] in {bytes([0x50 + k, 0x2A, 0x4D, 0x18]) for k in range(16)}:
        return _bad(payload.NOT_ONE_FRAME)  # a skippable frame carries no data frame
    d = zstandard.ZstdDecompressor().decompressobj()
    try:
        raw = d.decompress(value)
    except zstandard.ZstdError:
        return ZSTD_REASONS
    if not d.eof:
        return ZSTD_REASONS  # cut short
    if d.unused_data:
        return _bad(payload.NOT_ONE_FRAME)
    if len(raw) > 64 * 2**20:
        return _bad(payload.TOO_LARGE)
    if len(raw) < 24:
        return _bad(payload.BAD_SIZE)
    magic, org, intake, n, reserved = struct.unpack_from("<4sIQII", raw)
    if magic != b"TLP1":
        return _bad(payload.BAD_MAGIC)
    if reserved:
        return _bad(payload.BAD_RESERVED)
    if len(raw) != 24 + 28 * n:
        return _bad(payload.BAD_SIZE)
    if int(key) != org:
        return _bad(payload.KEY_MISMATCH)
    return Valid(org, intake, np.frombuffer(raw, payload.RECORD_DTYPE, n, 24))


def _records() -> list[tuple[bytes | None, bytes | None, Want]]:
    """Valid payloads of every shape and invalid ones of every kind, plus mutations; each
    with what it must give, by construction (mutations: by :func:`_oracle`)."""
    rng = np.random.default_rng(7)
    out: list[tuple[bytes | None, bytes | None, Want]] = []
    for i in range(24):
        org = int(rng.integers(0, 2**32)) if i % 5 == 0 else 100 + i
        pts = _points(int(rng.integers(0, 60)), i, 1 + i % 12)
        value = payload.encode(org, 10**18 + i, pts, checksum=bool(i % 2), content_size=bool(i % 3))
        out.append((str(org).encode(), value, Valid(org, 10**18 + i, pts)))
    pts2 = _points(2, 1)
    raw = payload.HEADER.pack(payload.MAGIC, 9, 1, 2, 0) + pts2.tobytes()
    c = zstandard.ZstdCompressor
    big = bytes(payload.MAX_DECOMPRESSED + 1)
    out += [
        (b"0009", c().compress(raw), Valid(9, 1, pts2)),  # leading zeros: int value 9
        (b"9" * 30, c().compress(raw), _bad(payload.KEY_MISMATCH)),  # far past u32
        (b"", c().compress(raw), _bad(payload.MISSING_KEY)),
        (None, c().compress(raw), _bad(payload.MISSING_KEY)),
        (b"9", None, _bad(payload.MISSING_VALUE)), (b"9", b"", _bad(payload.MISSING_VALUE)),
        (b"-9", c().compress(raw), _bad(payload.BAD_KEY)),
        (b"9 ", c().compress(raw), _bad(payload.BAD_KEY)),
        (b"\xd9\xa9", c().compress(raw), _bad(payload.BAD_KEY)),  # an Arabic-Indic digit
        (b"9", c(write_content_size=False).compress(raw[:-1]), _bad(payload.BAD_SIZE)),
        (b"9", c().compress(b""), _bad(payload.BAD_SIZE)),  # declared size 0
        (b"9", c(write_content_size=False).compress(b""), _bad(payload.BAD_SIZE)),
        (b"9", c().compress(raw) + b"\0", _bad(payload.NOT_ONE_FRAME)),
        (b"9", b"\x50\x2a\x4d\x18\x00\x00\x00\x00", _bad(payload.NOT_ONE_FRAME)),  # skippable
        (b"9", c().compress(raw.replace(b"TLP1", b"TLP2")), _bad(payload.BAD_MAGIC)),
        (b"9", c().compress(raw[:20] + b"\1" + raw[21:]), _bad(payload.BAD_RESERVED)),
        (b"9", c(level=1, write_content_size=False).compress(big), _bad(payload.TOO_LARGE)),
        (b"9", c(level=1).compress(big), _bad(payload.TOO_LARGE)),
    ]
    good = payload.encode(9, 5, _points(40, 3), checksum=True, content_size=False)
    for k in range(60):  # flipped and truncated frames
        b = bytearray(good)
        if k % 3 == 0:
            b = b[: int(rng.integers(1, len(b)))]
        else:
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        out.append((b"9", bytes(b), _oracle(b"9", bytes(b))))
    return out


def _assert_gives(i: int, want: Want, ok: bool, reason: str | None, fields: tuple[int, ...],
                  hours: dict[int, int]) -> None:
    if isinstance(want, frozenset):
        assert not ok and reason in want, (i, reason, want)
        return
    assert ok, (i, reason)
    ts = want.points["ts"].astype(np.int64)
    assert fields == (want.org, want.intake_ns, len(want.points), 24 + 28 * len(want.points),
                      *((ts.min(), ts.max()) if len(ts) else (-1, -1))), i
    h, n = np.unique(ts // HOUR * HOUR, return_counts=True)
    assert hours == dict(zip(h.tolist(), n.tolist(), strict=True)), i


def test_oracle_labels_agree_with_itself() -> None:
    """The hand labels and the plain-Python oracle say the same (the oracle is sound)."""
    for i, (key, value, want) in enumerate(_records()):
        if value is not None and len(value) > 2**16:
            continue  # too_large: the oracle would decompress 64 MiB
        got = _oracle(key, value)
        if isinstance(want, Valid):
            assert isinstance(got, Valid) and got.points.tobytes() == want.points.tobytes(), i
        else:
            assert got == want or (want <= ZSTD_REASONS and got == ZSTD_REASONS), (i, got, want)


def test_check_gives_what_the_contract_says() -> None:
    assert zstdframe.DECOMPRESS is not None, "libzstd must load: the kernel is what is tested"
    recs = _records()
    chk = validate_batch.check([k for k, _, _ in recs], [v for _, v, _ in recs])
    assert chk.ok.sum() >= 25 and (~chk.ok).sum() >= 40
    for i, (_key, _value, want) in enumerate(recs):
        sel = chk.hour_rec == i
        hours = dict(zip(chk.hour_start[sel].tolist(), chk.hour_points[sel].tolist(),
                         strict=True))
        err = chk.errors.get(i)
        assert chk.ok[i] == (err is None), i
        _assert_gives(i, want, bool(chk.ok[i]), err.reason if err else None,
                      (int(chk.org[i]), int(chk.intake_ns[i]), int(chk.n_points[i]),
                       int(chk.raw_len[i]), int(chk.min_ts[i]), int(chk.max_ts[i])), hours)


def test_validate_gives_what_the_contract_says() -> None:
    """The Python path (which decides every record the kernel does not accept)."""
    for i, (key, value, want) in enumerate(_records()):
        try:
            p = payload.validate(key, value)
        except InvalidPayload as exc:
            _assert_gives(i, want, False, exc.reason, (), {})
            continue
        ts = p.points()["ts"].astype(np.int64)
        h, n = np.unique(ts // HOUR * HOUR, return_counts=True)
        _assert_gives(i, want, True, None, (
            p.org_id, p.intake_ns, p.n_points, len(p.raw),
            *((int(ts.min()), int(ts.max())) if len(ts) else (-1, -1))),
            dict(zip(h.tolist(), n.tolist(), strict=True)))
        assert isinstance(want, Valid) and p.points().tobytes() == want.points.tobytes(), i


def test_an_unexpected_exception_costs_one_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug while classifying one record makes it invalid (internal_error, with the
    exception text), never an exception out of check(); the others are decided."""
    real = payload.validate

    def buggy(key: bytes | None, value: bytes | None) -> payload.Payload:
        if key == b"7":
            raise RuntimeError("boom at record 7")
        return real(key, value)

    monkeypatch.setattr(payload, "validate", buggy)
    raw = payload.HEADER.pack(payload.MAGIC, 7, 1, 0, 0)
    bad_size = zstandard.ZstdCompressor().compress(raw + b"x")  # goes to the Python path
    keys: list[bytes | None] = [b"5", b"7", b"9" * 5000, b"5"]
    vals: list[bytes | None] = [payload.encode(5, 1, _points(3, 1)), bad_size, b"junk",
                                payload.encode(5, 2, _points(3, 2))]
    chk = validate_batch.check(keys, vals)
    assert chk.ok.tolist() == [True, False, False, True]
    assert chk.errors[1].reason == payload.INTERNAL_ERROR
    assert "boom at record 7" in chk.errors[1].detail
    assert chk.errors[2].reason == payload.NOT_ONE_FRAME


def test_kernel_accepts_ordinary_payloads_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid payloads with at most K_HOURS hours never reach the Python path."""
    assert zstdframe.DECOMPRESS is not None, "libzstd must load: the kernel is what is tested"
    calls: list[int] = []
    real = payload.validate
    monkeypatch.setattr(payload, "validate", lambda k, v: calls.append(1) or real(k, v))
    vals = [payload.encode(5, i, _points(30, i, validate_batch.K_HOURS), content_size=bool(i % 2))
            for i in range(20)]
    chk = validate_batch.check([b"5"] * 20, list(vals))
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
    shard_map = ShardMap(shared_shards=8, dedicated={
        3: Dedicated(3), 11: Dedicated(11, since=T0), 19: Dedicated(19, until=T0)})
    org = np.array([3, 11, 11, 19, 19, 4, 2**32 - 1], np.int64)
    ts = np.array([0, T0 - 1, T0, T0 - 1, T0, 5, 5], np.int64)
    names = shard_map.all_shards()
    got = [names[c] for c in shard_map.shard_codes(org, ts)]
    assert got == [shard_map.shard_for(int(o), int(t)) for o, t in zip(org, ts, strict=True)]


@pytest.mark.services  # two interpreters in subprocesses (a compile: seconds)
def test_a_second_process_loads_the_kernel_from_numba_cache(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_DEBUG_CACHE": "1"}
    cmd = [sys.executable, "-c", "from tailor.format import validate_batch; validate_batch.warm()"]

    def run() -> str:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stderr
        return res.stdout + res.stderr

    run()
    second = [ln for ln in run().splitlines() if "validate_batch._kernel" in ln]
    assert any(ln.startswith("[cache] data loaded from") for ln in second), second
    assert not any("data saved" in ln for ln in second), second
