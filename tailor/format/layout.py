"""Where things live in object storage, and the time-window arithmetic.

Raw store (``--raw``)::

    objects/{hh}/{shard}/{batch}.tlr          framed payloads (tailor.format.framing)
    index/{shard}/{YYYY-MM-DDTHH}/{batch}.json one record per object per hour
                                              of point ts it holds points of
    index/{shard}/{YYYY-MM-DDTHH}+{N}h/{batch}.json  ... or per coarser bucket
                                              of N hours (objects spanning many
                                              hours: see index_placement)
    quarantine/{topic}/{partition}/{offset:020d}.json  one invalid record
    watermarks/{group}/{topic}/{partition}.json
    _probe/{name}                             `tailor ingest`'s start-up write check

``hh`` is a 4-hex-digit prefix derived from the batch id (spreads S3 load,
deterministic so that a replayed batch rewrites the same key).

Output store (``--out``), docs/contracts.md, "S files"::

    {shard}/{YYYY-MM-DDTHH}/_manifest.json
    {shard}/{YYYY-MM-DDTHH}/part-{attempt}-{i:05d}.parquet
    _claims/{shard}/{YYYY-MM-DDTHH}/{attempt}.json   an attempt's one try to publish
    _leases/{shard}/{YYYY-MM-DDTHH}/{n}.json         `build --ready` leases

Folders starting with ``_`` at the root are Tailor's bookkeeping, never chunks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from typing import Final

from tailor.errors import ConfigError

HOUR: Final = 3600
WINDOW_SECONDS: Final = 4 * HOUR  # default chunk length: docs/contracts.md, "S files"
_STAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}\Z")


def stamp(ts: int) -> str:
    """``YYYY-MM-DDTHH`` (UTC) of Unix time ``ts``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H")


def parse_stamp(text: str, *, what: str = "window") -> int:
    """Unix seconds of a ``YYYY-MM-DDTHH`` stamp; :class:`ConfigError` if malformed."""
    if not _STAMP_RE.match(text):
        raise ConfigError(f"{what} {text!r} is not of the form YYYY-MM-DDTHH",
                          fix="write a UTC hour such as 2026-01-01T04")
    try:
        t = dt.datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a real date and hour",
                          fix="write a UTC hour such as 2026-01-01T04") from None
    return int(t.timestamp())


def window_start(ts: int, length: int = WINDOW_SECONDS) -> int:
    """Start of the epoch-aligned window holding ``ts``."""
    return ts - ts % length


def parse_window(text: str, length: int = WINDOW_SECONDS) -> int:
    """A window start; it must be aligned to ``length``."""
    start = parse_stamp(text)
    if start % length:
        raise ConfigError(f"window {text!r} is not aligned to {length // HOUR} h windows",
                          fix=f"use a start such as {stamp(window_start(start, length))}")
    return start


def parse_windows(text: str, length: int = WINDOW_SECONDS) -> list[int]:
    """``FROM..TO``: every window whose start is in ``[FROM, TO)``."""
    a, sep, b = text.partition("..")
    if not sep:
        raise ConfigError(f"windows {text!r} is not FROM..TO",
                          fix="write e.g. 2026-01-01T00..2026-01-02T00")
    lo, hi = parse_stamp(a, what="FROM"), parse_stamp(b, what="TO")
    if hi <= lo:
        raise ConfigError(f"windows {text!r} is empty (TO is not after FROM)",
                          fix="TO is exclusive: put it after FROM")
    first = window_start(lo, length)
    return list(range(first if first >= lo else first + length, hi, length))


def hours(start: int, length: int = WINDOW_SECONDS) -> list[int]:
    """Hour starts covering ``[start, start + length)``."""
    return list(range(start - start % HOUR, start + length, HOUR))


def batch_prefix(batch_id: str) -> str:
    return hashlib.sha256(batch_id.encode()).hexdigest()[:4]


def object_key(shard: str, batch_id: str) -> str:
    return f"objects/{batch_prefix(batch_id)}/{shard}/{batch_id}.tlr"


def index_dir(shard: str, hour: int, level: int = 0) -> str:
    """The index folder of the level-``level`` bucket holding ``hour``
    (``{YYYY-MM-DDTHH}`` for an hour, ``{YYYY-MM-DDTHH}+{N}h`` for a coarser
    bucket of ``N`` hours starting then)."""
    if level == 0:
        return f"index/{shard}/{stamp(hour)}"
    span = index_span(level)
    return f"index/{shard}/{stamp(hour - hour % span)}+{span // HOUR}h"


def index_key(shard: str, hour: int, batch_id: str, level: int = 0) -> str:
    return f"{index_dir(shard, hour, level)}/{batch_id}.json"


