"""zstd frames without Python per frame: a header/block walker and libzstd for numba.

:func:`walk` reads a zstd frame's header and block headers (no decompression)
and returns its length, its declared content size and, for a frame that does
not declare it, an upper bound of its decompressed size computed from the
block headers (raw and RLE blocks regenerate exactly their stated size, a
compressed block at most ``min(window size, 128 KiB)``).  It is the single
implementation behind :func:`tailor.format.payload.decompress` and the batch
validator (:mod:`tailor.format.validate_batch`).

:data:`DECOMPRESS` is libzstd's ``ZSTD_decompressDCtx`` as a ctypes function,
taken from python-zstandard's own cffi build of libzstd, or the system
``libzstd`` if that build is missing; None when neither loads (callers then
fall back to python-zstandard per payload).  :data:`DECOMPRESS_ADDR` is its
address: a numba kernel takes it as an argument and calls it with
:func:`call_decompress` (``nogil``), so that the kernel holds no address of
this process and numba can cache it on disk.  Every argument is passed as
``size_t`` (pointers included: same registers on LP64 platforms).  :func:`dctx` gives
each thread its own ``ZSTD_DCtx`` (not thread-safe), freed when the thread ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import weakref
from typing import Any, Final

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

ZSTD_MAGIC: Final = 0xFD2FB528
BLOCK_MAX: Final = 128 * 1024
#: Window logs above this make python-zstandard's streaming decoder refuse a
#: frame (zstd's default ``windowLogMax``); the batch path leaves such frames
#: to python-zstandard so that both agree.
WINDOW_LOG_MAX: Final = 27

# walk() status codes.
OK: Final = 0
NO_MAGIC: Final = 1
RESERVED_BIT: Final = 2
TRUNCATED: Final = 3
RESERVED_BLOCK: Final = 4
MESSAGES: Final = {
    NO_MAGIC: "does not start with a zstd frame magic",
    RESERVED_BIT: "reserved bit set in the zstd frame header",
    TRUNCATED: "truncated zstd frame",
    RESERVED_BLOCK: "reserved zstd block type",
}
UNKNOWN: Final = -1  # content size not declared / bound not computable


@numba.njit(cache=True, nogil=True)
def walk(buf, start, n):  # type: ignore[no-untyped-def]
    """Walk the zstd frame at ``buf[start:start + n]`` (uint8).

    Returns ``(status, length, content_size, bound)``: ``status`` is
    :data:`OK` or why the bytes do not start with one complete frame;
    ``length`` the frame's length in bytes; ``content_size`` the declared
    decompressed size or :data:`UNKNOWN`; ``bound`` an upper bound of the
    decompressed size when none is declared, :data:`UNKNOWN` when the window
    exceeds :data:`WINDOW_LOG_MAX` (or a size is declared).
    """
    if n < 6:
        return NO_MAGIC, 0, UNKNOWN, UNKNOWN
    magic = (np.int64(buf[start]) | (np.int64(buf[start + 1]) << 8)
             | (np.int64(buf[start + 2]) << 16) | (np.int64(buf[start + 3]) << 24))
    if magic != ZSTD_MAGIC:
        return NO_MAGIC, 0, UNKNOWN, UNKNOWN
    fhd = np.int64(buf[start + 4])
    fcs_flag = fhd >> 6
    single = (fhd >> 5) & 1
    if fhd & 0x08:
        return RESERVED_BIT, 0, UNKNOWN, UNKNOWN
    did_size = (0, 1, 2, 4)[fhd & 3]
    pos = np.int64(5 + (0 if single else 1) + did_size)
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    content = np.int64(UNKNOWN)
    if fcs_size and pos + fcs_size <= n:
        v = np.uint64(0)
        for k in range(fcs_size):
            v |= np.uint64(buf[start + pos + k]) << np.uint64(8 * k)
        if fcs_size == 2:
            v += np.uint64(256)
        # Sizes past 2**62 cannot be legal here: report them as "huge".
        content = np.int64(v) if v < np.uint64(1 << 62) else np.int64(1 << 62)
    block_max = np.int64(BLOCK_MAX)
    window_ok = True
    if not single:
        wd = np.int64(buf[start + 5])
        wlog = 10 + (wd >> 3)
        if wlog > WINDOW_LOG_MAX:
            window_ok = False
        else:
            window = (np.int64(1) << wlog) + ((np.int64(1) << wlog) // 8) * (wd & 7)
            block_max = min(block_max, window)
    pos += fcs_size
    bound = np.int64(0)
    while True:
        if pos + 3 > n:
            return TRUNCATED, 0, UNKNOWN, UNKNOWN
        bh = (np.int64(buf[start + pos]) | (np.int64(buf[start + pos + 1]) << 8)
              | (np.int64(buf[start + pos + 2]) << 16))
        last = bh & 1
        btype = (bh >> 1) & 3
        bsize = bh >> 3
        if btype == 3:
            return RESERVED_BLOCK, 0, UNKNOWN, UNKNOWN
        bound += bsize if btype != 2 else block_max
        pos += 3 + (1 if btype == 1 else bsize)
        if last:
            break
    pos += 4 if (fhd >> 2) & 1 else 0
    if pos > n:
        return TRUNCATED, 0, UNKNOWN, UNKNOWN
    if content != UNKNOWN or not window_ok:
        bound = np.int64(UNKNOWN)
    return OK, pos, content, bound


# -- libzstd for numba -------------------------------------------------------------

_SIZE_T: Final = ctypes.c_size_t
_DECOMPRESS_T: Final = ctypes.CFUNCTYPE(_SIZE_T, _SIZE_T, _SIZE_T, _SIZE_T, _SIZE_T, _SIZE_T)
#: ``ZSTD_isError(r)`` is ``r > ERROR_MIN`` (libzstd returns ``(size_t)-code``).
ERROR_MIN: Final = 2**64 - 120


def _load() -> tuple[Any, Any, Any] | None:
    """``(decompress, create, free)`` ctypes functions of one libzstd, or None."""
    if ctypes.sizeof(ctypes.c_void_p) != ctypes.sizeof(_SIZE_T):
        return None
    create_t = ctypes.CFUNCTYPE(_SIZE_T)
    free_t = ctypes.CFUNCTYPE(_SIZE_T, _SIZE_T)
    try:
        from zstandard import _cffi  # type: ignore[attr-defined]

        ffi, lib = _cffi.ffi, _cffi.lib

        def addr(name: str) -> int:
            return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))

        return (_DECOMPRESS_T(addr("ZSTD_decompressDCtx")), create_t(addr("ZSTD_createDCtx")),
                free_t(addr("ZSTD_freeDCtx")))
    except (ImportError, AttributeError):
        pass
    path = ctypes.util.find_library("zstd")
    if path is None:
        return None
    try:
        so = ctypes.CDLL(path)
        return (_DECOMPRESS_T(("ZSTD_decompressDCtx", so)), create_t(("ZSTD_createDCtx", so)),
                free_t(("ZSTD_freeDCtx", so)))
    except (OSError, AttributeError):
        return None


_FUNCS: Final = _load()
DECOMPRESS: Final = _FUNCS[0] if _FUNCS is not None else None
#: The address of :data:`DECOMPRESS` (None when it is None), for :func:`call_decompress`.
DECOMPRESS_ADDR: Final = (ctypes.cast(DECOMPRESS, ctypes.c_void_p).value
                          if DECOMPRESS is not None else None)


def _call_decompress(typingctx: Any, fn: Any, dctx: Any, dst: Any, cap: Any, src: Any,
                     n: Any) -> Any:
    """In a numba kernel: ``ZSTD_decompressDCtx(dctx, dst, cap, src, n)`` through the
    function at address ``fn`` (:data:`DECOMPRESS_ADDR`); every argument and the
    result are ``uint64``.  The address is a run-time value, so a kernel calling
    this can be cached (``cache=True``)."""
    u64 = types.uint64
    sig = u64(u64, u64, u64, u64, u64, u64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i64 = ir.IntType(64)
        ptr = builder.inttoptr(args[0], ir.FunctionType(i64, [i64] * 5).as_pointer())
        return builder.call(ptr, list(args[1:]))

    return sig, codegen


call_decompress: Final[Any] = intrinsic(_call_decompress)
_LOCAL = threading.local()


class _DCtx:
    """Owns one ``ZSTD_DCtx``; freed when its thread's locals go away."""

    def __init__(self) -> None:
        assert _FUNCS is not None
        self.ptr = int(_FUNCS[1]())
        if self.ptr == 0:
            raise MemoryError("ZSTD_createDCtx failed")
        weakref.finalize(self, _FUNCS[2], self.ptr)


def dctx() -> int:
    """This thread's ``ZSTD_DCtx*`` as an int; requires :data:`DECOMPRESS`."""
    d: _DCtx | None = getattr(_LOCAL, "dctx", None)
    if d is None:
        d = _LOCAL.dctx = _DCtx()
    return d.ptr
