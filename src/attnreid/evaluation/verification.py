"""The verification view: is a query-gallery pair the same person or not?

Ranking metrics (CMC, mAP) say how well a gallery is ordered; a deployment also needs a yes /
no answer with a known error rate. Every query x gallery pair is a trial: *genuine* when both
show the same identity seen by different cameras, *impostor* when the identities differ;
same-identity same-camera pairs and junk gallery images (``pid == -1``) are left out, as the
ranking protocol leaves them out. A pair is declared a match when its distance is at most a
threshold ``t``; the false match rate ``FMR(t)`` is the share of impostor pairs at or below
``t`` and the true match rate ``TMR(t)`` (the ROC's TPR) the share of genuine pairs at or
below it.

:class:`VerificationStats` accumulates blocks of the distance matrix without holding it: the
genuine distances (few: about one per query and gallery camera) are kept; of the impostor
distances only the ``ceil(max_fmr x N) + 1`` smallest are kept, which is exactly what the
thresholds for FMRs up to ``max_fmr`` need, plus a histogram for the pictures. The threshold
for a target FMR ``f`` is the ``k``-th smallest impostor distance with ``k = floor(f x N)``
(strictly below it lie fewer than ``f x N`` impostors; ``t`` is the largest distance with
``FMR(t) <= f`` among the observed ones, and ``-inf`` when ``k = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_FMRS", "VerificationResult", "VerificationStats"]

DEFAULT_FMRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)


@dataclass
class VerificationResult:
    """Thresholds and true match rates at the target false match rates."""

    num_genuine: int
    num_impostor: int
    fmrs: list[float]
    thresholds: list[float]  # distance at or below which a pair is a match, per FMR
    tmrs: list[float]  # share of genuine pairs at or below that threshold (TPR at FPR)
    genuine: np.ndarray = field(repr=False)  # every genuine distance
    impostor_hist: tuple[np.ndarray, np.ndarray] = field(repr=False)  # (counts, bin edges)

    def rates(self) -> dict[str, float]:
        """``{"tpr@fpr=0.01": ..., ...}``: the true match rate at each false match rate."""
        return {f"tpr@fpr={f:g}": t for f, t in zip(self.fmrs, self.tmrs)}

    def as_dict(self) -> dict[str, object]:
        return {
            "num_genuine": self.num_genuine,
            "num_impostor": self.num_impostor,
            **self.rates(),
            "thresholds": {f"{f:g}": t for f, t in zip(self.fmrs, self.thresholds)},
        }


class VerificationStats:
    """Accumulates query x gallery distance blocks (see the module docstring)."""

    def __init__(
        self,
        num_impostor_bound: int,
        fmrs: Sequence[float] = DEFAULT_FMRS,
        bins: int = 200,
    ) -> None:
        """``num_impostor_bound``: an upper bound of the impostor pairs (``Q x G``), which
        fixes how many of the smallest impostor distances are kept."""
        self.fmrs = sorted(float(f) for f in fmrs)
        self.keep = math.ceil(max(self.fmrs) * max(num_impostor_bound, 1)) + 1
        self.bins = bins
        self._genuine: list[np.ndarray] = []
        self._smallest = np.zeros(0, np.float64)
        self._impostor_count = 0
        self._imp_values: list[np.ndarray] = []  # a bounded sample for the histogram
        self._rng = np.random.default_rng(0)

    def update(
        self,
        distmat: np.ndarray,
        q_pids: np.ndarray,
        q_camids: np.ndarray,
        g_pids: np.ndarray,
        g_camids: np.ndarray,
    ) -> None:
        """Add the trials of one block of rows (queries) of the distance matrix."""
        d = np.asarray(distmat, dtype=np.float64)
        same = q_pids[:, None] == g_pids[None, :]
        valid = g_pids[None, :] != -1
        genuine = same & (q_camids[:, None] != g_camids[None, :]) & valid
        impostor = ~same & valid
        self._genuine.append(d[genuine])
        imp = d[impostor]
        self._impostor_count += imp.size
        if imp.size:
            both = np.concatenate([self._smallest, imp])
            k = min(self.keep, both.size)
            self._smallest = np.partition(both, k - 1)[:k]
            take = min(imp.size, 20000)
            self._imp_values.append(self._rng.choice(imp, take, replace=False))

    def result(self) -> VerificationResult:
        genuine = np.sort(np.concatenate(self._genuine)) if self._genuine else np.zeros(0)
        smallest = np.sort(self._smallest)
        n_imp = self._impostor_count
        thresholds, tmrs = [], []
        for f in self.fmrs:
            k = math.floor(f * n_imp)
            t = float(smallest[k - 1]) if k >= 1 else -math.inf
            thresholds.append(t)
            hits = np.searchsorted(genuine, t, side="right")
            tmrs.append(float(hits / genuine.size) if genuine.size else math.nan)
        sample = np.concatenate(self._imp_values) if self._imp_values else np.zeros(0)
        lo = min(genuine.min(initial=np.inf), sample.min(initial=np.inf))
        hi = max(genuine.max(initial=-np.inf), sample.max(initial=-np.inf))
        edges = np.linspace(lo, hi, self.bins + 1) if np.isfinite(lo) else np.zeros(2)
        counts = np.histogram(sample, edges)[0] if sample.size else np.zeros(self.bins)
        return VerificationResult(
            int(genuine.size), int(n_imp), self.fmrs, thresholds, tmrs, genuine, (counts, edges)
        )
