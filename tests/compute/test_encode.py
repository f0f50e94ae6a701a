"""The encode stage's Arrow columns: the same table ``pa.array`` gives, without it (pure)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tailor.compute import encode as enc
from tailor.compute.decode import Points, alloc_points


def _points(n: int) -> Points:
    rng = np.random.default_rng(3)
    p = alloc_points(n)
    p.org[:] = rng.integers(0, 2**32, n, dtype=np.uint32)
    p.metric[:] = rng.integers(0, 2**63, n, dtype=np.uint64)
    p.ctx[:] = rng.integers(0, 2**63, n, dtype=np.uint64)
    p.ts[:] = rng.integers(0, 2**32, n, dtype=np.uint32)
    p.value[:] = rng.normal(size=n)
    p.value[:min(n, 3)] = [np.nan, -0.0, np.inf][:n]
    return p


def _reference(p: Points) -> pa.Table:
    cols = [p.org, p.metric, p.ctx, p.ts, p.value]
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(cols, enc.SCHEMA,
                                                                      strict=True)],
                                schema=enc.SCHEMA)


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_to_table_equals_pa_array_and_never_calls_it(n: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    p = _points(n)
    want = _reference(p)
    # pa.array probes for pandas (an import of it when installed): encode must not call it
    monkeypatch.setattr(pa, "array", lambda *a, **k: pytest.fail("pa.array called"))
    got = enc.to_table(p)
    assert got.schema == enc.SCHEMA and all(c.null_count == 0 for c in got.columns)
    for g, w in zip(got.columns, want.columns, strict=True):  # bit for bit (NaN, -0.0)
        assert g.type == w.type and g.to_numpy().tobytes() == w.to_numpy().tobytes()
    data, _sha = enc.encode(p)
    monkeypatch.undo()
    assert data == enc.encode(p)[0]


def test_to_table_copies_a_strided_column() -> None:
    p = _points(10)
    p.ts = np.arange(20, dtype=np.uint32)[::2]
    assert enc.to_table(p)["ts"].to_pylist() == list(range(0, 20, 2))
