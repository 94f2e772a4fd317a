"""The checks every option of the library shares, written once.

``one_of`` and ``positive_int`` validate a value and raise ``error`` (a subclass of
:class:`~attnreid.errors.AttnReidError`, :class:`~attnreid.errors.ConfigError` by default) with
the one-line message the CLI prints; ``did_you_mean`` is the suggestion those messages end with
(``; did you mean 'x'?``, or nothing).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from numbers import Integral
from typing import Any, TypeVar

from attnreid.errors import AttnReidError, ConfigError

T = TypeVar("T")

__all__ = ["did_you_mean", "one_of", "positive_int"]


def did_you_mean(value: object, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """``"; did you mean 'closest'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def one_of(
    value: T,
    choices: Iterable[T],
    what: str,
    error: type[AttnReidError] = ConfigError,
) -> T:
    """``value`` if it is one of ``choices``, else ``error("{what} must be one of a, b, got
    'x'; did you mean 'a'?")``."""
    options = list(choices)
    if value in options:
        return value
    hint = did_you_mean(value, [str(c) for c in options]) if isinstance(value, str) else ""
    names = ", ".join(str(c) for c in options)
    raise error(f"{what} must be one of {names}, got {value!r}{hint}")


def positive_int(value: Any, what: str, error: type[AttnReidError] = ConfigError) -> int:
    """``int(value)`` if it is an integer >= 1 (numpy integers too, not a bool), else
    ``error("{what} must be a positive integer, got x")``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise error(f"{what} must be a positive integer, got {value!r}")
    return int(value)
