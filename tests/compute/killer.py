"""A scheduler plugin that SIGKILLs the worker about to run the first task of a group.

Registered on a scheduler in another process, it travels by value
(``cloudpickle.register_pickle_by_value`` on this module), so that process
needs no access to the tests.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin


class KillOnFirst(SchedulerPlugin):
    """When the first task whose key starts with ``prefix + "-"`` goes to ``processing``,
    SIGKILL the worker it was sent to (once); ``killed`` is that worker's address and
    ``done_before`` the number of such tasks finished by then (0: the very first)."""

    name = "tailor-test-kill-on-first"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix + "-"
        self.killed: str | None = None
        self.done_before = 0
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str,
                   **kwargs: Any) -> None:
        if not str(key).startswith(self.prefix):
            return
        if finish == "memory" and self.killed is None:
            self.done_before += 1
        if self.killed is not None or finish != "processing":
            return
        ts = self.scheduler.tasks.get(key)
        ws = ts.processing_on if ts is not None else None
        if ws is None or not ws.pid:
            return
        self.killed = ws.address
        os.kill(ws.pid, signal.SIGKILL)
