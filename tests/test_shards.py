"""tailor.shards: the org -> shard function and shards.yaml validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tailor.errors import ConfigError
from tailor.shards import Dedicated, ShardMap, load, parse

T0 = 1767225600  # 2026-01-01T00:00:00Z
BIG = 3_000_000_001  # an org id >= 2**31


def test_default_map() -> None:
    m = load(None)
    assert m.shared_shards == 64 and m.dedicated == {}
    assert m.shard_for(1989, T0) == "org-mod-5" and m.shard_for(BIG, 0) == f"org-mod-{BIG % 64}"
    assert m.all_shards()[0] == "org-mod-0" and len(m.all_shards()) == 64
    org = np.array([1, 65, 2], dtype=np.uint32)
    ts = np.zeros(3, dtype=np.int64)
    assert m.keep_mask("org-mod-1", org[:2], ts[:2]) is None  # all belong
    assert list(m.keep_mask("org-mod-1", org, ts)) == [True, True, False]
    assert m.sources("org-mod-3") == [("org-mod-3", None)]
    assert parse("", "empty.yaml") == ShardMap()


def test_dedicated_forever() -> None:
    m = parse(f"shared_shards: 8\ndedicated:\n  - org: {BIG}\n")
    assert m.shard_for(BIG, 0) == f"org-{BIG}" and m.shard_for(BIG + 8, 0) == f"org-mod-{BIG % 8}"
    assert m.all_shards()[-1] == f"org-{BIG}" and len(m.all_shards()) == 9
    org = np.array([BIG, BIG + 8], dtype=np.uint32)
    ts = np.array([T0, T0])
    assert list(m.keep_mask(f"org-{BIG}", org, ts)) == [True, False]
    assert list(m.keep_mask(f"org-mod-{BIG % 8}", org, ts)) == [False, True]
    assert m.sources(f"org-{BIG}") == [(f"org-{BIG}", None)]  # never moved
    assert m.check_shard(f"org-{BIG}") == f"org-{BIG}"
    for bad in ("org-mod-8", "org-7", "shard-1", "org-mod-x"):
        with pytest.raises(ConfigError, match="unknown shard"):
            m.check_shard(bad)


def test_since_until_cutover() -> None:
    since, until = T0 + 3 * 3600 + 17, T0 + 10 * 3600
    m = parse("shared_shards: 4\ndedicated:\n"
              "  - org: 6\n    since: 2026-01-01T03:00:17Z\n    until: 2026-01-01T10:00:00Z\n")
    assert m.dedicated[6] == Dedicated(6, since, until) and m.dedicated[6].moves
    assert m.shard_for(6, since - 1) == "org-mod-2"
    assert m.shard_for(6, since) == "org-6"
    assert m.shard_for(6, until - 1) == "org-6" and m.shard_for(6, until) == "org-mod-2"
    ts = np.array([since - 1, since, until - 1, until, T0])
    org = np.array([6, 6, 6, 6, 10], dtype=np.uint32)
    assert list(m.keep_mask("org-6", org, ts)) == [False, True, True, False, False]
    assert list(m.keep_mask("org-mod-2", org, ts)) == [True, False, False, True, True]
    assert m.sources("org-6") == [("org-6", None), ("org-mod-2", 6)]
    assert m.sources("org-mod-2") == [("org-mod-2", None), ("org-6", 6)]
    assert m.sources("org-mod-1") == [("org-mod-1", None)]
    assert parse("dedicated:\n  - org: 6\n    since: 1767225600\n").dedicated[6].since == T0


def test_load_reads_file(tmp_path: Path) -> None:
    f = tmp_path / "shards.yaml"
    f.write_text("shared_shards: 3\n")
    assert load(f).shared_shards == 3
    with pytest.raises(ConfigError) as ei:
        load(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(ei.value) and ei.value.fix


@pytest.mark.parametrize(("text", "line", "words"), [
    ("shared_shards: 4\nbogus: 1\n", 2, ["bogus"]),
    ("dedicated:\n  - org: 5\n    sinse: 2026-01-01T00:00:00Z\n", 2, ["sinse"]),
    ("dedicated:\n  - org: 5\n  - org: 5\n", 3, ["org 5", "twice"]),
    ("shared_shards: 4\nshared_shards: 5\n", 2, ["duplicate key", "shared_shards"]),
    ("dedicated:\n  - org: 5\n    org: 6\n", 3, ["duplicate key", "org"]),
    ("dedicated:\n  - org: abc\n", 2, ["org", "abc"]),
    ("dedicated:\n  - org: 1.5\n", 2, ["org", "1.5"]),
    ("dedicated:\n  - org: -1\n", 2, ["org", "-1"]),
    ("dedicated:\n  - org: 4294967296\n", 2, ["org", "4294967296"]),
    ("shared_shards: 0\n", 1, ["shared_shards", "0"]),
    ("\n\nshared_shards: -3\n", 3, ["shared_shards", "-3"]),
    ("shared_shards: many\n", 1, ["shared_shards", "many"]),
    ("dedicated:\n  - org: 5\n    since: yesterday\n", 2, ["since", "yesterday"]),
    ("dedicated:\n  - org: 5\n    until: 2026-13-01T00:00:00Z\n", 3, ["2026-13-01", "time"]),
    ("dedicated:\n  - org: 5\n    since: 2026-01-02T00:00:00Z\n    until: 2026-01-01T00:00:00Z\n",
     2, ["until", "since"]),
])
def test_bad_files_name_file_line_field_and_fix(
        tmp_path: Path, text: str, line: int, words: list[str]) -> None:
    f = tmp_path / "shards.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load(f)
    msg = str(ei.value)
    assert str(f) in msg and f"line {line}" in msg, msg
    for w in words:
        assert w in msg, msg
    assert ei.value.fix and "Fix:" in msg


@pytest.mark.parametrize("text", ["dedicated: [\n", "- 1\n", "dedicated: 5\n"])
def test_malformed_yaml(text: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse(text, "s.yaml")
    assert "s.yaml" in str(ei.value) and ei.value.fix