# -- the index levels ------------------------------------------------------------------
# An object's record is copied into every bucket of *one* level that holds
# points of it: the finest level where that takes at most MAX_INDEX_COPIES
# copies and MAX_INDEX_ENTRIES copied hour entries.  Level 0 buckets are hours
# (what almost every object uses); level k buckets are INDEX_FANOUT**k hours,
# aligned to the epoch; the last level is one bucket for every u32 ts.  So one
# object costs at most MAX_INDEX_COPIES index PUTs, whatever its points' ts,
# and a reader of a window lists its hours plus one bucket per coarser level.

INDEX_FANOUT: Final = 64
INDEX_LEVELS: Final = 5  # 64**4 hours (1914 years) hold every u32 ts in one bucket
MAX_INDEX_COPIES: Final = 48
MAX_INDEX_ENTRIES: Final = 48 * 1024  # copies x distinct hours of the object
_COARSE_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2})\+(\d+)h\Z")


def index_span(level: int) -> int:
    """Seconds covered by one index bucket of ``level``."""
    return int(HOUR * INDEX_FANOUT ** level)


def index_placement(hour_starts: Iterable[int]) -> tuple[int, list[int]]:
    """``(level, bucket starts)`` an object with points in ``hour_starts`` is indexed under."""
    hs = sorted(set(hour_starts))
    for level in range(INDEX_LEVELS):
        span = index_span(level)
        buckets = sorted({h - h % span for h in hs})
        if level == INDEX_LEVELS - 1 or (len(buckets) <= MAX_INDEX_COPIES
                                         and len(buckets) * len(hs) <= MAX_INDEX_ENTRIES):
            return level, buckets
    raise AssertionError("unreachable")


def index_keys(shard: str, hour_starts: Iterable[int], batch_id: str) -> list[str]:
    """Every key the index record of an object with points in ``hour_starts`` is written at."""
    level, buckets = index_placement(hour_starts)
    return [index_key(shard, b, batch_id, level) for b in buckets]


def index_dirs(shard: str, start: int, end: int) -> list[str]:
    """Every index folder a reader of ``[start, end)`` must list to find each object
    with a point in it: the hours, then the one or few buckets of every coarser level."""
    out = [index_dir(shard, h) for h in range(start - start % HOUR, end, HOUR)]
    for level in range(1, INDEX_LEVELS):
        span = index_span(level)
        out += [index_dir(shard, b, level) for b in range(start - start % span, end, span)]
    return out


def index_dirs_of_hours(shard: str, hour_starts: Iterable[int]) -> list[str]:
    """:func:`index_dirs` for a set of hours (each folder once, finest level first)."""
    hs = sorted(set(hour_starts))
    out = [index_dir(shard, h) for h in hs]
    for level in range(1, INDEX_LEVELS):
        span = index_span(level)
        out += [index_dir(shard, b, level) for b in sorted({h - h % span for h in hs})]
    return out


def parse_index_dir(name: str) -> tuple[int, int] | None:
    """``(level, bucket start)`` of an index folder name; None if it is not one."""
    try:
        if "+" not in name:
            return 0, parse_stamp(name, what="index hour")
        m = _COARSE_RE.match(name)
        if m is None:
            return None
        hours = int(m[2])
        level = next((k for k in range(1, INDEX_LEVELS) if INDEX_FANOUT ** k == hours), None)
        start = parse_stamp(m[1], what="index bucket")
    except ConfigError:
        return None
    if level is None or start % index_span(level):
        return None
    return level, start


def quarantine_key(topic: str, partition: int, offset: int) -> str:
    """One invalid record's entry: its coordinates alone name it, so writing it
    again (a retry, a redelivery after a crash) rewrites the same key."""
    return f"quarantine/{topic}/{partition}/{offset:020d}.json"


def probe_key(name: str) -> str:
    """A start-up write probe (put, then deleted); nothing reads ``_probe/``."""
    return f"_probe/{name}"


def watermark_key(group: str, topic: str, partition: int) -> str:
    return f"watermarks/{group}/{topic}/{partition}.json"


def chunk_dir(shard: str, start: int) -> str:
    return f"{shard}/{stamp(start)}"


def manifest_key(shard: str, start: int) -> str:
    return f"{chunk_dir(shard, start)}/_manifest.json"


def part_key(shard: str, start: int, attempt: str, i: int) -> str:
    return f"{chunk_dir(shard, start)}/part-{attempt}-{i:05d}.parquet"


def part_attempt(name: str) -> str | None:
    """The attempt of a part file name ``part-{attempt}-{i}.parquet``; None if not one."""
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    attempt, sep, _i = name[len("part-"):-len(".parquet")].rpartition("-")
    return attempt if sep and attempt else None


def claim_prefix(shard: str, start: int) -> str:
    return f"_claims/{shard}/{stamp(start)}/"


def claim_key(shard: str, start: int, attempt: str) -> str:
    return f"{claim_prefix(shard, start)}{attempt}.json"
