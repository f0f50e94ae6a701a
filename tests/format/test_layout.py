"""tailor.format.layout: stamps, window arithmetic and object keys."""

from __future__ import annotations

import pytest

from tailor.errors import ConfigError
from tailor.format import layout

T0 = 1767225600  # 2026-01-01T00:00:00Z


def test_stamps() -> None:
    assert layout.stamp(T0) == "2026-01-01T00"
    assert layout.stamp(T0 + 5 * 3600 + 3599) == "2026-01-01T05"
    assert layout.parse_stamp("2026-01-01T05") == T0 + 5 * 3600
    assert layout.stamp(0) == "1970-01-01T00" and layout.parse_stamp("1970-01-01T00") == 0
    for t in (0, T0, 2**32 - 3600, 1_800_000_000):
        h = t - t % 3600
        assert layout.parse_stamp(layout.stamp(t)) == h


@pytest.mark.parametrize("text", ["2026-01-01", "2026-01-01T5", "2026-01-01T05:00",
                                  "2026-01-01 05", "x", "", "2026-01-01T05Z"])
def test_malformed_stamp(text: str) -> None:
    with pytest.raises(ConfigError) as ei:
        layout.parse_stamp(text)
    assert repr(text) in str(ei.value) and ei.value.fix


@pytest.mark.parametrize("text", ["2026-02-30T00", "2026-13-01T00", "2026-01-01T24"])
def test_impossible_stamp(text: str) -> None:
    with pytest.raises(ConfigError, match="not a real date"):
        layout.parse_stamp(text)


def test_windows() -> None:
    assert layout.window_start(T0 + 4 * 3600 + 5) == T0 + 4 * 3600
    assert layout.window_start(T0 + 3599, 3600) == T0
    assert layout.parse_window("2026-01-01T04") == T0 + 4 * 3600
    assert layout.parse_window("2026-01-01T05", 3600) == T0 + 5 * 3600
    with pytest.raises(ConfigError) as ei:
        layout.parse_window("2026-01-01T05")
    assert "not aligned" in str(ei.value) and "2026-01-01T04" in str(ei.value)
    assert layout.parse_windows("2026-01-01T00..2026-01-02T00") == [
        T0 + i * 4 * 3600 for i in range(6)]
    # FROM rounds up to the next window start; TO is exclusive
    assert layout.parse_windows("2026-01-01T01..2026-01-01T09") == [T0 + 4 * 3600, T0 + 8 * 3600]
    assert layout.parse_windows("2026-01-01T01..2026-01-01T02") == []
    assert layout.hours(T0 + 4 * 3600) == [T0 + (4 + i) * 3600 for i in range(4)]


@pytest.mark.parametrize(("text", "match"), [
    ("2026-01-02T00..2026-01-01T00", "empty"),
    ("2026-01-01T00..2026-01-01T00", "empty"),
    ("2026-01-01T00", "FROM..TO"),
    ("2026-01-01T00...2026-01-02T00", "TO"),
    ("x..2026-01-02T00", "FROM"),
])
def test_bad_windows(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as ei:
        layout.parse_windows(text)
    assert ei.value.fix


def test_keys() -> None:
    assert layout.chunk_dir("org-mod-3", T0) == "org-mod-3/2026-01-01T00"
    assert layout.manifest_key("org-1989", T0) == "org-1989/2026-01-01T00/_manifest.json"
    assert layout.part_key("org-1", T0, "a1", 7) == "org-1/2026-01-01T00/part-a1-00007.parquet"
    k = layout.object_key("org-mod-1", "b-1")
    assert k.startswith("objects/") and k.endswith("/org-mod-1/b-1.tlr")
    assert k == layout.object_key("org-mod-1", "b-1") and len(layout.batch_prefix("b-1")) == 4
    assert layout.index_key("s", T0, "b") == "index/s/2026-01-01T00/b.json"
    assert layout.quarantine_key("t", 2, 5) == f"quarantine/t/2/{5:020d}.json"
    assert layout.watermark_key("g", "t", 3) == "watermarks/g/t/3.json"


@pytest.mark.parametrize("hours", [
    [T0], [T0 + 3600 * k for k in range(48)],  # ordinary objects: one copy per hour
    [T0 + 3600 * k for k in range(49)], [T0 + 3600 * k for k in range(8760)],  # a year
    [0, (2**32 - 1) // 3600 * 3600],  # the first and last hour of u32 ts
    list(range(0, 2**32, 3600 * 997)),  # thousands of hours over the whole range
])
def test_index_placement_is_bounded_and_found_by_every_window(hours: list[int]) -> None:
    keys = layout.index_keys("s", hours, "b")
    assert 1 <= len(keys) <= layout.MAX_INDEX_COPIES and len(set(keys)) == len(keys)
    level, buckets = layout.index_placement(hours)
    assert (len(buckets) * len(set(hours)) <= layout.MAX_INDEX_ENTRIES
            or level == layout.INDEX_LEVELS - 1)
    if len(hours) <= layout.MAX_INDEX_COPIES:
        assert keys == [layout.index_key("s", h, "b") for h in sorted(hours)]
    for h in hours[:: max(1, len(hours) // 50)]:  # a window holding h lists a folder with it
        w = layout.window_start(h)
        dirs = layout.index_dirs("s", w, w + layout.WINDOW_SECONDS)
        assert any(k.rsplit("/", 1)[0] in dirs for k in keys)
        assert set(layout.index_dirs_of_hours("s", [h])) <= set(dirs)


def test_index_dir_names_parse_back() -> None:
    for level in range(layout.INDEX_LEVELS):
        d = layout.index_dir("s", T0 + 5 * 3600, level)
        start = T0 + 5 * 3600 - (T0 + 5 * 3600) % layout.index_span(level)
        assert layout.parse_index_dir(d.split("/")[2]) == (level, start)
    assert layout.index_dir("s", T0, 1) == "index/s/2025-12-31T08+64h"
    for junk in ("2026-01-01T00+65h", "2026-01-01T01+64h", "nope", "2026-13-01T00", "x+64h"):
        assert layout.parse_index_dir(junk) is None
