"""Query-gallery distance matrices for re-ID evaluation.

Re-ID evaluation ranks, for every query image, all gallery images by their distance to the query
(smaller = more similar). This module computes that ``(num_query, num_gallery)`` distance matrix
from feature vectors, with the two metrics used by torchreid and fast-reid:

* ``"euclidean"``: the **squared** Euclidean distance ``||q||^2 + ||g||^2 - 2 q.g``, exactly the
  formula of torchreid's ``euclidean_squared_distance``, clamped at 0 (rounding can make the
  expansion slightly negative for near-identical vectors). Squaring does not change any ranking,
  so CMC / mAP / mINP are the same as with the plain Euclidean distance.
* ``"cosine"``: ``1 - cos(q, g)``; both feature sets are L2-normalised inside (a zero vector stays
  zero, so its distance to everything is 1). Values lie in ``[0, 2]`` up to rounding; as in
  torchreid they are not clamped.

The matrix is computed in blocks of ``block_size`` query rows, so the temporary memory is
``O(block_size * num_gallery)`` on top of the ``float32`` result. The computation runs on the
device of the input tensors, without gradient tracking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError
from attnreid.utils.checks import one_of, positive_int

__all__ = [
    "DISTANCE_METRICS",
    "compute_distance",
    "normalize_distance",
    "owns_distance",
    "pairwise_distance",
    "ranks_sequences",
]

#: The metrics accepted by :func:`compute_distance` (and by ``eval.metric``).
DISTANCE_METRICS: tuple[str, ...] = ("euclidean", "cosine")


def owns_distance(model: Any) -> bool:
    """Whether ``model`` ranks with its own ``compute_distance(query, gallery)`` instead of a
    metric: its type says so with ``own_distance`` (a class attribute, or a property where an
    option decides, e.g. DuATM's ``avgpool`` ablation has none). Never found by calling it."""
    return bool(getattr(model, "own_distance", False))


def ranks_sequences(model: Any) -> bool:
    """Whether ``model``'s test features are feature sequences that only its own pairwise
    distance compares (DuATM's matching, ``rank_with="matching"``), so that a gallery index, a
    tracker or an exported graph, which compare one vector per image with a metric, cannot use
    them; such a model gives its feature vector with ``rank_with="feature"``."""
    return owns_distance(model) and getattr(model, "rank_with", None) == "matching"


def _as_feature_tensor(
    x: torch.Tensor | np.ndarray, name: str, device: torch.device | None
) -> torch.Tensor:
    """Return ``x`` as a 2-D floating tensor (numpy arrays go to ``device``, default CPU)."""
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
            raise ConfigError(f"{name} features must be a real numeric array, got dtype {x.dtype}")
        x = np.ascontiguousarray(x)
        if not x.flags.writeable:  # torch.from_numpy warns on read-only arrays
            x = x.copy()
        x = torch.from_numpy(x)
        if device is not None:
            x = x.to(device)
    elif not isinstance(x, torch.Tensor):
        raise ConfigError(
            f"{name} features must be a torch.Tensor or a numpy array, got {type(x).__name__}"
        )
    if x.is_complex():
        raise ConfigError(f"{name} features must be real, got dtype {x.dtype}")
    if x.dim() != 2:
        raise ConfigError(
            f"{name} features must be a 2-D (num_images, feature_dim) array, "
            f"got shape {tuple(x.shape)}"
        )
    return x


def compute_distance(
    query: torch.Tensor | np.ndarray,
    gallery: torch.Tensor | np.ndarray,
    metric: str = "euclidean",
    block_size: int = 4096,
) -> torch.Tensor:
    """Distance matrix between query and gallery features.

    Args:
        query: ``(Q, D)`` query features, a tensor or a numpy array.
        gallery: ``(G, D)`` gallery features, a tensor or a numpy array.
        metric: ``"euclidean"`` (squared Euclidean, clamped at 0, as torchreid) or
            ``"cosine"`` (``1 - cosine similarity`` of the L2-normalised features).
        block_size: number of query rows computed at a time; bounds the temporary memory to
            about ``block_size * G`` elements. The result does not depend on it.

    Returns:
        A ``float32`` tensor of shape ``(Q, G)``; entry ``[i, j]`` is the distance between query
        ``i`` and gallery item ``j``. It lives on the device of the input tensors (CPU when both
        inputs are numpy arrays; a numpy input is moved to the device of the other input).

    The arithmetic is done in ``float64`` when either input is ``float64`` and in ``float32``
    otherwise (half-precision and integer inputs are promoted); only the result is cast to
    ``float32``. NaN features give NaN distances, which :func:`~attnreid.evaluation.metrics.
    evaluate_rank` rejects.

    Raises:
        ConfigError: unknown ``metric`` (the message lists the valid ones), ``block_size < 1``,
            inputs that are not 2-D real arrays, feature dimensions that differ, or tensors on
            two different devices.
    """
    one_of(metric, DISTANCE_METRICS, "metric")
    positive_int(block_size, "block_size")

    device = next((x.device for x in (query, gallery) if isinstance(x, torch.Tensor)), None)
    q = _as_feature_tensor(query, "query", device)
    g = _as_feature_tensor(gallery, "gallery", device)
    if q.device != g.device:
        raise ConfigError(
            f"query features are on {q.device} but gallery features are on {g.device}; "
            "move both to the same device"
        )
    if q.shape[1] != g.shape[1]:
        raise ConfigError(
            f"feature dimensions differ: query features have dimension {q.shape[1]}, "
            f"gallery features have dimension {g.shape[1]}"
        )

    dtype = torch.float64 if torch.float64 in (q.dtype, g.dtype) else torch.float32
    num_q, num_g = q.shape[0], g.shape[0]
    out = torch.empty((num_q, num_g), dtype=torch.float32, device=q.device)
    if num_q == 0 or num_g == 0:
        return out

    with torch.no_grad():
        q = q.to(dtype)
        g = g.to(dtype)
        if metric == "cosine":
            q = F.normalize(q, p=2, dim=1)
            g_t = F.normalize(g, p=2, dim=1).t()
            for start in range(0, num_q, block_size):
                block = q[start : start + block_size]
                out[start : start + block.shape[0]] = 1.0 - block @ g_t
        else:
            g_sq = g.pow(2).sum(dim=1)  # (G,)
            g_t = g.t()
            for start in range(0, num_q, block_size):
                block = q[start : start + block_size]
                d = block.pow(2).sum(dim=1, keepdim=True) + g_sq  # (b, G)
                d = torch.addmm(d, block, g_t, beta=1, alpha=-2)
                out[start : start + block.shape[0]] = d.clamp_(min=0)
    return out


def normalize_distance(d: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Scale a distance matrix to ``[0, 1]`` by dividing it by its largest entry.

    Some papers feed or report distances in ``[0, 1]``; this is that normalisation, with one
    global maximum for the whole matrix (not per query row). Dividing by a positive constant does
    not change any ranking, so CMC, mAP and mINP are unaffected. Tiny negative values (rounding in
    the cosine distance) are clamped to 0. An all-zero (or empty) matrix is returned as zeros.

    Args:
        d: a distance matrix (tensor or numpy array) with non-negative entries.

    Returns:
        A new floating array of the same type, shape and device as ``d``.
    """
    if isinstance(d, torch.Tensor):
        t = d if d.is_floating_point() else d.to(torch.float32)
        if t.numel() == 0:
            return t.clone()
        peak = t.max()
        if not bool(peak > 0):
            return torch.zeros_like(t)
        return (t / peak).clamp_(min=0)
    a = np.asarray(d)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    if a.size == 0:
        return a.copy()
    peak = a.max()
    if not peak > 0:
        return np.zeros_like(a)
    return np.clip(a / peak, 0, None)


def pairwise_distance(
    x: torch.Tensor, metric: str = "euclidean", *, squared: bool = False
) -> torch.Tensor:
    """(N, D) -> (N, N) distances, the one pairwise distance of the triplet losses.

    ``euclidean``: ``||a||^2 + ||b||^2 - 2 a.b``; with ``squared=True`` clamped at 0, else
    clamped at ``1e-12`` before the square root, so the gradient stays finite at zero distance
    (an anchor and itself, or two equal features). ``cosine``: ``1 - cos(a, b)``.
    """
    if one_of(metric, DISTANCE_METRICS, "triplet metric") == "cosine":
        xn = F.normalize(x, dim=1)
        return 1.0 - xn @ xn.t()
    sq = (x * x).sum(1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * x @ x.t()
    return d2.clamp_min(0) if squared else d2.clamp_min(1e-12).sqrt()
