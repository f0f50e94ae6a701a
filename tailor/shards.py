"""Org → shard mapping from ``shards.yaml``.

Orgs map to ``shared_shards`` shared shards (``org-mod-N`` with
``N = org_id % shared_shards``) unless listed under ``dedicated``, where they
get ``org-<id>``.  A dedicated entry may carry ``since`` (the cutover into the
dedicated shard) and ``until`` (the cutover back): both are UTC times compared
with a point's ts, so a window that straddles a cutover splits exactly at it.

The file is validated at load with the file, line and field of any mistake.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tailor.errors import ConfigError

_TOP_KEYS = {"shared_shards", "dedicated"}
_ENTRY_KEYS = {"org", "since", "until"}
_META = {"__line__", "__lines__"}
_SHARD_RE = re.compile(r"org-(mod-)?(\d+)\Z")
MAX_ORG = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Dedicated:
    """Org ``org`` lives in ``org-<org>`` for point ts in ``[since, until)``."""

    org: int
    since: int | None = None  # Unix seconds, None = forever
    until: int | None = None

    def active(self, ts: np.ndarray) -> np.ndarray:
        m = np.ones(ts.shape, dtype=bool)
        if self.since is not None:
            m &= ts >= self.since
        if self.until is not None:
            m &= ts < self.until
        return m

    @property
    def moves(self) -> bool:
        return self.since is not None or self.until is not None


@dataclass(frozen=True, slots=True)
class ShardMap:
    """The org → shard function.  Immutable; build it with :func:`load`."""

    shared_shards: int = 64
    dedicated: dict[int, Dedicated] = field(default_factory=dict)

    def shard_for(self, org: int, ts: int) -> str:
        """Shard of org ``org`` for a point (or payload) at Unix time ``ts``."""
        d = self.dedicated.get(org)
        if d is not None and bool(d.active(np.array([ts]))[0]):
            return f"org-{org}"
        return f"org-mod-{org % self.shared_shards}"

    def shard_codes(self, org: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Vector form of :meth:`shard_for`: per element, the index of its shard
        in :meth:`all_shards` (int64)."""
        codes = np.asarray(org, dtype=np.int64) % self.shared_shards
        for j, o in enumerate(sorted(self.dedicated)):
            sel = org == o
            if sel.any():
                sel &= self.dedicated[o].active(ts)
                codes[sel] = self.shared_shards + j
        return codes

    def all_shards(self) -> list[str]:
        """Every shard name: shared first, then dedicated by org id."""
        return [f"org-mod-{i}" for i in range(self.shared_shards)] + [
            f"org-{o}" for o in sorted(self.dedicated)
        ]

    def check_shard(self, shard: str) -> str:
        """``shard`` itself if it exists in this map; else :class:`ConfigError`."""
        m = _SHARD_RE.match(shard)
        ok = m is not None and (
            (m.group(1) is not None and int(m.group(2)) < self.shared_shards)
            or (m.group(1) is None and int(m.group(2)) in self.dedicated)
        )
        if not ok:
            raise ConfigError(f"unknown shard {shard!r}", shard=shard,
                              fix=f"use org-mod-0..org-mod-{self.shared_shards - 1} or org-<id> "
                                  "for an org listed under 'dedicated' in shards.yaml")
        return shard

    def sources(self, shard: str) -> list[tuple[str, int | None]]:
        """Raw shards holding points that may belong to ``shard``.

        Returns ``(raw_shard, org)`` pairs: ``org`` None means every org of
        that raw shard may belong, an int means only that org's points may
        (an org that moved between shards at a cutover).
        """
        self.check_shard(shard)
        out: list[tuple[str, int | None]] = [(shard, None)]
        m = _SHARD_RE.match(shard)
        assert m is not None
        if m.group(1):
            k = int(m.group(2))
            out += [(f"org-{d.org}", d.org) for d in self.dedicated.values()
                    if d.moves and d.org % self.shared_shards == k]
        else:
            d = self.dedicated[int(m.group(2))]
            if d.moves:
                out.append((f"org-mod-{d.org % self.shared_shards}", d.org))
        return out

    def keep_mask(self, shard: str, org: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
        """Which points (``org``, ``ts`` arrays) belong to ``shard``; None = all."""
        m = _SHARD_RE.match(shard)
        assert m is not None
        if m.group(1) is None:
            d = self.dedicated[int(m.group(2))]
            return np.asarray((org == d.org) & d.active(ts), dtype=bool)
        k = int(m.group(2))
        keep = (org % self.shared_shards) == k
        for d in self.dedicated.values():
            sel = org == d.org
            if sel.any():
                keep[sel] &= ~d.active(ts[sel])
        return None if bool(keep.all()) else np.asarray(keep, dtype=bool)


def _parse_time(value: Any, where: str) -> int:
    if isinstance(value, dt.datetime):
        t = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(t.timestamp())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return int((t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp())
    raise ConfigError(f"{where}: {value!r} is not a time",
                      fix="write an ISO-8601 UTC time such as 2026-01-01T04:00:00Z")


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys and records line numbers."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for k, _ in node.value:
        key = loader.construct_object(k, deep=deep)
        if key in seen:
            raise ConfigError(f"line {k.start_mark.line + 1}: duplicate key {key!r} "
                              f"(first on line {seen[key]})", fix="keep one of them")
        seen[key] = k.start_mark.line + 1
    mapping = loader.construct_mapping(node, deep=deep)
    mapping["__line__"] = node.start_mark.line + 1
    mapping["__lines__"] = seen  # key -> line, for error messages
    return mapping


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    # PyYAML raises a bare ValueError for an impossible date such as month 13.
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError as exc:
        raise ConfigError(f"line {node.start_mark.line + 1}: {node.value!r} is not a time "
                          f"({exc})", fix="write an ISO-8601 UTC time such as "
                                          "2026-01-01T04:00:00Z") from None


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def parse(text: str, source: str = "shards.yaml") -> ShardMap:
    """Parse and validate shards.yaml text; raises :class:`ConfigError`."""
    try:
        doc = yaml.load(text, Loader=_Loader) or {"__line__": 1}
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", fix=exc.fix) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}", fix="fix the YAML syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the top level must be a mapping",
                          fix="write 'shared_shards: 64' and an optional 'dedicated:' list")
    lines = doc.get("__lines__", {})
    unknown = set(doc) - _TOP_KEYS - _META
    if unknown:
        first = min(unknown, key=lambda k: lines.get(k, 0))
        raise ConfigError(f"{source}, line {lines.get(first, '?')}: unknown key(s) "
                          f"{sorted(unknown, key=str)}",
                          fix=f"allowed top-level keys are {sorted(_TOP_KEYS)}")
    n = doc.get("shared_shards", 64)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{source}, line {lines.get('shared_shards', '?')}: field "
                          f"shared_shards is {n!r}",
                          fix="set shared_shards to an integer >= 1 (default 64)")
    entries = doc.get("dedicated") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: 'dedicated' must be a list",
                          fix="write '- org: 1989' items under 'dedicated:'")
    dedicated: dict[int, Dedicated] = {}
    for e in entries:
        line = e.get("__line__", "?") if isinstance(e, dict) else "?"
        where = f"{source}, line {line}"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: dedicated entry {e!r} is not a mapping",
                              fix="write '- org: <id>' with optional since/until")
        bad = set(e) - _ENTRY_KEYS - _META
        if bad:
            raise ConfigError(f"{where}: unknown field(s) {sorted(bad)}",
                              fix=f"allowed fields are {sorted(_ENTRY_KEYS)}")
        org = e.get("org")
        if not isinstance(org, int) or isinstance(org, bool) or not 0 <= org <= MAX_ORG:
            raise ConfigError(f"{where}: org {org!r} is not an org id",
                              fix="use a non-negative integer below 2**32")
        if org in dedicated:
            raise ConfigError(f"{where}: org {org} is listed twice",
                              fix="merge the two entries into one with since/until")
        since = _parse_time(e["since"], f"{where} field since") if "since" in e else None
        until = _parse_time(e["until"], f"{where} field until") if "until" in e else None
        if since is not None and until is not None and until <= since:
            raise ConfigError(f"{where}: until is not after since",
                              fix="until must be later than since (or drop one)")
        dedicated[org] = Dedicated(org, since, until)
    return ShardMap(n, dedicated)


def load(path: str | Path | None) -> ShardMap:
    """Load shards.yaml from ``path`` (None: the default 64 shared shards)."""
    if path is None:
        return ShardMap()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read shards file {str(p)!r}: {exc.strerror}",
                          fix="pass --shards PATH to an existing shards.yaml") from None
    return parse(text, str(p))


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dump(shard_map: ShardMap, header: str = "") -> str:
    """``shards.yaml`` text that :func:`parse` reads back as ``shard_map`` (times as ISO UTC).

    ``header`` lines are written first as ``#`` comments.
    """
    lines = [f"# {h}".rstrip() for h in header.splitlines()]
    lines.append(f"shared_shards: {shard_map.shared_shards}")
    if shard_map.dedicated:
        lines.append("dedicated:")
    for org in sorted(shard_map.dedicated):
        d = shard_map.dedicated[org]
        lines.append(f"  - org: {org}")
        if d.since is not None:
            lines.append(f"    since: {_iso(d.since)}")
        if d.until is not None:
            lines.append(f"    until: {_iso(d.until)}")
    return "\n".join(lines) + "\n"
