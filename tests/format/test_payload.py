"""tailor.format.payload: the section-1 codec and every named invalid reason."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
import zstandard

from tailor.errors import InvalidPayload
from tailor.format import payload

ORG = 3_000_000_007  # >= 2**31: catches signed u32 handling


def pts(n: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros(n, dtype=payload.RECORD_DTYPE)
    a["metric_id"] = rng.integers(0, 2**64, n, dtype=np.uint64)
    a["context_key"] = rng.integers(0, 2**64, n, dtype=np.uint64)
    a["ts"] = rng.integers(0, 2**32, n, dtype=np.uint32)
    a["value"] = rng.normal(size=n)
    return a


def frame(raw: bytes, *, checksum: bool = False, size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=checksum, write_content_size=size).compress(raw)


def raw(org: int = ORG, n: int = 3, *, magic: bytes = payload.MAGIC, reserved: int = 0,
        n_header: int | None = None, tail: bytes = b"") -> bytes:
    return (payload.HEADER.pack(magic, org, 123, n if n_header is None else n_header, reserved)
            + pts(n).tobytes() + tail)


def why(key: bytes | None, value: bytes | None) -> str:
    with pytest.raises(InvalidPayload) as ei:
        payload.validate(key, value)
    assert ei.value.reason in payload.REASONS
    return ei.value.reason


KEY = str(ORG).encode()
GOOD = frame(raw())


@pytest.mark.parametrize("checksum", [False, True])
@pytest.mark.parametrize("size", [False, True])
def test_round_trip(checksum: bool, size: bool) -> None:
    a = pts(50)
    a["value"][:4] = [np.nan, np.inf, -np.inf, -0.0]
    value = payload.encode(ORG, 2**63 + 5, a, checksum=checksum, content_size=size)
    assert (zstandard.frame_content_size(value) >= 0) == size
    p = payload.validate(KEY, value)
    assert (p.org_id, p.intake_ns, p.n_points) == (ORG, 2**63 + 5, 50)
    got = p.points()
    assert got.tobytes() == a.tobytes()  # value bits kept, NaN included
    assert not got.flags.writeable


def test_empty_payload_and_any_ts_valid() -> None:
    assert payload.validate(b"0", payload.encode(0, 0, pts(0))).n_points == 0
    a = pts(3)
    a["ts"] = [0, 2**32 - 1, 1]
    assert payload.validate(KEY, payload.encode(ORG, 1, a)).n_points == 3


def test_leading_zeros_in_key_are_digits() -> None:
    assert payload.validate(b"000" + KEY, GOOD).org_id == ORG
    assert payload.validate(b"0" * 5000 + KEY, GOOD).org_id == ORG  # past int()'s 4300 digits
    assert payload.validate(b"0" * 5000, payload.encode(0, 1, pts(1))).org_id == 0


@pytest.mark.parametrize("key", [b"9" * 5000, b"1" + b"0" * 10, b"4294967296", b"0" + b"9" * 11])
def test_keys_past_every_org_id_mismatch(key: bytes) -> None:
    assert payload.parse_key(key) is None
    assert why(key, GOOD) == payload.KEY_MISMATCH
    assert why(key, b"junk") == payload.NOT_ONE_FRAME  # the value is checked first, never int()
    assert payload.parse_key(b"0" * 9000 + b"4294967295") == 2**32 - 1


@pytest.mark.parametrize("value", [None, b""])
def test_missing_value(value: bytes | None) -> None:
    assert why(KEY, value) == payload.MISSING_VALUE


@pytest.mark.parametrize("key", [None, b""])
def test_missing_key(key: bytes | None) -> None:
    assert why(key, GOOD) == payload.MISSING_KEY


@pytest.mark.parametrize("key", [
    b"-" + KEY, b"+" + KEY, b" " + KEY, KEY + b" ", KEY + b"\n", b"\n" + KEY, KEY + b".0",
    b"1.5", "١٢٣".encode(), "５".encode(), b"0x1f", KEY + b"a", b"\x00" + KEY, b"1_000",
])
def test_bad_key(key: bytes) -> None:
    assert why(key, GOOD) == payload.BAD_KEY


@pytest.mark.parametrize("key", [str(ORG + 1).encode(), str(ORG + 2**32).encode(), b"0"])
def test_key_mismatch(key: bytes) -> None:
    assert why(key, GOOD) == payload.KEY_MISMATCH


SKIPPABLE = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"


@pytest.mark.parametrize("value", [
    GOOD + b"\x00",  # trailing bytes after the frame
    GOOD + GOOD,  # two frames
    SKIPPABLE,  # a skippable frame alone
    SKIPPABLE + GOOD,
    GOOD + SKIPPABLE,
    GOOD[:-1],  # truncated
    GOOD[:10],
    b"not zstd at all",
    frame(raw(), checksum=True)[:-2],  # truncated checksum
])
def test_not_one_frame(value: bytes) -> None:
    assert why(KEY, value) == payload.NOT_ONE_FRAME


@pytest.mark.parametrize("single", [True, False])
def test_corrupt_data(single: bool) -> None:
    head = (0xFD2FB528).to_bytes(4, "little") + (b"\x20\x64" if single else b"\x00\x58")
    body = b"\x12\x34" * 10
    value = head + (1 | (2 << 1) | (len(body) << 3)).to_bytes(3, "little") + body
    assert why(KEY, value) == payload.DECOMPRESS_FAILED


@pytest.mark.parametrize("size", [False, True])
def test_checksum_mismatch(size: bool) -> None:
    value = bytearray(frame(raw(), checksum=True, size=size))
    value[-1] ^= 0x40
    assert why(KEY, bytes(value)) == payload.CHECKSUM_MISMATCH


def zeros_frame(n_bytes: int, *, declared: bool) -> bytes:
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=declared)
    co = cctx.compressobj(size=n_bytes if declared else -1)
    n = (n_bytes - payload.HEADER_SIZE) // payload.RECORD_SIZE
    out = [co.compress(payload.HEADER.pack(payload.MAGIC, ORG, 1, n, 0))]
    chunk = bytes(1 << 20)
    left = n_bytes - payload.HEADER_SIZE
    while left > 0:
        out.append(co.compress(chunk[:min(left, len(chunk))]))
        left -= len(chunk)
    out.append(co.flush())
    return b"".join(out)


@pytest.mark.parametrize("declared", [True, False])
def test_too_large_never_allocates(declared: bool) -> None:
    value = zeros_frame(payload.MAX_DECOMPRESSED + payload.RECORD_SIZE * 1000, declared=declared)
    assert len(value) < 64 * 1024
    tracemalloc.start()
    try:
        assert why(KEY, value) == payload.TOO_LARGE
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, peak  # well under the 64 MiB limit


def test_exactly_the_limit_is_valid_undeclared() -> None:
    n = (payload.MAX_DECOMPRESSED - payload.HEADER_SIZE) // payload.RECORD_SIZE
    size = payload.HEADER_SIZE + n * payload.RECORD_SIZE
    p = payload.validate(KEY, zeros_frame(size, declared=False))
    assert p.n_points == n and len(p.raw) == size


@pytest.mark.parametrize("magic", [b"TLP2", b"tlp1", b"\x00\x00\x00\x00"])
def test_bad_magic(magic: bytes) -> None:
    assert why(KEY, frame(raw(magic=magic))) == payload.BAD_MAGIC


def test_bad_reserved() -> None:
    assert why(KEY, frame(raw(reserved=1))) == payload.BAD_RESERVED


@pytest.mark.parametrize("value", [
    frame(raw(n=3, n_header=4)), frame(raw(n=3, n_header=2)), frame(raw(tail=b"\x00")),
    frame(raw(n=3, tail=b"\x00" * 27)), frame(payload.MAGIC + struct.pack("<I", ORG)),
    frame(raw(n=0, n_header=2**32 - 1)),
])
def test_bad_size(value: bytes) -> None:
    assert why(KEY, value) == payload.BAD_SIZE


def test_value_checked_before_key_mismatch() -> None:
    # the reasons are exclusive: a record gets exactly one, in contract order
    assert why(None, None) == payload.MISSING_VALUE
    assert why(b"-1", b"junk") == payload.BAD_KEY
    assert why(b"1", frame(raw(magic=b"XXXX"))) == payload.BAD_MAGIC
