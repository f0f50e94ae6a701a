"""Read stage: ranged GETs of one byte range of a raw object + frame scan.

A task owns the frames that *start* in its range ``[start, end)``: it skips
bytes before the first frame boundary (the tail of a frame owned by the
previous range) and reads past ``end`` as far as the last owned frame needs.
So the ranges of an object cover each frame exactly once, whatever the range
size.  Corrupt bytes are reported (object offset), never raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tailor.errors import BuildError
from tailor.format import framing
from tailor.storage import Store

from .plan import ReadTask

#: Extra bytes fetched past a range up front, so most boundary frames need no second GET.
MIN_TAIL = 64 * 1024
MAX_TAIL = 4 * 2**20


@dataclass(frozen=True, slots=True)
class RawRange:
    """The owned frames of one range, with the bytes that hold them.

    ``buf[i]`` is object byte ``base + i``; ``ints``/``u64s`` are the frame
    table of :func:`tailor.format.framing.scan` with ``F_POS`` relative to ``buf``;
    ``corrupt`` holds object offsets of corrupt frames (sorted).
    """

    key: str
    base: int
    buf: np.ndarray
    ints: np.ndarray
    u64s: np.ndarray
    corrupt: np.ndarray


def _u32(buf: np.ndarray, p: int) -> int:
    return int.from_bytes(buf[p:p + 4].tobytes(), "little")


def scan_owned(fetch: Callable[[int, int], bytes], task: ReadTask) -> RawRange:
    """Frames starting in ``[task.start, task.end)``, fetching more on ``need_more``.

    ``fetch(a, b)`` returns object bytes ``[a, b)``.  Blocks on it; raises
    what it raises (e.g. :class:`~tailor.errors.StorageError`).
    """
    limit = task.end - task.start
    tail = min(task.size - task.end, max(MIN_TAIL, min(MAX_TAIL, limit // 8)))
    buf = np.frombuffer(fetch(task.start, task.end + tail), dtype=np.uint8)
    ints: list[np.ndarray] = []
    u64s: list[np.ndarray] = []
    bad: list[np.ndarray] = []
    origin = 0
    boundary = task.start == 0
    for _ in range(2 * (limit // framing.HEADER_SIZE + 2)):
        res = framing.scan(buf[origin:], limit - origin, at_boundary=boundary)
        if len(res.ints):
            fi = res.ints.copy()
            fi[:, framing.F_POS] += origin
            ints.append(fi)
            u64s.append(res.u64s)
        if len(res.corrupt):
            bad.append(res.corrupt + origin)
        if res.need_more < 0:
            break
        p = origin + res.need_more
        if len(res.ints):
            last = res.ints[-1]
            synced = int(last[framing.F_POS] + framing.HEADER_SIZE + last[framing.F_BODY_LEN]) \
                == res.need_more
        else:
            synced = boundary and res.need_more == 0
        need_end = p + framing.HEADER_SIZE
        if need_end <= len(buf):
            need_end += _u32(buf, p + 8)
        have_end = task.start + len(buf)
        if have_end >= task.size:
            # Nothing more to read: the frame at p is cut off by the object's end.
            if synced:
                bad.append(np.array([p], dtype=np.int64))
            if p + 1 >= limit:
                break
            origin, boundary = p + 1, False
            continue
        want = min(task.size, task.start + max(need_end, len(buf) + 1))
        more = np.frombuffer(fetch(have_end, want), dtype=np.uint8)
        if len(more) == 0:
            raise BuildError("raw object is shorter than its index record says", key=task.key,
                             offset=have_end, reason=f"index size {task.size}",
                             fix="the index record is stale; re-run ingest for that batch")
        buf = np.concatenate([buf, more])
        origin, boundary = p, synced
    else:
        raise BuildError("frame scan did not converge", key=task.key, offset=task.start,
                         fix="report this as a bug with the object key and range")
    cat_ints = np.concatenate(ints) if ints else np.empty((0, 7), dtype=np.int64)
    cat_u64 = np.concatenate(u64s) if u64s else np.empty((0, 2), dtype=np.uint64)
    corrupt = (np.concatenate(bad) + task.start) if bad else np.empty(0, dtype=np.int64)
    return RawRange(task.key, task.start, buf, cat_ints, cat_u64, np.sort(corrupt))


class ReadFn:
    """``fetch(a, b)`` → object bytes ``[a, b)`` of one key, through a Store."""

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key = store, key

    def __call__(self, a: int, b: int) -> bytes:
        return self.store.get_range(self.key, a, b)


def read_range(store: Store, task: ReadTask) -> RawRange:
    """Ranged GET(s) of ``task`` and the frame scan (see :func:`scan_owned`)."""
    return scan_owned(ReadFn(store, task.key), task)
