"""Build stage timers on the scheduler's Prometheus endpoint.

Tasks time their stages with ``distributed.metrics.context_meter`` (the labels
of :mod:`tailor.metrics`); Dask sums them per task prefix on the scheduler
(``Scheduler.cumulative_worker_metrics``, the dashboard's fine performance
metrics page).  :class:`StageMetrics` is a scheduler plugin that adds one
collector to the scheduler process's default Prometheus registry, the one
its dashboard serves at ``/metrics``, so the same numbers are scraped as
``tailor_build_stage_seconds_total{stage, task}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import prometheus_client
from distributed.diagnostics.plugin import SchedulerPlugin
from prometheus_client.core import CounterMetricFamily

from tailor.metrics import BUILD_STAGE_SECONDS, STAGES


def stage_seconds(cumulative: dict[Any, float]) -> dict[tuple[str, str], float]:
    """``(stage, task prefix)`` → seconds, from ``cumulative_worker_metrics`` (pure)."""
    out: dict[tuple[str, str], float] = {}
    for key, v in cumulative.items():
        if (isinstance(key, tuple) and len(key) == 4 and key[0] == "execute"
                and key[3] == "seconds" and key[2] in STAGES):
            k = (str(key[2]), str(key[1]))
            out[k] = out.get(k, 0.0) + float(v)
    return out


class StageCollector:
    """A Prometheus collector over one scheduler's cumulative worker metrics."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily(BUILD_STAGE_SECONDS,
                                  "Worker-seconds spent in each build stage, by task prefix",
                                  labels=["stage", "task"])
        for (stage, task), v in sorted(stage_seconds(self.scheduler.cumulative_worker_metrics)
                                       .items()):
            fam.add_metric([stage, task], v)
        yield fam


class StageMetrics(SchedulerPlugin):
    """Scheduler plugin: registers :class:`StageCollector` once per process.

    Registering it again (every build does) or on a new scheduler in the same
    process points the one collector at the current scheduler.
    """

    name = "tailor-stage-metrics"
    _collector: ClassVar[StageCollector | None] = None

    async def start(self, scheduler: Any) -> None:
        if StageMetrics._collector is None:
            StageMetrics._collector = StageCollector(scheduler)
            prometheus_client.REGISTRY.register(StageMetrics._collector)
        else:
            StageMetrics._collector.scheduler = scheduler
