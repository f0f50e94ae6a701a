"""Repeated measurements: median with min–max, and ratios of medians."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Runs:
    """Repeated measurements of one quantity (seconds, bytes, ...)."""

    values: list[float] = field(default_factory=list)

    def add(self, v: float) -> None:
        self.values.append(float(v))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def lo(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def hi(self) -> float:
        return max(self.values) if self.values else float("nan")

    def fmt(self, unit: str = "s", digits: int = 2) -> str:
        """``"1.23 s (1.20–1.31)"``."""
        if not self.values:
            return "–"
        return (f"{self.median:.{digits}f} {unit} ({self.lo:.{digits}f}–{self.hi:.{digits}f})"
                if self.n > 1 else f"{self.median:.{digits}f} {unit}")


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN when either is missing or ``b`` is zero."""
    if b == 0 or a != a or b != b:
        return float("nan")
    return a / b


def fmt_ratio(r: float) -> str:
    return "–" if r != r else f"{r:.2f}×"


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


class Throughput:
    """Rates of a measurement with ``records``, ``value_bytes`` and ``seconds``."""

    __slots__ = ()
    records: int
    value_bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.value_bytes / 1e6 / self.seconds if self.seconds > 0 else float("nan")

    @property
    def payloads_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")
