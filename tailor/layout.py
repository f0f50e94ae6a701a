"""Where things live in object storage, and the time-window arithmetic.

Raw store (``--raw``)::

    objects/{hh}/{shard}/{batch}.tlr          framed payloads (tailor.framing)
    index/{shard}/{YYYY-MM-DDTHH}/{batch}.json one record per object per hour
                                              of point ts it holds points of
    quarantine/{topic}/{partition}/{offset:020d}.json  one invalid record
    watermarks/{group}/{topic}/{partition}.json
    _probe/{name}                             `tailor ingest`'s start-up write check

``hh`` is a 4-hex-digit prefix derived from the batch id (spreads S3 load,
deterministic so that a replayed batch rewrites the same key).

Output store (``--out``), contracts.md section 2::

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
from typing import Final

from tailor.errors import ConfigError

HOUR: Final = 3600
WINDOW_SECONDS: Final = 4 * HOUR  # contracts.md default chunk length
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


def index_dir(shard: str, hour: int) -> str:
    return f"index/{shard}/{stamp(hour)}"


def index_key(shard: str, hour: int, batch_id: str) -> str:
    return f"{index_dir(shard, hour)}/{batch_id}.json"


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
