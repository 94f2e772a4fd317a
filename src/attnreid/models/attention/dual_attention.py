"""The dual attention block and sequence distance of DuATM (Si et al., CVPR 2018, sec. 3.2).

A feature sequence is ``X = {x^i}_{i=1..S}``, ``x^i`` in ``R^D`` of unit L2 norm; a set of
sequences is a ``(N, S, D)`` tensor. For a pair ``(X_a, X_b)``:

* eq. 1, the transform layer: ``q_a^i = ReLU(BN(W x_a^i + b))``, ``(N, S, D) -> (N, S, D)``
  (``BatchNorm1d`` over the ``D`` channels of every vector of the batch);
* eq. 2, the attention layer: intra-sequence ``e_a^{i,m} = <q_a^i, x_a^m>`` and inter-sequence
  ``e_b^{i,n} = <q_a^i, x_b^n>``;
* eq. 3: the refined vector ``xbar_a^i = sum_m softmax_m(e_a^{i,m}) x_a^m`` and the aligned
  vector ``xhat_b^i = sum_n softmax_n(e_b^{i,n}) x_b^n``;
* eq. 4: ``d_a^i = ||xbar_a^i - xhat_b^i||_2`` and, in the other direction (the same block
  with the roles swapped), ``d_b^j = ||xbar_b^j - xhat_a^j||_2``;
* eq. 5: ``||X_a - X_b||_M = (1 / 2S_a) sum_i d_a^i + (1 / 2S_b) sum_j d_b^j``: symmetric.

Ablations (Table 2), the choice is ours where the paper gives no formula:

* ``inter`` only (no refinement): ``xbar_a^i`` is replaced by ``x_a^i`` itself;
* ``intra`` only (no alignment): ``xhat_b^i`` is replaced by ``xbar_b^i``, the refined vector
  at the *same position* ``i`` (the fixed spatial correspondence the paper argues against), so
  both sequences must have the same length and ``d_a^i = d_b^i``.

Three implementations of the same distance:

* :func:`literal_sequence_distance`: one pair, position by position in float64, straight from
  the equations (the test oracle);
* :meth:`DualAttention.forward`: all pairs of one training batch, ``(B, S, D) -> (B, B)``,
  differentiable (the triplet loss consumes it);
* :meth:`DualAttention.distance_matrix` / :meth:`DualAttention.two_stage_distance`: query x
  gallery at benchmark scale (see :mod:`attnreid.models.attention.duatm_kernel`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ConfigError, ModelError
from attnreid.models.attention.duatm_kernel import (
    Prepared,
    auto_block_size,
    block_distance,
    gemm_input,
    malloc_tuning,
    prepare,
)
from attnreid.utils.checks import one_of, positive_int

MATCHINGS = ("full", "intra", "inter")


class DualAttention(nn.Module):
    """The dual attention block (eq. 1-3) and the sequence distance (eq. 4-5).

    Args:
        dim: ``D``, the length of the sequence vectors.
        matching: ``"full"`` (intra + inter, DuATM), ``"intra"`` or ``"inter"`` (Table 2).
    """

    def __init__(self, dim: int, matching: str = "full") -> None:
        super().__init__()
        one_of(matching, MATCHINGS, "dual attention: matching", ModelError)
        self.dim, self.matching = dim, matching
        self.intra, self.inter = matching in ("full", "intra"), matching in ("full", "inter")
        self.fc = nn.Linear(dim, dim)  # W, b of eq. 1
        self.bn = nn.BatchNorm1d(dim)

    def filters(self, x: Tensor) -> Tensor:
        """Eq. 1: ``(N, S, D) -> (N, S, D)``, ``q = ReLU(BN(W x + b))``."""
        n, s, d = x.shape
        return F.relu(self.bn(self.fc(x.reshape(n * s, d)))).view(n, s, d)

    @staticmethod
    def weights(q: Tensor, memory: Tensor) -> Tensor:
        """Eq. 2-3 weights: ``q (N, S, D)``, ``memory (N, S', D)`` -> ``(N, S, S')``, rows sum
        to 1: the softmax over the memory's positions of ``<q^i, x^m>``."""
        return torch.softmax(q @ memory.transpose(1, 2), dim=-1)

    def refine(self, x: Tensor, q: Tensor) -> Tensor:
        """``xbar`` (eq. 3, intra) ``(N, S, D)``; ``x`` itself when the block has no intra part."""
        return self.weights(q, x) @ x if self.intra else x

    def forward(self, x: Tensor) -> Tensor:
        """All-pairs distance of one batch, ``(B, S, D) -> (B, B)``, differentiable.

        Entry ``[a, b]`` is eq. 5 for ``(X_a, X_b)``; ``M[a, b] = mean_i d_a^i`` is computed
        for every ordered pair and the result is ``(M + M^T) / 2``. Memory: ``O(B^2 S D)``.
        """
        q = self.filters(x)  # (B, S, D)
        xr = self.refine(x, q)  # (B, S, D)
        if self.inter:
            w = torch.softmax(torch.einsum("aid,bnd->aibn", q, x), dim=-1)  # (B, S, B, S)
            aligned = torch.einsum("aibn,bnd->abid", w, x)  # (B, B, S, D): xhat_b^i for a
        else:
            aligned = xr.unsqueeze(0).expand(len(x), -1, -1, -1)  # (B, B, S, D): xbar_b^i
        diff = xr.unsqueeze(1) - aligned  # (B, B, S, D)
        m = diff.pow(2).sum(-1).clamp_min(1e-12).sqrt().mean(-1)  # (B, B)
        return 0.5 * (m + m.t())

    # ------------------------------------------------------------------ evaluation at scale
    def train(self, mode: bool = True) -> DualAttention:
        if mode:
            self._cache = None  # the parameters may change: forget prepared sets
        return super().train(mode)

    @torch.no_grad()
    def prepare(self, x: Tensor | Prepared) -> Prepared:
        """The pair-independent quantities of a set of sequences ``(N, S, D)``: ``q``,
        ``xbar``, ``||xbar||^2``, ``X X^T`` (eval mode: BatchNorm's running statistics).

        The last set prepared is cached (until the block is put back in training mode or its
        parameters change), so a gallery scored one query block at a time is prepared once."""
        if isinstance(x, Prepared):
            return x
        _check_set(x, self.dim)
        params = tuple(t._version for t in (*self.parameters(), *self.buffers()))
        key = (x.data_ptr(), tuple(x.shape), x.stride(), x._version, x.dtype, params)
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] == key:
            return cached[2]
        was_training = self.training
        self.eval()
        try:
            xs = x.to(self.fc.weight.device, torch.float32)
            prepared = prepare(xs, self.filters, self.refine if self.intra else None)
        finally:
            super().train(was_training)
        self._cache = (key, x, prepared)  # holding x: its memory cannot be reused meanwhile
        return prepared

    @torch.no_grad()
    def distance_matrix(
        self,
        query: Tensor | Prepared,
        gallery: Tensor | Prepared,
        *,
        block_size: int | None = None,
    ) -> Tensor:
        """The exact eq. 5 distance of every query x gallery pair, ``(Q, G)`` float32 on the CPU.

        ``query (Q, S, D)``, ``gallery (G, S', D)`` (or their :meth:`prepare` results).
        Everything that does not depend on the pair is computed once per sequence
        (:meth:`prepare`); the pairs are then scored by blocks of ``block_size`` queries x
        ``block_size`` gallery items with large matrix products
        (:func:`~attnreid.models.attention.duatm_kernel.block_distance`). Temporary memory
        about ``10 * (block_size * S)^2 * 4`` bytes; ``None`` picks ``1024 // S`` (about 40 MB
        per block). The result does not depend on the block size.
        """
        with malloc_tuning():
            pq, pg = self.prepare(query), self.prepare(gallery)
            _check_lengths(pq, pg, self.inter)
            bs = block_size or auto_block_size(max(pq.x.shape[1], pg.x.shape[1]))
            out = torch.empty(len(pq.x), len(pg.x), dtype=torch.float32)
            for a0 in range(0, len(pq.x), bs):
                qa = pq.take(slice(a0, a0 + bs))
                left_a = gemm_input(qa.x) if self.inter else None  # reused for every block
                for b0 in range(0, len(pg.x), bs):
                    out[a0 : a0 + bs, b0 : b0 + bs] = block_distance(
                        qa, pg.take(slice(b0, b0 + bs)), intra_only=not self.inter, left_a=left_a
                    ).cpu()
        return out

    @torch.no_grad()
    def two_stage_distance(
        self, query: Tensor | Prepared, gallery: Tensor | Prepared, k: int = 100
    ) -> Tensor:
        """Rank by pooled features, re-score the top ``k`` of each query with eq. 5.

        Stage 1: the euclidean distance between the sequences' mean vectors. Stage 2: the
        ``k`` nearest gallery items of each query get their exact DuATM distance. The other
        items keep their stage-1 order *after* all re-scored ones: their distance is
        ``max(re-scored distances of the row) + 1 + pooled euclidean distance``.
        Returns ``(Q, G)`` float32 on the CPU.
        """
        positive_int(k, "two-stage matching: k")
        with malloc_tuning():
            pq, pg = self.prepare(query), self.prepare(gallery)
            _check_lengths(pq, pg, self.inter)
            k = min(k, len(pg.x))
            pooled = torch.cdist(pq.x.mean(1), pg.x.mean(1)).cpu()  # (Q, G)
            top = pooled.topk(k, dim=1, largest=False).indices  # (Q, k)
            rescored = torch.empty(len(pq.x), k)
            for r in range(len(pq.x)):  # one query against its own k candidates
                cand = pg.take(top[r].to(pg.x.device))
                rescored[r] = block_distance(
                    pq.take(slice(r, r + 1)), cand, intra_only=not self.inter
                )[0].cpu()
        out = pooled + rescored.amax(1, keepdim=True) + 1.0
        return out.scatter_(1, top, rescored)


