"""Pydantic validation errors as one clean line per problem, for people at a terminal.

Pydantic's own ``str(ValidationError)`` is written for developers (model names, error type
codes, a documentation URL per error). A user who typed ``--shard 3/3`` or exported a bad
``CLIPSEARCH_*`` variable needs the option or variable, what is wrong and the value given.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_SETTINGS_TITLES = frozenset({"Settings"})
_PREFIXES = ("Value error, ", "Assertion failed, ")
_MAX_INPUT = 60


def describe(exc: ValidationError, env_prefix: str = "CLIPSEARCH_") -> str:
    """``exc`` as lines ``"  --shard: k/n must ... (got '3/3')"``; settings name their variable."""
    settings = exc.title in _SETTINGS_TITLES
    return "\n".join(_line(error, settings, env_prefix) for error in exc.errors())


def _line(error: Any, settings: bool, env_prefix: str) -> str:
    message = str(error.get("msg", "invalid value"))
    for prefix in _PREFIXES:
        if message.startswith(prefix):
            message = message[len(prefix):]
    where = _where(tuple(error.get("loc", ())), settings, env_prefix)
    shown = _shown(error.get("input"))
    text = f"{where}: {message}" if where else message
    return f"  {text}{shown}"


def _where(loc: tuple[Any, ...], settings: bool, env_prefix: str) -> str:
    names = [str(part) for part in loc if not isinstance(part, int)]
    if not names:
        return ""
    if settings:
        return env_prefix + "__".join(names).upper()
    return "--" + ".".join(names).replace("_", "-")


def _shown(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    text = repr(value)
    if len(text) > _MAX_INPUT:
        text = text[:_MAX_INPUT - 3] + "..."
    return f" (got {text})"
