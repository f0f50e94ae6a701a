"""The names of the systems the suites time (their table lines), shared by suites and render."""

from typing import Final

FIRST_RUN: Final = "tailor build, first run after install"
COLD: Final = "tailor build, empty numba cache"
WARM: Final = "tailor build (warm CLI)"
SCHEDULER: Final = "tailor build --scheduler (running cluster)"
IN_PROCESS: Final = "tailor in-process (extra: warm LocalCluster, build only)"
#: ``--tailor-lines`` keys → line names
LINES: Final = {"first": FIRST_RUN, "cold": COLD, "warm": WARM, "scheduler": SCHEDULER,
                "inprocess": IN_PROCESS}

INGEST: Final = "tailor ingest"
BARE: Final = "bare aiokafka fetch"
BARE_VALID: Final = "bare fetch + validation"
