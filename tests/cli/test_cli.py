"""The ``tailor`` command line: help, usage errors (exit 2), flag > env > file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from tailor.cli import main
from tailor.testing import services

SUBCOMMANDS = ["produce", "ingest", "build", "read", "status", "diff", "demo", "gc", "shards",
               "compile-kernels"]


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return res.exit_code, res.output


def test_help_lists_every_subcommand() -> None:
    code, out = invoke(["--help"])
    assert code == 0
    for name in SUBCOMMANDS:
        assert name in out
    for name in SUBCOMMANDS:
        code, out = invoke([name, "--help"])
        assert code == 0 and "--" in out, name
    code, out = invoke(["produce", "--help"])
    assert "TAILOR_BROKERS" in out  # env vars are documented


PRODUCE = ["produce", "--brokers", "127.0.0.1:1", "--topics", "t"]


@pytest.mark.parametrize(("args", "value"), [
    ([*PRODUCE, "--points", "abc"], "abc"),
    ([*PRODUCE, "--points", "0"], "0"),
    ([*PRODUCE, "--points", "5", "--invalid-rate", "2.5"], "2.5"),
    ([*PRODUCE, "--points", "5", "--rate", "-1"], "-1"),
    ([*PRODUCE, "--points", "5", "--start", "2026-13-01T00"], "2026-13-01T00"),
    ([*PRODUCE, "--points", "5", "--start", "yesterday"], "yesterday"),
    ([*PRODUCE, "--points", "5", "--window-length", "4 fortnights"], "4 fortnights"),
    ([*PRODUCE, "--points", "5", "--shards", "/nonexistent/shards.yaml"],
     "/nonexistent/shards.yaml"),
    (["ingest", "--brokers", "b:1", "--topics", "t", "--raw", "/tmp/x",
      "--flush-payloads", "0"], "0"),
    (["ingest", "--brokers", "b:1", "--topics", "t", "--raw", "/tmp/x",
      "--metrics-port", "70000"], "70000"),
    (["read", "--out", "/tmp/x", "--org", "-1", "--metric", "1"], "-1"),
    (["build", "--raw", "/tmp/r", "--out", "/tmp/o", "--workers", "0"], "0"),
    (["status", "--raw", "/tmp/r", "--out", "/tmp/o", "--json", "--nope"], "--nope"),
])
def test_bad_values_exit_2_naming_the_value(args: list[str], value: str) -> None:
    code, out = invoke(args)
    assert code == 2, out
    assert value in out, out


def test_missing_required_flag_exit_2() -> None:
    code, out = invoke(["produce", "--brokers", "b:1", "--topics", "t"])
    assert code == 2 and "--points" in out


def test_bad_config_file_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("- not a mapping\n")
    code, out = invoke(["produce", "--config", str(f), "--points", "5"])
    assert code == 2 and "bad.yaml" in out


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    """The unreachable broker named in the fatal error shows which value won."""
    ports = [services.free_port() for _ in range(3)]
    f = tmp_path / "c.yaml"
    f.write_text(f"brokers: 127.0.0.1:{ports[0]}\ntopics: t\npoints: 5\n")
    env = {"TAILOR_BROKERS": f"127.0.0.1:{ports[1]}"}

    code, out = invoke(["produce", "--config", str(f)])
    assert code == 1 and f"127.0.0.1:{ports[0]}" in out and "Fix:" in out
    code, out = invoke(["produce", "--config", str(f)], env=env)
    assert code == 1 and f"127.0.0.1:{ports[1]}" in out
    code, out = invoke(["produce", "--config", str(f), "--brokers", f"127.0.0.1:{ports[2]}"],
                       env=env)
    assert code == 1 and f"127.0.0.1:{ports[2]}" in out


def test_produce_against_broker_writes_expected(broker: services.Broker, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    f = tmp_path / "c.yaml"
    f.write_text(f"topics: cli-{tag}-a,cli-{tag}-b\npoints: 800\nseed: 4\norgs: 20\n"
                 "invalid-rate: 0.05\nhours: 2\n")
    exp = tmp_path / "expected"
    code, out = invoke(["produce", "--config", str(f), "--brokers", broker.bootstrap,
                        "--partitions", "2"], env={"TAILOR_EXPECTED": str(exp)})
    assert code == 0, out
    assert "payloads/s" in out and str(exp) in out
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["points"] == 800 and summary["config"]["seed"] == 4
    assert summary["config"]["partitions"] == 2 and summary["config"]["hours"] == 2
    assert (exp / "payloads.parquet").exists() and any((exp / "points").iterdir())


def test_compile_kernels_caches_the_build_and_ingest_kernels() -> None:
    res = CliRunner().invoke(main, ["compile-kernels"])
    assert res.exit_code == 0, res.output
    assert "every build and ingest kernel cached" in res.output
