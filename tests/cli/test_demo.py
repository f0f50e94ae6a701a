"""`tailor demo` (the README's first command) at a small size, and Ctrl-C."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: Every test here runs `tailor demo` (a broker, a store, a Dask cluster) in a subprocess.
pytestmark = pytest.mark.services


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of ours would still answer; the demo reaps its children.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] == "Z"


def _session_members(sid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(d))
    return pids


def test_demo_small_verifies_and_its_read_example_works(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    res = subprocess.run([sys.executable, "-m", "tailor", "demo", "--points", "5000",
                          "--workdir", str(work)], capture_output=True, text=True, timeout=240,
                         start_new_session=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "VERIFIED" in out
    # start-up (cluster, kernels) is its own line; the build's rate excludes it
    assert re.search(r"^start-up +[0-9.]+ s .*cluster [0-9.]+ s, numba kernels loaded [0-9.]+ s",
                     out, re.M), out
    build = r"^build +[0-9.]+ s for \d+ chunks: \d+ points at [0-9.]+ [kM]/s \(start-up not"
    assert re.search(build, out, re.M), out
    for label in ("points in", "invalid", "points out", "bytes/point", "produce", "ingest",
                  "start-up", "build", "S files", "dashboard    http://127.0.0.1:", "read "):
        assert label in out, label
    broker_pid = int(re.search(r"broker on 127\.0\.0\.1:\d+ \(pid (\d+)\)", out).group(1))  # type: ignore[union-attr]
    assert _dead(broker_pid)
    read = re.search(r"^read\s+(tailor read .*)$", out, re.M)
    assert read is not None
    args = shlex.split(read.group(1))[1:]
    r = subprocess.run([sys.executable, "-m", "tailor", *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) >= 2  # a header and at least one point
    # Reusing the workdir replaces the previous demo's data.
    assert (work / ".tailor-demo").exists()


@pytest.mark.timeout(120)
def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tailor", "demo", "--points", "3000",
                             "--workdir", str(tmp_path / "demo")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if "ingesting" in line or not line:
            break
    assert any("ingesting" in s for s in seen), "".join(seen)
    broker_pid = int(re.search(r"\(pid (\d+)\)", "".join(seen)).group(1))  # type: ignore[union-attr]
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest
    assert _dead(broker_pid)
    deadline = time.monotonic() + 10
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_members(proc.pid) == []
