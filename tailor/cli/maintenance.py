"""``tailor gc`` and ``tailor compile-kernels``: upkeep of the stores and of numba's cache."""

from __future__ import annotations

from typing import Any

from tailor.cli.app import main
from tailor.cli.options import (
    config_option,
    handle_errors,
    opt,
    optional_store,
    s3_option,
)
from tailor.errors import ConfigError


@main.command(short_help="Find (and with --delete remove) leftovers of crashes and races.")
@opt("--raw", default=None, help="Raw store: unindexed objects, incomplete multipart uploads.")
@opt("--out", default=None, help="Output root: part files no manifest can ever list.")
@opt("--older-than", default="7d", show_default=True,
     help="Only raw objects and uploads older than this (at least 1h).")
@opt("--delete", is_flag=True, default=False, help="Remove them (default: only report).")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@s3_option
@config_option
@handle_errors
def gc(**flags: Any) -> None:
    """Report, or remove with --delete, what no build or reader will ever use."""
    from tailor.config import GcConfig, parse_duration
    from tailor.ops.gc import run

    if not flags["raw"] and not flags["out"]:
        raise ConfigError("nothing to collect", fix="pass --raw RAW and/or --out OUT")
    older = parse_duration(flags["older_than"], what="--older-than")
    if older < 3600:
        raise ConfigError(f"--older-than {flags['older_than']!r} is under one hour",
                          fix="pass 1h or more: younger objects may be in the middle of a write")
    cfg = GcConfig(raw=optional_store(flags, "raw"),
                   out=optional_store(flags, "out"),
                   older_than_s=older, delete=flags["delete"])
    run(cfg, as_json=flags["as_json"])


@main.command("compile-kernels",
              short_help="Compile and cache every numba kernel (make does it at install).")
@handle_errors
def compile_kernels() -> None:
    """Load (compiling into numba's cache if absent) every kernel a build and ingest run.

    numba compiles a kernel on its first call in a process whose cache lacks it
    (seconds for all of them); after this, a first `tailor build` or `tailor
    ingest` only loads them.  The cache lives beside the installed sources (or
    in NUMBA_CACHE_DIR).
    """
    import time

    from tailor.compute.warm import warm
    from tailor.format import validate_batch

    t0 = time.monotonic()
    warm()
    validate_batch.warm()
    print(f"tailor compile-kernels: every build and ingest kernel cached "
          f"({time.monotonic() - t0:.1f} s)")
