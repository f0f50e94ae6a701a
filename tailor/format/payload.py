"""The point payload codec of docs/contracts.md, "Point payload" (Tailor's input format).

Pure functions, no I/O.  :func:`validate` is the single place that decides
whether a Kafka record is a valid payload; every invalid kind has a name in
:data:`REASONS` so it can be counted and quarantined.
"""

from __future__ import annotations

import re
import struct
import threading
from dataclasses import dataclass
from typing import Final

import numpy as np
import zstandard

from tailor.errors import InvalidPayload
from tailor.format import zstdframe

MAGIC: Final = b"TLP1"
HEADER = struct.Struct("<4sIQII")  # magic, org_id, intake_ns, n_points, reserved
HEADER_SIZE: Final = HEADER.size  # 24
RECORD_SIZE: Final = 28
MAX_DECOMPRESSED: Final = 64 * 1024 * 1024

#: One packed record: ``u64 metric_id, u64 context_key, u32 ts, f64 value``.
RECORD_DTYPE: Final = np.dtype(
    [("metric_id", "<u8"), ("context_key", "<u8"), ("ts", "<u4"), ("value", "<f8")]
)
assert RECORD_DTYPE.itemsize == RECORD_SIZE

# Reasons, one per invalid kind (docs/contracts.md, "Invalid payloads").
MISSING_VALUE: Final = "missing_value"
NOT_ONE_FRAME: Final = "not_one_zstd_frame"
DECOMPRESS_FAILED: Final = "decompress_failed"
CHECKSUM_MISMATCH: Final = "checksum_mismatch"
TOO_LARGE: Final = "too_large"
BAD_MAGIC: Final = "bad_magic"
BAD_RESERVED: Final = "bad_reserved"
BAD_SIZE: Final = "bad_size"
MISSING_KEY: Final = "missing_key"
BAD_KEY: Final = "bad_key"
KEY_MISMATCH: Final = "key_mismatch"
#: Not an invalid kind of docs/contracts.md: classifying the record raised an
#: unexpected exception (a bug).  The record is quarantined with the exception
#: text instead of stopping ingest (:func:`tailor.format.validate_batch.check`).
INTERNAL_ERROR: Final = "internal_error"
REASONS: Final = (
    MISSING_VALUE, NOT_ONE_FRAME, DECOMPRESS_FAILED, CHECKSUM_MISMATCH, TOO_LARGE,
    BAD_MAGIC, BAD_RESERVED, BAD_SIZE, MISSING_KEY, BAD_KEY, KEY_MISMATCH,
)

_KEY_RE: Final = re.compile(rb"[0-9]+\Z")
#: Significant digits of the largest org id (``2**32 - 1`` has 10).
_ORG_DIGITS: Final = 10
_READ_CHUNK: Final = 128 << 10
_LOCAL = threading.local()


def _dctx() -> zstandard.ZstdDecompressor:
    """A per-thread decompressor (ZstdDecompressor is not thread-safe)."""
    d: zstandard.ZstdDecompressor | None = getattr(_LOCAL, "dctx", None)
    if d is None:
        d = _LOCAL.dctx = zstandard.ZstdDecompressor()
    return d


@dataclass(frozen=True, slots=True)
class Payload:
    """A validated payload: its header fields and its decompressed bytes."""

    org_id: int
    intake_ns: int
    n_points: int
    raw: bytes  # decompressed, HEADER_SIZE + RECORD_SIZE * n_points bytes

    def points(self) -> np.ndarray:
        """The records as a read-only structured array (no copy)."""
        return np.frombuffer(self.raw, RECORD_DTYPE, self.n_points, HEADER_SIZE)


def encode(
    org_id: int,
    intake_ns: int,
    points: np.ndarray,
    *,
    checksum: bool = True,
    content_size: bool = True,
    level: int = 3,
) -> bytes:
    """Encode ``points`` (array of :data:`RECORD_DTYPE`) as one zstd frame."""
    pts = np.ascontiguousarray(points, dtype=RECORD_DTYPE)
    raw = HEADER.pack(MAGIC, org_id, intake_ns, len(pts), 0) + pts.tobytes()
    cctx = zstandard.ZstdCompressor(
        level=level, write_checksum=checksum, write_content_size=content_size
    )
    return cctx.compress(raw)


