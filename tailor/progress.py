"""A progress line for long commands: a tqdm bar on a terminal, plain lines elsewhere.

On a terminal :class:`Progress` draws a bar on stderr that redraws in place.
Without one (a log file, cron, CI), redrawing would fill the log with
carriage returns, so it writes a plain line instead each time another tenth
of the work is done, and at the end.  Writes only to its stream; never raises
but what writing to the stream raises.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm


class Progress:
    """``done`` of ``total`` units, shown on ``stream`` (default stderr).

    Use as a context manager; call :meth:`advance` as units finish.
    """

    def __init__(self, total: int, *, unit: str, prefix: str,
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.unit = unit
        self.prefix = prefix
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._tenths = 0
        isatty = getattr(self.stream, "isatty", None)
        self._bar: tqdm | None = tqdm(
            total=total, unit=unit, desc=prefix, file=self.stream, leave=True,
        ) if isatty is not None and isatty() else None

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        tenths = 10 * self.done // max(1, self.total)
        if tenths > self._tenths or self.done == self.total:
            self._tenths = tenths
            print(f"{self.prefix}: {self.done}/{self.total} {self.unit}", file=self.stream,
                  flush=True)

    def close(self) -> None:
        """End the bar (its last state stays on the terminal)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
