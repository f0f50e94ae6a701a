"""Tailor's error hierarchy.

Every error carries the context needed to act on it (partition, offset, object
key, reason, ...) and a message that says how to fix the problem.  Long-running
processes catch :class:`TailorError` subclasses at stage boundaries; anything
else is a bug.
"""

from __future__ import annotations

from typing import Any


class TailorError(Exception):
    """Base class.  ``context`` holds machine-readable details for logs."""

    def __init__(self, message: str, *, fix: str | None = None, **context: Any) -> None:
        self.message = message
        self.fix = fix
        self.context = {k: v for k, v in context.items() if v is not None}
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [self.message]
        if self.context:
            parts.append("(" + ", ".join(f"{k}={v!r}" for k, v in self.context.items()) + ")")
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return " ".join(parts)


class ConfigError(TailorError):
    """Bad configuration or usage: the CLI exits with code 2."""


class InvalidPayload(TailorError):
    """A Kafka record that violates docs/contracts.md, "Invalid payloads".

    ``reason`` is one of :data:`tailor.format.payload.REASONS`.
    """

    def __init__(self, reason: str, detail: str = "", **context: Any) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"invalid payload: {reason}" + (f": {detail}" if detail else ""),
                         **context)


class StorageError(TailorError):
    """Object storage failed after all retries."""


class BuildError(TailorError):
    """A chunk could not be built or published."""
