"""tailor.config: sizes, durations, config files and the frozen models."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tailor.config import (
    FlushPolicy,
    ProduceConfig,
    StoreConfig,
    load_config_file,
    parse_bytes,
    parse_duration,
)
from tailor.errors import ConfigError


@pytest.mark.parametrize(("text", "want"), [
    ("1048576", 1048576), (5, 5), ("5MiB", 5 * 2**20), ("1GiB", 2**30), ("500MB", 500 * 10**6),
    ("1.5KiB", 1536), (" 2 kb ", 2000), ("256m", 256 * 2**20), ("0", 0), ("3b", 3),
])
def test_parse_bytes(text: str | int, want: int) -> None:
    assert parse_bytes(text) == want


@pytest.mark.parametrize("text", ["", "MiB", "5 XB", "-5MiB", "1e3", "5MiB5", "five"])
def test_parse_bytes_bad(text: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_bytes(text, what="--flush-bytes")
    assert "--flush-bytes" in str(ei.value) and repr(text) in str(ei.value) and ei.value.fix


@pytest.mark.parametrize(("text", "want"), [
    ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("250ms", 0.25), ("4", 4.0), (2.5, 2.5),
    ("5min", 300.0), ("1.5h", 5400.0),
])
def test_parse_duration(text: str | float, want: float) -> None:
    assert parse_duration(text) == want


@pytest.mark.parametrize("text", ["", "s", "10 days", "-1s", "1h30m", "soon"])
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_duration(text, what="--grace")
    assert "--grace" in str(ei.value) and repr(text) in str(ei.value) and ei.value.fix


def test_config_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("brokers: 127.0.0.1:9092\nflush-age: 5m\ninvalid_rate: 0.5\n")
    assert load_config_file(f) == {"brokers": "127.0.0.1:9092", "flush_age": "5m",
                                   "invalid_rate": 0.5}
    (tmp_path / "empty.yaml").write_text("")
    assert load_config_file(tmp_path / "empty.yaml") == {}
    for name, text in [("list.yaml", "- a\n"), ("bad.yaml", "a: [\n")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError) as ei:
            load_config_file(tmp_path / name)
        assert name in str(ei.value) and ei.value.fix
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "nope.yaml")


def test_models_frozen_and_validated() -> None:
    cfg = ProduceConfig(brokers="b:1", topics=["t"], points=10)
    assert cfg.start == 1767225600 and cfg.window_seconds == 4 * 3600
    with pytest.raises(ValidationError):
        cfg.points = 5  # type: ignore[misc]
    for bad in ({"points": 0}, {"invalid_rate": 1.5}, {"rate": 0}, {"partitions": 0},
                {"surprise": 1}):
        with pytest.raises(ValidationError):
            ProduceConfig.model_validate({"brokers": "b:1", "topics": ["t"], "points": 10, **bad})
    with pytest.raises(ValidationError):
        FlushPolicy(max_age_s=0)
    assert StoreConfig(url="s3://b/p/").url == "s3://b/p"
    for url in ("", "gs://b/p"):
        with pytest.raises(ValidationError):
            StoreConfig(url=url)
