"""The ``tailor`` command line's shared flags and helpers.

:func:`opt` is a click option that also reads ``TAILOR_<FLAG>``; ``--config
FILE`` (:data:`config_option`) fills flags from YAML; flags win over the
environment, which wins over the file.  :func:`handle_errors` maps Tailor's
errors to exit codes (2 bad usage or config, 1 fatal).  :func:`store` builds a
command's :class:`~tailor.config.StoreConfig` from its flags.  Each command
imports what it runs (tailor.config and pydantic included) inside its body,
so that ``tailor --help`` loads only click."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tailor.errors import ConfigError, TailorError

if TYPE_CHECKING:
    from tailor.config import StoreConfig

F = TypeVar("F", bound=Callable[..., Any])


def opt(*decls: str, **settings: Any) -> Callable[[F], F]:
    """A click option that also reads ``TAILOR_<FLAG>`` (e.g. TAILOR_BROKERS)."""
    flag = next(d for d in decls if d.startswith("--"))
    settings.setdefault("envvar", "TAILOR_" + flag[2:].replace("-", "_").upper())
    settings.setdefault("show_envvar", True)
    return click.option(*decls, **settings)


def _key(p: click.Parameter) -> str:
    env = p.envvar if isinstance(p.envvar, str) else None
    if env and env.startswith("TAILOR_"):
        return env[len("TAILOR_"):].lower()
    return (p.opts[0].lstrip("-") if p.opts else str(p.name)).replace("-", "_")


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        from tailor.config import load_config_file

        try:
            values = load_config_file(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
        # A key names a flag as its TAILOR_* variable does (flush-age, shards, from; a flag
        # stored under another name, --shards → shards_file, is found through that).
        dest = {_key(p): p.name for p in ctx.command.params if p.name}
        ctx.default_map = {**(ctx.default_map or {}),
                           **{dest.get(k, k): v for k, v in values.items()}}
    return value


config_option = opt("--config", type=click.Path(dir_okay=False), is_eager=True,
                    expose_value=False, callback=_load_config,
                    help="YAML file of flag values (flags and TAILOR_* win).")
s3_option = opt("--s3-endpoint-url", default=None,
                help="S3 endpoint (e.g. a moto server); credentials come from AWS_*.")
shards_option = opt("--shards", "shards_file", default=None, type=click.Path(dir_okay=False),
                    help="shards.yaml (default: 64 shared shards, no dedicated orgs).")


def window_length(value: str) -> int:
    """``--window-length`` in seconds; raises :class:`ConfigError` if it is no duration."""
    from tailor.config import parse_duration

    return int(parse_duration(value, what="--window-length"))


window_length_option = opt("--window-length", default="4h", show_default=True,
                           help="Chunk length; windows are aligned to the Unix epoch.")


def handle_errors(fn: F) -> F:
    """Map Tailor errors to exit codes: ConfigError → 2, TailorError → 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"tailor: error: {exc}", err=True)
            sys.exit(2)
        except TailorError as exc:
            click.echo(f"tailor: fatal: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:
            from pydantic import ValidationError

            if not isinstance(exc, ValidationError):
                raise
            click.echo(f"tailor: error: invalid configuration:\n{exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def topic_list(value: str) -> list[str]:
    """``"a, b,"`` → ``["a", "b"]``."""
    return [t.strip() for t in value.split(",") if t.strip()]


def time_arg(value: str | None, what: str) -> int | None:
    """Unix seconds from an integer or an ISO-8601 UTC time."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a time",
                          fix="write Unix seconds or ISO-8601 such as 2026-01-01T04:00:00Z"
                          ) from None
    return int((t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp())


def store(flags: dict[str, Any], flag: str) -> StoreConfig:
    """The store of flag ``flag`` (``raw``, ``out``, ...) with the command's ``--s3-endpoint-url``.

    Raises pydantic's ``ValidationError`` for a URL :class:`StoreConfig` refuses.
    """
    from tailor.config import StoreConfig

    return StoreConfig(url=flags[flag], s3_endpoint_url=flags["s3_endpoint_url"])


def optional_store(flags: dict[str, Any], flag: str) -> StoreConfig | None:
    """:func:`store`, or None when flag ``flag`` was not given."""
    return store(flags, flag) if flags[flag] else None