def _check_lengths(pq: Prepared, pg: Prepared, inter: bool) -> None:
    if not inter and pq.x.shape[1] != pg.x.shape[1]:
        raise ConfigError(
            "DuATM intra-only matching compares positions one to one: query and gallery "
            f"sequences must have the same length, got {pq.x.shape[1]} and {pg.x.shape[1]}"
        )


def _check_set(x: Tensor, dim: int) -> None:
    if x.dim() != 3 or x.shape[2] != dim:
        raise ConfigError(
            f"DuATM distance: features must be sequences (N, S, {dim}), got shape {tuple(x.shape)}"
        )


# ---------------------------------------------------------------------- the literal oracle
def literal_sequence_distance(xa: Tensor, xb: Tensor, block: DualAttention) -> float:
    """Eq. 1-5 for one pair ``xa (S_a, D)``, ``xb (S_b, D)``, position by position, float64.

    Uses the block's parameters with BatchNorm's running statistics (evaluation). Kept simple
    on purpose: this is the reference the batched implementations are tested against.
    """
    bn = block.bn
    w, b, mean, var, gamma, beta = (
        t.detach().double().cpu()
        for t in (
            block.fc.weight,
            block.fc.bias,
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
        )
    )

    def q_of(x: Tensor) -> Tensor:  # eq. 1, one vector
        z = w @ x + b
        return torch.relu((z - mean) / torch.sqrt(var + bn.eps) * gamma + beta)

    def attend(q: Tensor, memory: Tensor) -> Tensor:  # eq. 2-3, one reference vector
        e = [float(q @ memory[m]) for m in range(len(memory))]
        top = max(e)
        z = sum(math.exp(v - top) for v in e)
        return sum((math.exp(v - top) / z) * memory[m] for m, v in enumerate(e))

    def refined(x: Tensor, i: int) -> Tensor:
        return attend(q_of(x[i]), x) if block.intra else x[i]

    def direction(x: Tensor, other: Tensor) -> float:  # (1 / S) sum_i d^i, eq. 4
        total = 0.0
        for i in range(len(x)):
            # inter: the aligned vector (eq. 3); intra only: the other's refined vector at i
            partner = attend(q_of(x[i]), other) if block.inter else refined(other, i)
            total += float(torch.linalg.vector_norm(refined(x, i) - partner))
        return total / len(x)

    xa, xb = xa.detach().double().cpu(), xb.detach().double().cpu()
    return 0.5 * direction(xa, xb) + 0.5 * direction(xb, xa)
