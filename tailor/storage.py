"""Object storage: one small synchronous interface over fsspec (s3fs or local).

Every call retries transient failures (HTTP 500/502/503/504, S3 ``SlowDown``,
timeouts, connection resets) with exponential backoff and full jitter, counts
each retry by status through ``on_retry``, and raises :class:`StorageError`
(with the object key, the operation and how to fix it) when it gives up or the
failure is permanent.  Keys are ``/``-separated and relative to the store's
root.  Credentials are never part of any message: s3fs/botocore read them from
the standard ``AWS_*`` environment.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import fsspec

from tailor.config import StoreConfig
from tailor.errors import StorageError

T = TypeVar("T")
RetryHook = Callable[[str, str], None]  # (operation, status) → None
_TRANSIENT_STATUS = {"500", "502", "503", "504"}


def _status(exc: BaseException) -> str | None:
    """A short status for a transient error, None for a permanent one."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            code = str(resp.get("Error", {}).get("Code", ""))
            status = str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in ("SlowDown", "Throttling", "RequestTimeout") or status in _TRANSIENT_STATUS:
                return status or code
            return None
        text = str(e)
        if "SlowDown" in text or "reduce your request rate" in text:
            return "503"
        if isinstance(e, TimeoutError) or "timeout" in type(e).__name__.lower():
            return "timeout"
        if isinstance(e, ConnectionError) or "connect" in type(e).__name__.lower():
            return "connection"
        e = e.__cause__ or e.__context__
    return None


def _write_tmp(path: str, data: bytes) -> str:
    """Write ``data`` to a new temporary file beside ``path``, fsynced; return its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


class Store:
    """A root in an object store.  Thread-safe; cheap to pickle for Dask."""

    def __init__(
        self,
        config: StoreConfig,
        *,
        on_retry: RetryHook | None = None,
        max_attempts: int = 8,
        base_delay: float = 0.05,
        max_delay: float = 5.0,
    ) -> None:
        self.config = config
        self.on_retry = on_retry
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.is_s3 = config.url.startswith("s3://")
        if self.is_s3:
            self.root = config.url[len("s3://"):].rstrip("/")
            endpoint = config.s3_endpoint_url
            client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
            self.fs: Any = fsspec.filesystem(
                "s3", client_kwargs=client_kwargs, skip_instance_cache=True,
                use_listings_cache=False,
                config_kwargs={"retries": {"mode": "standard", "total_max_attempts": 1}},
            )
            # botocore and s3fs make one attempt each: Tailor retries itself, with
            # jitter, and counts every retry by status.
            self.fs.retries = 1
        else:
            path = config.url[len("file://"):] if config.url.startswith("file://") else config.url
            self.root = os.path.abspath(path)
            self.fs = fsspec.filesystem("file", auto_mkdir=True)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Store, (self.config,))

    @property
    def url(self) -> str:
        return self.config.url

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn()
            except FileNotFoundError:
                raise
            except FileExistsError:
                raise
            except Exception as exc:  # classify; permanent errors raise at once
                status = _status(exc)
                if status is None or attempt == self.max_attempts:
                    why = f"{type(exc).__name__}: {exc}"
                    fix = ("check the bucket exists and the AWS_* credentials allow it"
                           if status is None else "the store keeps failing; retry later")
                    raise StorageError(f"{op} failed after {attempt} attempt(s)", key=key,
                                       store=self.url, reason=why, fix=fix) from exc
                if self.on_retry is not None:
                    self.on_retry(op, status)
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                time.sleep(random.uniform(0, delay))
        raise AssertionError("unreachable")

    # -- writes ---------------------------------------------------------------
    def put(self, key: str, data: bytes, *, part_size: int = 5 * 2**20,
            concurrency: int = 8) -> None:
        """Write ``data`` at ``key`` atomically (readers see all of it or none).

        On S3, objects over ``part_size`` go up as a multipart upload with up
        to ``concurrency`` parts in flight.  Blocks until durable.
        """
        path = self.path(key)
        if self.is_s3:
            self._call("put", key, lambda: self.fs.pipe_file(
                path, data, chunksize=part_size, max_concurrency=concurrency))
            return

        def local() -> None:
            os.replace(_write_tmp(path, data), path)

        self._call("put", key, local)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; False if it already did."""
        path = self.path(key)
        try:
            if self.is_s3:
                self._call("put", key, lambda: self.fs.pipe_file(path, data, mode="create"))
            else:
                def local() -> None:
                    # Content first, then an atomic, exclusive link: a reader never
                    # sees the key exist without its whole content.
                    tmp = _write_tmp(path, data)
                    try:
                        os.link(tmp, path)
                    finally:
                        os.unlink(tmp)
                self._call("put", key, local)
        except FileExistsError:
            return False
        return True

    def delete(self, keys: Iterable[str]) -> None:
        paths = [self.path(k) for k in keys]
        if paths:
            self._call("delete", paths[0], lambda: self.fs.rm(paths))

    # -- reads ----------------------------------------------------------------
    def get(self, key: str) -> bytes:
        """The whole object; FileNotFoundError if it does not exist."""
        path = self.path(key)
        return bytes(self._call("get", key, lambda: self.fs.cat_file(path)))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of an object (fewer at its end)."""
        path = self.path(key)
        return bytes(self._call("get", key, lambda: self.fs.cat_file(path, start=start, end=end)))

    def exists(self, key: str) -> bool:
        path = self.path(key)
        return bool(self._call("head", key, lambda: self.fs.exists(path)))

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a directory-like prefix), sorted; [] if none."""
        path = self.path(prefix)
        try:
            found = self._call("list", prefix, lambda: self.fs.find(path))
        except FileNotFoundError:
            return []
        cut = len(self.root) + 1
        return sorted(p[cut:] for p in found if ".tmp-" not in p)

    def invalidate(self) -> None:
        """Forget cached listings (another process may have written)."""
        self.fs.invalidate_cache()
