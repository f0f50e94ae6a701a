"""Ingest test fixtures: subprocesses that never outlive their test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture()
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Append every started ingester here; leftovers are killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)
