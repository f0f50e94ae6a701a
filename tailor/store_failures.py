"""Why an object-store call failed: transient (worth a retry) or permanent.

:func:`transient_status` decides what :class:`tailor.storage.Store` retries
(HTTP 500/502/503/504, S3 ``SlowDown`` and the other codes of
:data:`TRANSIENT_CODES`, timeouts, connection resets); :func:`failure_reason`
is the bounded label metrics and logs use.  Both look through the exception's
causes (s3fs and aiobotocore wrap the botocore error).  Pure; never raise.
"""

from __future__ import annotations

from collections.abc import Iterator

TRANSIENT_STATUS = {"500", "502", "503", "504"}
#: S3 error codes worth retrying (``ConditionalRequestConflict``: a concurrent
#: conditional write on the same key; the retry then sees the winner's version).
TRANSIENT_CODES = {"SlowDown", "Throttling", "RequestTimeout", "ConditionalRequestConflict"}


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def transient_status(exc: BaseException) -> str | None:
    """A short status for a transient error, None for a permanent one."""
    for e in exception_chain(exc):
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            code = str(resp.get("Error", {}).get("Code", ""))
            status = str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in TRANSIENT_CODES or status in TRANSIENT_STATUS:
                return status or code
            return None
        text = str(e)
        if "SlowDown" in text or "reduce your request rate" in text:
            return "503"
        if isinstance(e, TimeoutError) or "timeout" in type(e).__name__.lower():
            return "timeout"
        if isinstance(e, ConnectionError) or "connect" in type(e).__name__.lower():
            return "connection"
    return None


def s3_code(exc: BaseException) -> str | None:
    """The S3 error code (e.g. ``PreconditionFailed``) behind ``exc``, if any."""
    for e in exception_chain(exc):
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            return str(resp.get("Error", {}).get("Code", "")) or None
    return None


def failure_reason(exc: BaseException) -> str:
    """A short label for why a store call failed, for metrics and logs.

    The S3 error code when there is one (``NoSuchBucket``, ``AccessDenied``,
    ``SlowDown``…), else ``timeout``/``connection``/an HTTP status, else the
    exception's class name: a small, bounded set of values.
    """
    code = s3_code(exc)
    if code:
        return code
    return transient_status(exc) or type(exc.__cause__ or exc).__name__