def parse_key(key: bytes | None) -> int | None:
    """The integer value of a record key, or None when it exceeds every org id.

    A key may be of any length: leading zeros are digits like any other and
    only the value counts (``b"0001989"`` is 1989).  Digits are compared as a
    string after stripping leading zeros, so an unbounded key never reaches
    ``int()`` (which refuses more than 4300 digits); a value above ``2**32 - 1``
    cannot equal a header's u32 org id and is returned as None.  Raises
    :class:`InvalidPayload` (``missing_key``, ``bad_key``) if malformed.
    """
    if not key:
        raise InvalidPayload(MISSING_KEY, "the record has no key; intake must set it to the org id")
    if _KEY_RE.match(key) is None:
        raise InvalidPayload(BAD_KEY, f"key {key[:40]!r} is not ASCII decimal digits")
    digits = key.lstrip(b"0")
    if len(digits) > _ORG_DIGITS:
        return None
    value = int(digits or b"0")
    return value if value < 1 << 32 else None


def decompress(value: bytes) -> bytes:
    """Decompress exactly one zstd frame, never allocating more than the limit.

    A frame that declares its size is decompressed into that many bytes.
    One that does not is decompressed in one go into the bound its block
    headers give (:func:`tailor.format.zstdframe.walk`) when that is within the
    limit; otherwise it is first streamed through a small buffer to count its
    size (a too-large frame is rejected as soon as the count passes the
    limit), then decompressed into exactly that size.  Raises
    :class:`InvalidPayload` for every section-1 zstd failure.
    """
    status, length, _, bound = zstdframe.walk(np.frombuffer(value, np.uint8), 0, len(value))
    if status != zstdframe.OK:
        raise InvalidPayload(NOT_ONE_FRAME, zstdframe.MESSAGES[status])
    if len(value) > length:
        raise InvalidPayload(NOT_ONE_FRAME, f"{len(value) - length} bytes after the zstd frame")
    try:
        declared = zstandard.frame_content_size(value)
        if declared >= 0:
            if declared > MAX_DECOMPRESSED:
                raise InvalidPayload(TOO_LARGE, f"frame declares {declared} bytes")
            return _dctx().decompress(value)
        if 0 < bound <= MAX_DECOMPRESSED:
            return _dctx().decompress(value, max_output_size=bound)
        total = 0
        buf = bytearray(_READ_CHUNK)
        with _dctx().stream_reader(value, read_across_frames=False) as reader:
            while k := reader.readinto(buf):
                total += k
                if total > MAX_DECOMPRESSED:
                    raise InvalidPayload(TOO_LARGE, f"decompresses to more than {MAX_DECOMPRESSED}")
        return _dctx().decompress(value, max_output_size=total) if total else b""
    except zstandard.ZstdError as exc:
        reason = CHECKSUM_MISMATCH if "checksum" in str(exc).lower() else DECOMPRESS_FAILED
        raise InvalidPayload(reason, str(exc)) from None


def check_raw(raw: bytes) -> tuple[int, int, int]:
    """Validate a decompressed payload; returns ``(org_id, intake_ns, n_points)``."""
    if len(raw) < HEADER_SIZE:
        raise InvalidPayload(BAD_SIZE, f"{len(raw)} bytes is shorter than the 24-byte header")
    magic, org_id, intake_ns, n_points, reserved = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise InvalidPayload(BAD_MAGIC, f"magic {magic!r}, expected {MAGIC!r}")
    if reserved != 0:
        raise InvalidPayload(BAD_RESERVED, f"reserved field is {reserved}, expected 0")
    if len(raw) != HEADER_SIZE + RECORD_SIZE * n_points:
        raise InvalidPayload(BAD_SIZE, f"{len(raw)} bytes for n_points={n_points}, expected "
                                       f"{HEADER_SIZE + RECORD_SIZE * n_points}")
    return org_id, intake_ns, n_points


def validate(key: bytes | None, value: bytes | None) -> Payload:
    """Validate one Kafka record against docs/contracts.md, "Point payload".

    Returns the decoded :class:`Payload`; raises :class:`InvalidPayload` with
    a reason from :data:`REASONS`.  Never allocates more than
    :data:`MAX_DECOMPRESSED` bytes for the decompressed value.
    """
    if value is None or len(value) == 0:
        raise InvalidPayload(MISSING_VALUE, "the record has no value")
    key_org = parse_key(key)
    raw = decompress(value)
    org_id, intake_ns, n_points = check_raw(raw)
    if key_org is None:
        digits = len((key or b"").lstrip(b"0"))
        raise InvalidPayload(KEY_MISMATCH, f"key is a {digits}-digit number (larger than any "
                                           f"org id), header says {org_id}")
    if key_org != org_id:
        raise InvalidPayload(KEY_MISMATCH, f"key says org {key_org}, header says {org_id}")
    return Payload(org_id, intake_ns, n_points, raw)
