"""Build stage timers on the scheduler's Prometheus endpoint.

Tasks time their stages with ``distributed.metrics.context_meter`` (the labels
of :mod:`tailor.metrics`); Dask sums them per task prefix on the scheduler
(``Scheduler.cumulative_worker_metrics``, the dashboard's fine performance
metrics page).  :class:`StageMetrics` is a scheduler plugin that adds one
collector to the scheduler process's default Prometheus registry, the one
its dashboard serves at ``/metrics``, so the same numbers are scraped as
``tailor_build_stage_seconds_total{stage, task}``.  Store retries inside tasks
(:func:`count_store_retry`, the build stores' retry hook) travel the same way and
are served as ``tailor_build_store_retries_total{op, status, task}``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any, ClassVar

import prometheus_client
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.metrics import context_meter
from prometheus_client.core import CounterMetricFamily

from tailor.metrics import BUILD_STAGE_SECONDS, BUILD_STORE_RETRIES, STAGES, STORE_RETRY_LABEL


def count_store_retry(op: str, status: str) -> None:
    """A :class:`~tailor.storage.Store` retry hook for build tasks: one ``count`` metric."""
    context_meter.digest_metric(f"{STORE_RETRY_LABEL}:{op}:{status}", 1, "count")


def store_retries(cumulative: Mapping[Any, float]) -> dict[tuple[str, str, str], float]:
    """``(op, status, task prefix)`` → store retries counted by :func:`count_store_retry` (pure)."""
    out: dict[tuple[str, str, str], float] = {}
    for key, v in cumulative.items():
        if (isinstance(key, tuple) and len(key) == 4 and key[0] == "execute"
                and key[3] == "count" and isinstance(key[2], str)
                and key[2].startswith(STORE_RETRY_LABEL + ":")):
            _, op, status = key[2].split(":", 2)
            k = (op, status, str(key[1]))
            out[k] = out.get(k, 0.0) + float(v)
    return out


def stage_seconds(cumulative: Mapping[Any, float], labels: Collection[str] | None = STAGES
                  ) -> dict[tuple[str, str], float]:
    """``(label, task prefix)`` → seconds of the ``execute`` activities (pure).

    ``cumulative`` is a scheduler's ``cumulative_worker_metrics`` (or
    :func:`cumulative_metrics`); ``labels`` None keeps Dask's own labels
    (``thread-cpu``, ``executor``, …) beside Tailor's stages.
    """
    out: dict[tuple[str, str], float] = {}
    for key, v in cumulative.items():
        if (isinstance(key, tuple) and len(key) == 4 and key[0] == "execute"
                and key[3] == "seconds" and (labels is None or key[2] in labels)):
            k = (str(key[2]), str(key[1]))
            out[k] = out.get(k, 0.0) + float(v)
    return out


def cumulative_metrics(client: Any) -> dict[tuple[Any, ...], float]:
    """The scheduler's ``cumulative_worker_metrics``, fetched by ``client`` (blocks on it)."""
    def get(dask_scheduler: Any) -> list[tuple[list[Any], float]]:
        return [(list(k) if isinstance(k, tuple) else [k], float(v))
                for k, v in dask_scheduler.cumulative_worker_metrics.items()]

    return {tuple(k): v for k, v in client.run_on_scheduler(get)}


class StageCollector:
    """A Prometheus collector over a scheduler's cumulative worker metrics: the last
    started of the process's schedulers that have not closed (none: empty families)."""

    def __init__(self) -> None:
        self.schedulers: list[Any] = []

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily(BUILD_STAGE_SECONDS,
                                  "Worker-seconds spent in each build stage, by task prefix",
                                  labels=["stage", "task"])
        cumulative = self.schedulers[-1].cumulative_worker_metrics if self.schedulers else {}
        for (stage, task), v in sorted(stage_seconds(cumulative).items()):
            fam.add_metric([stage, task], v)
        yield fam
        retries = CounterMetricFamily(BUILD_STORE_RETRIES,
                                      "Object store retries inside build tasks",
                                      labels=["op", "status", "task"])
        for (op, status, task), n in sorted(store_retries(cumulative).items()):
            retries.add_metric([op, status, task], n)
        yield retries


class StageMetrics(SchedulerPlugin):
    """Scheduler plugin: registers :class:`StageCollector` once per process.

    Registering it again on the same scheduler (every build does) is a no-op
    (``idempotent``: Dask would otherwise warn that it overwrites it).  With
    several schedulers in one process (a build's in-process cluster beside
    another), the collector serves the newest one still running, and the one
    before again once that closes.
    """

    name = "tailor-stage-metrics"
    idempotent = True
    _collector: ClassVar[StageCollector | None] = None

    def __init__(self) -> None:
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        if StageMetrics._collector is None:
            StageMetrics._collector = StageCollector()
            prometheus_client.REGISTRY.register(StageMetrics._collector)
        self.scheduler = scheduler
        StageMetrics._collector.schedulers.append(scheduler)

    async def close(self) -> None:
        c = StageMetrics._collector
        if c is not None and self.scheduler is not None:
            c.schedulers = [s for s in c.schedulers if s is not self.scheduler]
