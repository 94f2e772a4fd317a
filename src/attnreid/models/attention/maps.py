"""From an attention matrix to a picture: the visualisation protocol every model shares.

An attention module over an ``height x width`` map gives a ``(B, L, L)`` matrix (``L = height *
width``, row ``i`` = the weights position ``i`` gives to every position). A picture of it is a
``(B, height, width)`` map: with a query point ``(y, x)`` in ``[0, 1]`` image coordinates, the
row of the feature cell that contains the point; without, the mean attention each position
receives (the column mean).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from attnreid.errors import ConfigError, ModelError


class QueryPointError(ModelError, ConfigError):
    """A query point that is not ``(y, x)`` in ``[0, 1] x [0, 1]`` (a model option and a
    command-line value at once, hence both bases)."""


def check_query_point(query_point: Sequence[float] | None) -> tuple[float, float] | None:
    """``(y, x)`` as floats, checked to lie in ``[0, 1] x [0, 1]``; None stays None."""
    if query_point is None:
        return None
    try:
        y, x = (float(v) for v in query_point)
    except (TypeError, ValueError):
        raise QueryPointError(
            f"query_point must be a pair (y, x) in [0, 1], got {query_point!r}"
        ) from None
    if not (0.0 <= y <= 1.0 and 0.0 <= x <= 1.0):
        raise QueryPointError(f"query_point (y, x) must lie in [0, 1] x [0, 1], got ({y:g}, {x:g})")
    return y, x


def cell_index(query_point: Sequence[float], height: int, width: int) -> int:
    """Row-major index of the ``height x width`` cell containing ``(y, x)`` in [0, 1]."""
    y, x = check_query_point(query_point)  # type: ignore[misc]
    return min(int(y * height), height - 1) * width + min(int(x * width), width - 1)


def attention_map(
    attn: Tensor, height: int, width: int, query_point: Sequence[float] | None = None
) -> Tensor:
    """``(B, L, L)`` attention over an ``height x width`` map -> ``(B, height, width)``."""
    b, n, m = attn.shape
    if n != height * width or m != n:
        raise ValueError(f"attention of shape {tuple(attn.shape)} does not fit {height}x{width}")
    if query_point is None:
        return attn.mean(dim=1).reshape(b, height, width)
    return attn[:, cell_index(query_point, height, width), :].reshape(b, height, width)
