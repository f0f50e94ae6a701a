"""The ``tailor`` group and the program's entry point.

Exit codes: 0 clean stop, 2 bad usage or config, 1 fatal error (reason on
stderr).  The commands register themselves on :func:`main` from the modules
:mod:`tailor.cli` imports.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from tailor import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tailor")
def main() -> None:
    """Tailor: Kafka metric points → sorted, compressed S files on object storage."""


#: Set by a command once its outputs are durable and reported: :func:`entry` then
#: ends the process at once instead of tearing the interpreter down.
_exit_fast = False


def exit_fast() -> None:
    """Let :func:`entry` end the process with ``os._exit`` once this command exits."""
    global _exit_fast
    _exit_fast = True


def entry() -> None:
    """The ``tailor`` program: :func:`main`, then a fast exit after ``build`` and ``read``.

    A build's outputs are published (or its failures reported) and its cluster
    closed when the command returns; what is left, the interpreter's teardown
    (threads of Dask, Arrow and numba, module finalizers), took a fifth of a
    small build's wall time (and in ``tailor read``, Arrow's thread pools now
    and then abort the process there, after every row was printed).  So after
    flushing stdout, stderr and logging it ends with ``os._exit`` and the
    command's exit code (the code ``sys.exit`` would give: None → 0, an int as
    is, anything else printed → 1).  Every other command, and any exception,
    takes the normal exit.  Tests call
    :func:`main` (click's runner), which never exits the process.
    """
    try:
        main()
    except SystemExit as exc:
        if not _exit_fast:
            raise
        code = exc.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        logging.shutdown()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # stdout closed (a pipe gone): nothing to save
            pass
        os._exit(code or 0)
