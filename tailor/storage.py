"""Object storage: one small synchronous interface over fsspec (s3fs or local).

Every call retries transient failures (HTTP 500/502/503/504, S3 ``SlowDown``,
timeouts, connection resets: :mod:`tailor.store_failures`) with exponential
backoff and full jitter, counts
each retry by status through ``on_retry``, and raises :class:`StorageError`
(with the object key, the operation and how to fix it) when it gives up or the
failure is permanent.  Keys are ``/``-separated and relative to the store's
root.  Credentials are never part of any message: s3fs/botocore read them from
the standard ``AWS_*`` environment.

Conditional writes, the base of every protocol that may run twice at once
(leases, chunk publish): :meth:`Store.put_if_absent` (S3 ``If-None-Match: *``,
locally an exclusive hard link) and :meth:`Store.put_if_match`, a
compare-and-swap on a version token from :meth:`Store.get_versioned` (S3: the
ETag with ``If-Match``; locally: inode, mtime and size, compared and replaced
under an exclusive ``flock`` of the key's directory).  On a local directory
every committed write is durable: the file is fsynced before its rename or
link, and the directory after it (and every directory a write creates), so a
power cut cannot lose a write that returned (:mod:`tailor.durable`); only
``put(..., sync_entry=False)`` leaves its directory entry to a later write in
the same directory.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import fsspec

from tailor import durable
from tailor.config import StoreConfig
from tailor.errors import StorageError
from tailor.store_failures import s3_code, transient_status

T = TypeVar("T")
RetryHook = Callable[[str, str], None]  # (operation, status) → None


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
            except FileNotFoundError as exc:
                if op != "put":
                    raise  # a missing key: the caller decides
                # s3fs turns NoSuchBucket into FileNotFoundError; for a write it
                # means the bucket (or the directory root) is missing.
                raise StorageError(f"{op} failed: the store does not exist", key=key,
                                   store=self.url, reason=f"{s3_code(exc) or 'NotFound'}: {exc}",
                                   fix=self._missing_fix()) from exc
            except FileExistsError:
                raise
            except Exception as exc:  # classify; permanent errors raise at once
                status = transient_status(exc)
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

    def _missing_fix(self) -> str:
        if self.is_s3:
            bucket = self.root.partition("/")[0]
            return (f"create the bucket {bucket} (e.g. `aws s3 mb s3://{bucket}`), or correct "
                    "the store URL / --s3-endpoint-url")
        return f"create the directory {self.root} (or correct the store path)"

    # -- writes ---------------------------------------------------------------
    def put(self, key: str, data: bytes | bytearray, *, part_size: int = 5 * 2**20,
            concurrency: int = 8, sync_entry: bool = True) -> None:
        """Write ``data`` at ``key`` atomically (readers see all of it or none).

        On S3, objects over ``part_size`` go up as a multipart upload with up
        to ``concurrency`` parts in flight.  Blocks until durable.

        ``sync_entry=False`` (local directories only; S3 ignores it): the
        content and every directory the write creates are durable when it
        returns, but the key's own entry in its directory is not fsynced.
        The caller promises that a later durable write *in the same
        directory* (which fsyncs that directory after its own rename or link)
        happens before anything may name ``key``: an fsync of a directory
        makes every entry in it durable, whoever made it.  The chunk's part
        files rely on this: the manifest's write fsyncs their directory.
        """
        path = self.path(key)
        if self.is_s3:
            self._call("put", key, lambda: self.fs.pipe_file(
                path, data, chunksize=part_size, max_concurrency=concurrency))
            return

        def local() -> None:
            os.replace(durable.write_tmp(path, data), path)
            if sync_entry:
                durable.fsync_dir(os.path.dirname(path))

        self._call("put", key, local)

    def sync_entry(self, key: str) -> None:
        """Make ``key``'s directory entry durable: locally, fsync its folder.

        For a writer that finds an object it may have created itself in a
        process that died between the link and the folder's fsync (a retried
        publish that sees its own manifest): after this, what it returns is
        durable.  A no-op on S3, where a completed PUT is durable.  Raises
        :class:`StorageError`.
        """
        if self.is_s3:
            return
        path = self.path(key)
        self._call("put", key, lambda: durable.fsync_dir(os.path.dirname(path)))

    def makedirs(self, prefixes: Iterable[str]) -> None:
        """Create the folders ``prefixes`` durably ahead of the writes into them.

        Locally, with :func:`~tailor.durable.makedirs_durable_many`: the parent
        of each new folder is fsynced once for all its new children, where
        writes that create their own folders fsync it once per folder.  A
        no-op on S3 (it has no folders).  Raises :class:`StorageError`.
        """
        if self.is_s3:
            return
        paths = [self.path(p.rstrip("/")) for p in prefixes]
        if paths:
            self._call("put", paths[0][len(self.root) + 1:],
                       lambda: durable.makedirs_durable_many(paths))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; False if it already did.

        Locally, the key's directory is fsynced after the link, which makes
        every entry in it durable (what ``put(..., sync_entry=False)`` relies on).
        """
        path = self.path(key)
        try:
            if self.is_s3:
                self._call("put", key, lambda: self.fs.pipe_file(path, data, mode="create"))
            else:
                def local() -> None:
                    # Content first, then an atomic, exclusive link: a reader never
                    # sees the key exist without its whole content.
                    tmp = durable.write_tmp(path, data)
                    try:
                        os.link(tmp, path)
                    finally:
                        os.unlink(tmp)
                    durable.fsync_dir(os.path.dirname(path))
                self._call("put", key, local)
        except FileExistsError:
            return False
        return True

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object and its version token (for :meth:`put_if_match`); None if absent.

        Content and token come from one request (S3 ``GetObject`` and its
        ETag) or one open file, so they always belong together.
        """
        path = self.path(key)
        if self.is_s3:
            bucket, _, obj = path.partition("/")

            async def s3get() -> tuple[bytes, str]:
                resp = await self.fs._call_s3("get_object", Bucket=bucket, Key=obj)
                try:
                    data = await resp["Body"].read()
                finally:
                    resp["Body"].close()
                return bytes(data), str(resp["ETag"])

            def remote() -> tuple[bytes, str]:
                return fsspec.asyn.sync(self.fs.loop, s3get)  # type: ignore[no-any-return]
            fn = remote
        else:
            def local() -> tuple[bytes, str]:
                with open(path, "rb") as f:
                    return f.read(), durable.local_token(os.fstat(f.fileno()))
            fn = local
        try:
            return self._call("get", key, fn)
        except FileNotFoundError:
            return None

    def put_if_match(self, key: str, data: bytes, token: str | None) -> bool:
        """Compare-and-swap: write ``key`` only if its version is still ``token``.

        ``token`` None means "only if ``key`` does not exist".  Returns False
        (nothing written) when the object changed or appeared meanwhile.
        Atomic against every other conditional write of ``key``, on S3
        (``If-Match``/``If-None-Match``) and locally (directory ``flock``).
        A retried request whose first try landed returns False: callers read
        the key again to see whose write it holds.  Locally, the key's
        directory is fsynced after the replace, as in :meth:`put_if_absent`.
        """
        if token is None:
            return self.put_if_absent(key, data)
        path = self.path(key)
        if self.is_s3:
            bucket, _, obj = path.partition("/")

            def remote() -> bool:
                try:
                    self.fs.call_s3("put_object", Bucket=bucket, Key=obj, Body=data,
                                    IfMatch=token)
                except Exception as exc:
                    if s3_code(exc) in ("PreconditionFailed", "NoSuchKey", "412"):
                        return False
                    if isinstance(exc, FileNotFoundError):  # the key was deleted meanwhile
                        return False
                    raise
                return True
            return self._call("put", key, remote)

        def local() -> bool:
            with durable.dir_lock(path):
                try:
                    current = durable.local_token(os.stat(path))
                except FileNotFoundError:
                    return False
                if current != token:
                    return False
                os.replace(durable.write_tmp(path, data), path)
                durable.fsync_dir(os.path.dirname(path))
                return True
        return self._call("put", key, local)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys``; keys that do not exist are skipped (deleting is idempotent)."""
        paths = [self.path(k) for k in keys]
        if not paths:
            return
        if self.is_s3:
            self._call("delete", paths[0], lambda: self.fs.rm(paths))
            return

        def local() -> None:
            for p in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
        self._call("delete", paths[0], local)

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

    def list_info(self, prefix: str) -> list[tuple[str, int, int]]:
        """``(key, size, modified_ns)`` of every object under ``prefix``, sorted by key."""
        path = self.path(prefix)
        try:
            found = self._call("list", prefix, lambda: self.fs.find(path, detail=True))
        except FileNotFoundError:
            return []
        cut = len(self.root) + 1
        out = []
        for p, info in found.items():
            if ".tmp-" in p:
                continue
            if "LastModified" in info:  # S3: a datetime
                ns = int(info["LastModified"].timestamp() * 1e9)
            else:
                ns = int(float(info.get("mtime", 0)) * 1e9)
            out.append((p[cut:], int(info.get("size") or 0), ns))
        return sorted(out)

    def uploads(self, prefix: str) -> list[tuple[str, str, int]]:
        """Incomplete multipart uploads under ``prefix``: ``(key, upload id, initiated_ns)``.

        Always empty on a local directory (it has no multipart uploads).
        """
        if not self.is_s3:
            return []
        bucket, _, want = self.path(prefix).partition("/")
        inner = self.root.partition("/")[2]
        cut = len(inner) + 1 if inner else 0
        out: list[tuple[str, str, int]] = []
        marker: dict[str, str] = {}

        def page() -> dict[str, Any]:
            return self.fs.call_s3(  # type: ignore[no-any-return]
                "list_multipart_uploads", Bucket=bucket, Prefix=want, **marker)
        for _ in range(100_000):  # pages of up to 1000 uploads
            got = self._call("list", prefix, page)
            for u in got.get("Uploads", []):
                out.append((u["Key"][cut:], u["UploadId"], int(u["Initiated"].timestamp() * 1e9)))
            if not got.get("IsTruncated"):
                break
            marker = {"KeyMarker": got["NextKeyMarker"],
                      "UploadIdMarker": got["NextUploadIdMarker"]}
        return sorted(out)

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one incomplete multipart upload (its parts are freed); no-op if it is gone."""
        bucket, _, obj = self.path(key).partition("/")

        def abort() -> None:
            try:
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=obj,
                                UploadId=upload_id)
            except Exception as exc:
                if s3_code(exc) != "NoSuchUpload":
                    raise
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", key, abort)

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
