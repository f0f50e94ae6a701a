"""Hostile but possible input, through `tailor ingest` on the real broker and moto S3."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from tailor import payload as pl
from tailor import services
from tailor.config import StoreConfig
from tailor.storage import Store

from .helpers import (
    T0,
    Rec,
    check_complete,
    committed_offsets,
    end_offsets,
    ingest_cmd,
    make_stream,
    points,
    produce,
    read_log,
    start,
    wait_exit,
)

Procs = list[subprocess.Popen[bytes]]


def test_keys_of_any_length(broker: services.Broker, topics: list[str], raw_store: StoreConfig,
                            tmp_path: Path, procs: Procs) -> None:
    """Keys longer than Python's int() accepts (4300 digits) are classified per the
    contract: leading zeros are digits, only the value counts; nothing crashes."""
    t = topics[0]
    good = pl.encode(5, T0 * 10**9 + 1, points(4, 1))
    nines, padded = b"9" * 5000, b"0" * 4999 + b"5"
    hostile = [
        Rec(t, 0, nines, good, pl.KEY_MISMATCH),  # a value no org id has
        Rec(t, 0, nines, b"junk", pl.NOT_ONE_FRAME),
        Rec(t, 1, padded, b"junk", pl.NOT_ONE_FRAME),  # zero-padded, junk value
        Rec(t, 1, padded, good, None),  # zero-padded org 5: valid
        Rec(t, 2, b"0" * 6000, pl.encode(0, T0 * 10**9 + 2, points(2, 2)), None),  # org 0
        Rec(t, 2, nines + b"x", good, pl.BAD_KEY),
    ]
    stream = make_stream(topics, 40, seed=21)
    produced = produce(broker.bootstrap, stream[:20] + hostile + stream[20:])
    group, log = f"g-{uuid.uuid4().hex[:8]}", str(tmp_path / "ing.log")
    proc = start(ingest_cmd(broker.bootstrap, ",".join(topics), group, raw_store,
                            "--exit-when-idle", "4s"), log, procs)
    assert wait_exit(proc, 90, log) == 0, read_log(log)[-3000:]
    raw = check_complete(raw_store, produced)  # valid bytes exact, reasons right
    invalid = sum(r.reason is not None for r in produced.values())
    assert len(Store(raw_store).list("quarantine/")) == len(raw.quarantined) == invalid
    ends = end_offsets(produced)
    assert committed_offsets(broker.bootstrap, group, list(ends)) == ends
