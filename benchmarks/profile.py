"""Summaries of a ``py-spy record --format raw`` profile (collapsed stacks)."""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter

_LINE = re.compile(r":\d+\)$")


def _frame(f: str) -> str:
    """``fn (path/to/file.py:123)`` → ``fn (file.py)``."""
    f = _LINE.sub(")", f.strip())
    name, _, where = f.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name


def parse(path: str) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                stacks.append(([_frame(f) for f in stack.split(";") if f], int(count)))
    return stacks


def top_frames(path: str, n: int = 15) -> list[tuple[str, float]]:
    """The ``n`` functions with the largest share of self (leaf) samples."""
    stacks = parse(path)
    total = sum(c for _, c in stacks) or 1
    self_t: Counter[str] = Counter()
    for frames, c in stacks:
        if frames:
            self_t[frames[-1]] += c
    return [(fn, c / total) for fn, c in self_t.most_common(n)]


def inclusive(path: str, pattern: str, n: int = 15) -> list[tuple[str, float]]:
    """Functions whose frame matches ``pattern``, by share of samples they are on."""
    stacks = parse(path)
    total = sum(c for _, c in stacks) or 1
    inc: Counter[str] = Counter()
    rx = re.compile(pattern)
    for frames, c in stacks:
        for fn in set(frames):
            if rx.search(fn):
                inc[fn] += c
    return [(fn, c / total) for fn, c in inc.most_common(n)]


def _pyspy() -> str:
    import shutil
    import sys
    from pathlib import Path

    found = shutil.which("py-spy")
    if found:
        return found
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    raise FileNotFoundError("py-spy is not installed (pip install py-spy)")


def attach(pid: int, out: str, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` on a running process (on-CPU samples, raw format)."""
    return subprocess.Popen(
        [_pyspy(), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
         "--nonblocking", "-o", out],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def detach(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Stop a recorder started by :func:`attach`; it writes its file on SIGINT."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def merge(paths: list[str], out: str) -> str:
    """Concatenate raw profiles (collapsed stacks add up)."""
    import os

    with open(out, "w") as w:
        for p in paths:
            if os.path.exists(p):
                with open(p) as r:
                    w.write(r.read())
    return out
