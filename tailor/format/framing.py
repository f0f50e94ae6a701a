"""Raw-object framing: how ingest stores payloads and how builds find them again.

A raw object is a concatenation of frames.  Each frame carries one Kafka record
value *as it was received* (its zstd bytes) behind a 52-byte header::

    off size field
      0    4 magic b"\\x89TRF"          sync marker for resynchronisation
      4    4 u32 header_crc            CRC-32 of bytes [8, 52)
      8    4 u32 body_len              zstd bytes that follow the header
     12    4 u32 raw_len               decompressed size (validated at ingest)
     16    4 u32 org_id
     20    4 u32 n_points
     24    8 u64 intake_ns
     32    8 u64 offset                Kafka offset
     40    4 u32 partition             Kafka partition
     44    2 u16 topic_idx             index into the object record's topics
     46    2 u16 flags                 0
     48    4 u32 body_crc              CRC-32 of the body

A reader may start at any byte: it scans for the magic and accepts a frame only
when both CRCs match, so a torn or corrupted frame is detected and skipped and
the next good frame is found.  The CRC is zlib's CRC-32 (reflected 0xEDB88320).

The scanner (:func:`scan`) is a numba kernel: no Python object per frame; the CRCs
of big bodies are then checked by ``zlib.crc32`` (one call per body, :data:`DEFER_CRC`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

import numba
import numpy as np

FRAME_MAGIC: Final = b"\x89TRF"
_HEAD = struct.Struct("<IIIIQQIHHI")  # the 44 bytes after magic + header_crc
HEADER_SIZE: Final = 8 + _HEAD.size
assert HEADER_SIZE == 52
_MAGIC_U32: Final = int.from_bytes(FRAME_MAGIC, "little")


def encode_frame(
    body: bytes,
    *,
    raw_len: int,
    org_id: int,
    n_points: int,
    intake_ns: int,
    offset: int,
    partition: int,
    topic_idx: int = 0,
) -> bytes:
    """One frame around ``body`` (a payload's zstd bytes, unchanged)."""
    head = _HEAD.pack(len(body), raw_len, org_id, n_points, intake_ns, offset, partition,
                      topic_idx, 0, zlib.crc32(body))
    return FRAME_MAGIC + zlib.crc32(head).to_bytes(4, "little") + head + body


def frame_header(body_len: int) -> int:
    """Total frame size for a body of ``body_len`` bytes."""
    return HEADER_SIZE + body_len


def _crc_table() -> np.ndarray:
    table = np.zeros((8, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[0, i] = c
    for i in range(256):
        c = int(table[0, i])
        for k in range(1, 8):
            c = int(table[0, c & 0xFF]) ^ (c >> 8)
            table[k, i] = c
    return table


_CRC_TABLE: Final = _crc_table()


@numba.njit(cache=True, nogil=True)
def crc32(buf: np.ndarray, start: int, end: int, table: np.ndarray) -> int:
    """zlib-compatible CRC-32 of ``buf[start:end]`` (slice-by-8)."""
    c = np.uint32(0xFFFFFFFF)
    i = start
    while i + 8 <= end:
        lo = c ^ (np.uint32(buf[i]) | (np.uint32(buf[i + 1]) << 8)
                  | (np.uint32(buf[i + 2]) << 16) | (np.uint32(buf[i + 3]) << 24))
        c = (table[7, lo & 0xFF] ^ table[6, (lo >> 8) & 0xFF]
             ^ table[5, (lo >> 16) & 0xFF] ^ table[4, lo >> 24]
             ^ table[3, buf[i + 4]] ^ table[2, buf[i + 5]]
             ^ table[1, buf[i + 6]] ^ table[0, buf[i + 7]])
        i += 8
    while i < end:
        c = table[0, (c ^ buf[i]) & 0xFF] ^ (c >> 8)
        i += 1
    return int(c ^ np.uint32(0xFFFFFFFF))


@numba.njit(cache=True, nogil=True)
def _u32(b: np.ndarray, p: int) -> int:
    return (int(b[p]) | (int(b[p + 1]) << 8) | (int(b[p + 2]) << 16) | (int(b[p + 3]) << 24))


@numba.njit(cache=True, nogil=True)
def _u64(b: np.ndarray, p: int) -> np.uint64:
    return np.uint64(_u32(b, p)) | (np.uint64(_u32(b, p + 4)) << np.uint64(32))


@numba.njit(cache=True, nogil=True)
def _put(b: np.ndarray, p: int, v: int, size: int) -> None:
    for k in range(size):
        b[p + k] = (v >> (8 * k)) & 0xFF


@numba.njit(cache=True, nogil=True)
def _seal_header(out: np.ndarray, q: int, table: np.ndarray) -> None:
    _put(out, q + 4, crc32(out, q + 8, q + HEADER_SIZE, table), 4)


@numba.njit(cache=True, nogil=True)
def _encode_frames(vbuf, voff, vlen, order, raw_len, org, npts, intake, offset,  # type: ignore[no-untyped-def]
                   partition, topic_idx, table, out, pos):
    q = 0
    for j in range(order.shape[0]):
        i = order[j]
        pos[j] = q
        n = vlen[i]
        body = q + HEADER_SIZE
        out[body:body + n] = vbuf[voff[i]:voff[i] + n]
        out[q:q + 4] = np.frombuffer(FRAME_MAGIC, np.uint8)
        _put(out, q + 8, n, 4)
        _put(out, q + 12, raw_len[i], 4)
        _put(out, q + 16, org[i], 4)
        _put(out, q + 20, npts[i], 4)
        _put(out, q + 24, intake[i], 8)
        _put(out, q + 32, offset[i], 8)
        _put(out, q + 40, partition[i], 4)
        _put(out, q + 44, topic_idx[i], 2)
        _put(out, q + 46, 0, 2)
        _put(out, q + 48, crc32(out, body, body + n, table), 4)
        _seal_header(out, q, table)
        q = body + n
    return q


def encode_frames(vbuf: np.ndarray, voff: np.ndarray, vlen: np.ndarray, order: np.ndarray, *,
                  raw_len: np.ndarray, org: np.ndarray, n_points: np.ndarray,
                  intake_ns: np.ndarray, offset: np.ndarray, partition: np.ndarray,
                  topic_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames of bodies ``vbuf[voff[i]:voff[i] + vlen[i]]`` for ``i`` in ``order``.

    Batch form of :func:`encode_frame` (same bytes), one numba pass without
    the GIL.  The per-record arrays are indexed by record (not by position in
    ``order``).  Returns ``(buf, pos)``: the frames back to back (uint8) and
    where each starts.
    """
    total = int(vlen[order].sum()) + HEADER_SIZE * len(order)
    out = np.empty(total, np.uint8)
    pos = np.empty(len(order), np.int64)
    _encode_frames(vbuf, voff, vlen, order, raw_len, org, n_points, intake_ns.view(np.int64),
                   offset, partition, topic_idx, _CRC_TABLE, out, pos)
    return out, pos


@numba.njit(cache=True, nogil=True)
def _retopic(buf, pos, mapping, table):  # type: ignore[no-untyped-def]
    for j in range(pos.shape[0]):
        q = pos[j]
        _put(buf, q + 44, mapping[int(buf[q + 44]) | (int(buf[q + 45]) << 8)], 2)
        _seal_header(buf, q, table)


def retopic(buf: np.ndarray, pos: np.ndarray, mapping: np.ndarray) -> None:
    """Rewrite in place the topic_idx ``t`` of the frames at ``pos`` as ``mapping[t]``."""
    _retopic(buf, pos, mapping, _CRC_TABLE)


# Columns of the frame table returned by scan().
F_POS, F_BODY_LEN, F_RAW_LEN, F_ORG, F_NPTS, F_PARTITION, F_TOPIC = range(7)
SCAN_NEED_MORE: Final = -1


@numba.njit(cache=True, nogil=True)
def _scan(buf, start_limit, at_boundary, table, ints, u64s, bad, defer):  # type: ignore[no-untyped-def]
    """Frames of ``buf`` (see :func:`scan`); a body of ``defer`` bytes or more is taken
    without checking its CRC (the caller checks it)."""
    n = buf.shape[0]
    magic = np.uint32(0x46525489)
    pos = 0
    nf = 0
    nbad = 0
    expect = at_boundary
    need_more = -1
    while pos < start_limit:
        ok = False
        if pos + 8 <= n and np.uint32(_u32(buf, pos)) == magic:
            if pos + HEADER_SIZE > n:
                need_more = pos
                break
            if _u32(buf, pos + 4) == crc32(buf, pos + 8, pos + HEADER_SIZE, table):
                body_len = _u32(buf, pos + 8)
                end = pos + HEADER_SIZE + body_len
                if end > n:
                    need_more = pos
                    break
                if body_len >= defer or _u32(buf, pos + 48) == crc32(
                        buf, pos + HEADER_SIZE, end, table):
                    ok = True
        elif pos + 8 > n and expect:
            need_more = pos
            break
        if ok:
            ints[nf, 0] = pos
            ints[nf, 1] = _u32(buf, pos + 8)
            ints[nf, 2] = _u32(buf, pos + 12)
            ints[nf, 3] = _u32(buf, pos + 16)
            ints[nf, 4] = _u32(buf, pos + 20)
            ints[nf, 5] = _u32(buf, pos + 40)
            ints[nf, 6] = int(buf[pos + 44]) | (int(buf[pos + 45]) << 8)
            u64s[nf, 0] = _u64(buf, pos + 24)
            u64s[nf, 1] = _u64(buf, pos + 32)
            nf += 1
            pos += HEADER_SIZE + _u32(buf, pos + 8)
            expect = True
        else:
            if expect:
                bad[nbad] = pos
                nbad += 1
                expect = False
            pos += 1
    return nf, nbad, need_more, pos


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Frames that start in ``[0, start_limit)`` of a buffer.

    ``ints[:, F_*]`` and ``u64s[:, (intake_ns, offset)]`` describe each frame,
    ``corrupt`` holds the buffer positions where a frame was expected but the
    bytes were not a valid frame.  ``need_more`` is the position of a frame
    that starts inside the limit but does not end inside the buffer (-1 if
    none): read more bytes from there and scan again.
    """

    ints: np.ndarray
    u64s: np.ndarray
    corrupt: np.ndarray
    need_more: int
    stopped_at: int


def scan(buf: np.ndarray, start_limit: int, *, at_boundary: bool) -> ScanResult:
    """Scan ``buf`` (uint8) for frames starting before ``start_limit``.

    ``at_boundary`` says that ``buf[0]`` is a known frame boundary (the start
    of an object): junk there is corruption, not the tail of an earlier frame.
    Never raises on bad bytes; they are reported in ``corrupt``.
    """
    cap = max(1, min(start_limit, buf.shape[0]) // HEADER_SIZE + 1)
    ints = np.empty((cap, 7), dtype=np.int64)
    u64s = np.empty((cap, 2), dtype=np.uint64)
    bad = np.empty(cap, dtype=np.int64)
    limit = min(start_limit, buf.shape[0])
    nf, nbad, need_more, stopped = _scan(buf, limit, at_boundary, _CRC_TABLE, ints, u64s, bad,
                                         DEFER_CRC)
    if not _bodies_ok(buf, ints[:nf]):  # a bad big body: the exact scan decides what to skip
        nf, nbad, need_more, stopped = _scan(buf, limit, at_boundary, _CRC_TABLE, ints, u64s,
                                             bad, NO_DEFER)
    return ScanResult(ints[:nf], u64s[:nf], bad[:nbad], need_more, stopped)


#: Bodies of at least this many bytes get their CRC from ``zlib.crc32`` (2.7x the numba
#: kernel's speed on 32 KiB bodies, and it releases the GIL above 5 KiB); the kernel's
#: CRC is faster below a few KiB, where a Python call per body costs more than the CRC.
DEFER_CRC: Final = 8 * 1024
NO_DEFER: Final = 2**62


def _bodies_ok(buf: np.ndarray, ints: np.ndarray) -> bool:
    """Whether every frame of ``ints`` whose body the kernel did not check has a good body CRC.

    When all do, the kernel's deferred scan found exactly the frames a full scan finds:
    it only differs from one at a frame whose body CRC fails.
    """
    big = ints[ints[:, F_BODY_LEN] >= DEFER_CRC]
    if not len(big):
        return True
    pos = big[:, F_POS]
    want = buf[(pos + 48)[:, None] + np.arange(4)].copy().view("<u4")[:, 0]
    mv = buf.data
    for p, blen, crc in zip(pos.tolist(), big[:, F_BODY_LEN].tolist(), want.tolist(),
                            strict=True):
        body = p + HEADER_SIZE
        if zlib.crc32(mv[body:body + blen]) != crc:
            return False
    return True
