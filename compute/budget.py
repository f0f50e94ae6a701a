"""Memory budget → task sizes (pure).

``--memory-budget`` is the build data one worker may hold at once: the
running task's working set plus the task results it keeps for others (map
outputs waiting for the splitters, pieces waiting for their reduce task).
A worker runs one task at a time; Dask spills kept results to disk when they
pass its memory target, so what must fit is one task's working set beside
what has not been spilled yet.  The sizes below give a task at most
:data:`TASK_SHARE` of the budget:

- a reduce (or fused unit) task holds its points about
  :data:`SORT_BYTES_PER_POINT` each at its peak (the 44-byte decoded rows,
  their concatenation, the sort's permutations and the S-file columns and
  Parquet bytes; measured), so a partition gets
  ``budget × TASK_SHARE / SORT_BYTES_PER_POINT`` points.  Partition
  boundaries snap to series starts (compute/route.py), which can make a
  partition up to twice that: still within half the budget;
- a map task holds its raw bytes and their decoded rows twice (decoded, then
  cut into pieces): :data:`MAP_BYTES_PER_RAW_BYTE` per raw byte, so its byte
  ranges total at most ``budget × TASK_SHARE / MAP_BYTES_PER_RAW_BYTE``
  (:func:`map_bytes`); a unit gets about :data:`MAPS_PER_WORKER` maps per
  worker within that bound (:func:`map_group_bytes`).

A unit has (maps × partitions) piece tasks, each a lookup costing the
scheduler about a millisecond: at the default budget a 100M-point chunk has
~25 maps × 15 partitions; a budget tiny for its chunk makes both numbers
grow with the chunk and the build scheduler-bound.

A worker process also needs :data:`WORKER_OVERHEAD` for Python, Dask, numba
and Arrow before any data: Tailor's own LocalCluster gives each worker a Dask
memory limit of budget + overhead (:func:`local_memory_limit`; with in-process
workers, the process holds every worker's budget beside :data:`IN_PROCESS_OVERHEAD`).
"""

from __future__ import annotations

from typing import Final

#: Share of the budget one task's working set may take.
TASK_SHARE: Final = 0.25
#: Peak bytes per point of a reduce task (decoded rows in, sort, encode), measured
#: at 2M points: ~140 B (44 B of input rows + ~95 B of sort and encode buffers).
SORT_BYTES_PER_POINT: Final = 160
#: Peak bytes per raw byte of a map task: raw bytes + decoded rows (44 B per point of
#: ~13 compressed bytes) + the same rows cut into pieces, with margin for data that
#: compresses better.
MAP_BYTES_PER_RAW_BYTE: Final = 10
#: RSS of a worker process before any build data (interpreter, Dask, numba, Arrow).
WORKER_OVERHEAD: Final = 512 * 2**20
#: The same for a build process whose workers are its threads: it also holds the
#: client, the scheduler and one heap for every worker (measured ~450 MiB at rest).
IN_PROCESS_OVERHEAD: Final = 2**30
#: Smallest byte range a map task reads (read.py fetches at least 64 KiB of tail anyway).
MIN_RANGE_BYTES: Final = 64 * 1024
#: Map tasks per worker a unit is cut into at least, while the budget allows.
MAPS_PER_WORKER: Final = 4


def partition_rows(memory_budget: int, override: int | None = None) -> int:
    """Points per partition (and at most in one fused unit task) for ``memory_budget``.

    ``override`` (``--rows-per-partition``) wins when given.
    """
    if override is not None:
        return max(1, override)
    return max(1, int(memory_budget * TASK_SHARE) // SORT_BYTES_PER_POINT)


def map_bytes(memory_budget: int) -> int:
    """Raw bytes one map task may read: what the budget allows (at least
    :data:`MIN_RANGE_BYTES`)."""
    return max(MIN_RANGE_BYTES, int(memory_budget * TASK_SHARE) // MAP_BYTES_PER_RAW_BYTE)


def range_bytes(memory_budget: int, range_bytes: int) -> int:
    """Bytes per planned byte range: ``--range-bytes``, or less if the budget needs it."""
    return min(range_bytes, map_bytes(memory_budget))


def map_group_bytes(memory_budget: int, unit_bytes: int, workers: int) -> int:
    """Raw bytes per map task of a unit of ``unit_bytes``: about
    :data:`MAPS_PER_WORKER` maps per worker (so maps overlap), within :func:`map_bytes`.

    Fewer, bigger maps mean fewer pieces: a unit has (maps × partitions) piece tasks.
    """
    even = -(-unit_bytes // max(1, MAPS_PER_WORKER * workers))
    return min(map_bytes(memory_budget), max(MIN_RANGE_BYTES, even))


def local_memory_limit(memory_budget: int, workers: int, *, processes: bool) -> int:
    """The Dask ``memory_limit`` of each worker of Tailor's own LocalCluster.

    A worker process: its budget plus the interpreter.  In-process workers
    (threads of the build process) each measure the whole process, so each
    gets every worker's budget plus :data:`IN_PROCESS_OVERHEAD`.
    """
    if processes:
        return memory_budget + WORKER_OVERHEAD
    return workers * memory_budget + IN_PROCESS_OVERHEAD
