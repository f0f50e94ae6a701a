"""Invalid Kafka records of every reason of :data:`tailor.format.payload.REASONS`.

:class:`InvalidCrafter` builds, for a reason, a ``(key, value)`` that
:func:`tailor.format.payload.validate` rejects with exactly that reason; each call
cycles through the reason's variants (docs/contracts.md, "Invalid payloads").
Pure but for the random generator it draws from.
"""

from __future__ import annotations

import numpy as np
import zstandard

from tailor.format import payload


class InvalidCrafter:
    """Builds an invalid record of a given reason; variants cycle per reason."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.seen: dict[str, int] = {}

    def _points(self, n: int) -> np.ndarray:
        pts = np.zeros(n, dtype=payload.RECORD_DTYPE)
        pts["metric_id"] = self.rng.bit_generator.random_raw(n)
        pts["context_key"] = self.rng.bit_generator.random_raw(n)
        pts["ts"] = self.rng.integers(1_700_000_000, 1_800_000_000, n)
        pts["value"] = self.rng.normal(0, 100, n)
        return pts

    def _raw(self, org: int, *, magic: bytes = payload.MAGIC, reserved: int = 0,
             n: int | None = None, declared: int | None = None, tail: bytes = b"") -> bytes:
        n = int(self.rng.integers(1, 20)) if n is None else n
        return payload.HEADER.pack(magic, org, int(self.rng.integers(1, 2**62)),
                             n if declared is None else declared, reserved) + \
            self._points(n).tobytes() + tail

    def _frame(self, raw: bytes, *, checksum: bool | None = None, size: bool | None = None
               ) -> bytes:
        c = bool(self.rng.random() < 0.5) if checksum is None else checksum
        s = bool(self.rng.random() < 0.5) if size is None else size
        return zstandard.ZstdCompressor(write_checksum=c, write_content_size=s).compress(raw)

    def make(self, kind: str, org: int) -> tuple[str, bytes | None, bytes | None]:
        """``(kind, key, value)`` such that ``validate(key, value)`` gives ``kind``."""
        v = self.seen.get(kind, 0)
        self.seen[kind] = v + 1
        key = str(org).encode()
        good = self._frame(self._raw(org))
        if kind == payload.MISSING_VALUE:
            return kind, key, (None, b"")[v % 2]
        if kind == payload.MISSING_KEY:
            return kind, (None, b"")[v % 2], good
        if kind == payload.BAD_KEY:
            bad = [b"-" + key, b"+" + key, b" " + key, key + b" ", key + b"\n", key + b".0",
                   "١٢٣".encode(), b"0x" + key, key + b"a", "５".encode() + key, b"\x00" + key]
            return kind, bad[v % len(bad)], good
        if kind == payload.KEY_MISMATCH:
            other = [(org + 1) % 2**32, org + 2**32, org * 10 + 1]
            return kind, str(other[v % len(other)]).encode(), good
        if kind == payload.NOT_ONE_FRAME:
            skippable = (0x184D2A50 + v % 16).to_bytes(4, "little") + (4).to_bytes(4, "little") \
                + b"skip"
            variants = [
                lambda: good + b"\x00trailing",
                lambda: good + self._frame(self._raw(org)),
                lambda: skippable + good,
                lambda: good + skippable,
                lambda: good[: len(good) - 1 - int(self.rng.integers(0, min(8, len(good) - 6)))],
                lambda: b"junk" + self.rng.bytes(40),
            ]
            return kind, key, variants[v % len(variants)]()
        if kind == payload.DECOMPRESS_FAILED:
            single = v % 2 == 0
            head = (0xFD2FB528).to_bytes(4, "little") + (b"\x20\x64" if single else b"\x00\x58")
            content = [b"\x00" * 20, b"\x12\x34" * 10, b"\xff" * 20][v % 3]
            bh = 1 | (2 << 1) | (len(content) << 3)
            return kind, key, head + bh.to_bytes(3, "little") + content
        if kind == payload.CHECKSUM_MISMATCH:
            frame = bytearray(self._frame(self._raw(org), checksum=True, size=v % 2 == 0))
            frame[-1 - v % 4] ^= 1 << int(self.rng.integers(0, 8))
            return kind, key, bytes(frame)
        if kind == payload.TOO_LARGE:
            return kind, key, too_large_frame(org, declared=v % 2 == 0)
        if kind == payload.BAD_MAGIC:
            magic = [b"TLP2", b"PLT1", b"\x00\x00\x00\x00", b"tlp1"][v % 4]
            return kind, key, self._frame(self._raw(org, magic=magic))
        if kind == payload.BAD_RESERVED:
            return kind, key, self._frame(self._raw(org, reserved=int(self.rng.integers(1, 2**32))))
        if kind == payload.BAD_SIZE:
            n = int(self.rng.integers(2, 20))
            raws = [self._raw(org, n=n, declared=n + 1), self._raw(org, n=n, declared=n - 1),
                    self._raw(org, n=n, tail=b"\x00" * int(self.rng.integers(1, 28))),
                    payload.MAGIC + org.to_bytes(4, "little") + b"\x00" * 8]
            return kind, key, self._frame(raws[v % len(raws)])
        raise ValueError(f"unknown invalid kind {kind!r}; expected one of {payload.REASONS}")


def too_large_frame(org: int, *, declared: bool) -> bytes:
    """A small frame of a valid header followed by zeros, > 64 MiB decompressed.

    Streams zeros through the compressor: never holds the decompressed bytes.
    """
    size = payload.MAX_DECOMPRESSED + (1 << 20)
    n = (size - payload.HEADER_SIZE) // payload.RECORD_SIZE
    head = payload.HEADER.pack(payload.MAGIC, org, 1, n, 0)
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=declared)
    co = cctx.compressobj(size=payload.HEADER_SIZE + n * payload.RECORD_SIZE if declared else -1)
    out = [co.compress(head)]
    left = n * payload.RECORD_SIZE
    zeros = bytes(1 << 20)
    while left > 0:
        out.append(co.compress(zeros[: min(left, len(zeros))]))
        left -= len(zeros)
    out.append(co.flush())
    return b"".join(out)
