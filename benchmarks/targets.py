"""Every target the benchmark reports against, declared once (issues 5 and 12)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Target:
    op: Literal[">=", "<="]
    value: float
    what: str

    def met(self, x: float) -> bool | None:
        """None when ``x`` is missing (NaN)."""
        if x != x:
            return None
        return x >= self.value if self.op == ">=" else x <= self.value

    def text(self) -> str:
        return f"target {'≥' if self.op == '>=' else '≤'} {self.value:g}×"

    def verdict(self, x: float) -> str:
        """``"3.10× (target ≥ 3×: met)"``."""
        got = "–" if x != x else f"{x:.2f}×"
        m = self.met(x)
        return f"{got} ({self.text()}{'' if m is None else ': met' if m else ': NOT met'})"


#: Build, 10M points: warm `tailor build` CLI vs the best peer (whole processes).
BUILD_WARM = Target(">=", 3.0, "warm `tailor build` CLI vs the best peer (issue 12; "
                               "≥ 5× is the next step)")
#: First run after install (empty numba cache) / warm CLI.
BUILD_FIRST_RUN = Target("<=", 1.5, "first run after install / warm CLI (issue 12)")
#: `tailor build --scheduler` against a running cluster vs the best peer.
BUILD_SCHEDULER = Target(">=", 5.0, "`tailor build --scheduler` (running cluster) vs the "
                                    "best peer (issue 12)")
#: 10× points (100M at the default): warm CLI vs the best peer that completes.
SCALE_VS_PEER = Target(">=", 5.0, "warm CLI at 10× points vs the best peer that completes "
                                  "(issue 12)")
#: 10× points: build time 10× / 1× (issue 5).
SCALE_TIME = Target("<=", 11.0, "build time at 10× / at 1× (issue 5)")
#: vs the PySpark peer (issue 5).
BUILD_VS_SPARK = Target(">=", 15.0, "warm CLI vs PySpark (issue 5)")
#: Ingest MB/s vs the bare aiokafka fetch loop (issue 5).
INGEST_VS_BARE = Target(">=", 0.8, "`tailor ingest` MB/s vs the bare fetch loop (issue 5)")
#: S-file bytes per point vs Gorilla (issue 5).
SIZE_VS_GORILLA = Target("<=", 1.0, "S-file bytes vs Gorilla streams (issue 5)")

ALL: dict[str, Target] = {
    "build_warm": BUILD_WARM, "build_first_run": BUILD_FIRST_RUN,
    "build_scheduler": BUILD_SCHEDULER, "scale_vs_peer": SCALE_VS_PEER,
    "scale_time": SCALE_TIME, "build_vs_spark": BUILD_VS_SPARK,
    "ingest_vs_bare": INGEST_VS_BARE, "size_vs_gorilla": SIZE_VS_GORILLA,
}
