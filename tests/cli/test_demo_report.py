"""The output checks themselves: the outside reader (tests/contract.py) that the
pipeline tests compare through, and the demo's VERIFIED check (tailor/cli/demo_report.py),
catch what `tailor diff` ignores by design (row order, manifest file order), and changed
NaN bits."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pyarrow as pa
import pytest

from tailor.cli.demo_report import first_difference
from tailor.config import StoreConfig
from tailor.format.layout import manifest_key
from tailor.ops.diff import compare, read_chunk
from tailor.storage import Store
from tailor.testing.oracle import POINT_SCHEMA
from tests import contract
from tests.ops.chunks import write_chunk

T0 = 1767225600
SHARD = "org-mod-1"
NAN2 = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]  # NaN, other payload
ROWS = sorted([(1, 10, 100, T0 + i, float(i)) for i in range(40)]
              + [(2, 20, 7, T0 + 5, math.nan), (3, 1, 1, T0, -0.0)])


def _table(rows: list[tuple[int, int, int, int, float]]) -> pa.Table:
    return pa.table(list(map(list, zip(*rows, strict=True))), schema=POINT_SCHEMA)


def _problems(out: Store, want: pa.Table) -> tuple[list[str], str | None]:
    """What the pipeline tests' comparison and the demo's check say about the chunk."""
    exp = {(SHARD, T0): want}
    try:
        ops = contract.mismatches(out.fs, out.path(""), exp)
    except AssertionError as exc:  # the outside reader refuses an unsorted chunk outright
        ops = [f"contract: {exc}"]
    return ops, first_difference(out, SHARD, T0, want)


@pytest.fixture()
def out(tmp_path: Path) -> Store:
    return Store(StoreConfig(url=str(tmp_path / "out")))


def test_equal_chunk_passes(out: Store) -> None:
    write_chunk(out, SHARD, T0, ROWS, files=3)
    assert _problems(out, _table(ROWS)) == ([], None)


def test_chunk_written_backwards_is_caught(out: Store) -> None:
    write_chunk(out, SHARD, T0, ROWS[::-1], files=3, sort=False)
    # what the pipeline tests used to compare with: it sorts both sides, so this passed
    assert compare(read_chunk(out, SHARD, T0), read_chunk(out, SHARD, T0)).differing == 0
    ops, demo = _problems(out, _table(ROWS))
    assert ops and "strictly increasing" in ops[0]
    assert demo is not None and demo.startswith("row 0 ")


def test_files_listed_out_of_order_are_caught(out: Store) -> None:
    write_chunk(out, SHARD, T0, ROWS, files=3)
    m = json.loads(out.get(manifest_key(SHARD, T0)))
    m["files"] = m["files"][::-1]
    out.put(manifest_key(SHARD, T0), json.dumps(m).encode())
    ops, demo = _problems(out, _table(ROWS))
    assert ops and "strictly increasing" in ops[0]
    assert demo is not None and demo.startswith("row ")


def test_other_nan_bits_missing_and_unexpected_chunks_are_caught(out: Store) -> None:
    rows = [(*r[:4], NAN2) if math.isnan(r[4]) else r for r in ROWS]
    write_chunk(out, SHARD, T0, rows)
    ops, demo = _problems(out, _table(ROWS))
    assert len(ops) == 1 and "value" in ops[0] and demo is not None and "value" in demo
    write_chunk(out, SHARD, T0 + 4 * 3600, ROWS[:3])  # published, not expected
    ops, _ = _problems(out, _table(rows))
    assert len(ops) == 1 and "none expected" in ops[0]
    gone = contract.mismatches(out.fs, out.path(""), {("org-mod-2", T0): _table(ROWS)})
    assert any("not published" in p for p in gone)
