"""The ``tailor`` command line: flags → one frozen config → the stage's ``run``.

Every flag also reads ``TAILOR_<FLAG>`` and may come from ``--config FILE``;
flags win over the environment, which wins over the file.  Exit codes: 0 clean
stop, 2 bad usage or config, 1 fatal error (reason on stderr).

- :mod:`~tailor.cli.app`: the ``tailor`` group (:func:`main`) and the program
  (:func:`entry`);
- :mod:`~tailor.cli.options`: shared flags, config files, error handling;
- commands by group: :mod:`~tailor.cli.stages` (ingest, build),
  :mod:`~tailor.cli.queries` (read, status, diff), :mod:`~tailor.cli.shards`,
  :mod:`~tailor.cli.maintenance` (gc, compile-kernels), :mod:`~tailor.cli.tools`
  (produce, demo; the demo itself in :mod:`~tailor.cli.demo`)."""

from tailor.cli import maintenance, queries, shards, stages, tools
from tailor.cli.app import entry, main

__all__ = ["entry", "main", "maintenance", "queries", "shards", "stages", "tools"]
