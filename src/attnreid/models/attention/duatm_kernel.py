"""Batched DuATM distances for evaluation at scale (query x gallery, no gradients).

Every query-gallery pair runs the inter-sequence attention, so the matrix cannot be one
matrix product; this module scores a block of ``nA`` queries x ``nB`` gallery items at a time
with a handful of large operations. Per sequence, once (:func:`prepare`): the filters ``q``
(eq. 1), the refined vectors ``xbar`` (eq. 3, intra), ``||xbar^i||^2`` and the Gram matrix
``G = X X^T`` ``(S, S)``. Per block and direction (reference side ``A`` with ``q, xbar``,
memory side ``B`` with ``X, G``; the other direction swaps the roles):

* ``E[b, n, (a, i)] = <x_b^n, q_a^i>`` and ``C[b, n, (a, i)] = <x_b^n, xbar_a^i>``: two
  ``(nB S, D) x (D, nA S)`` matrix products;
* ``W = softmax over n of E`` — the inter-sequence weights of eq. 3;
* ``d^2 = ||xbar_a^i||^2 - 2 sum_n W C + sum_{n,n'} W_n G_b[n, n'] W_n'``, which is
  ``||xbar_a^i - xhat_b^i||^2`` expanded with ``xhat_b^i = sum_n W_n x_b^n``: a batched
  ``(S x S) x (S x nA S)`` product per gallery item instead of forming ``xhat`` (``S^3``
  instead of ``S^2 D`` operations per pair and direction);
* eq. 4-5: ``sqrt``, mean over ``i``, and the average of both directions.

Expanding the square costs precision only in absolute terms (float32: ``|error of d^2|`` up
to ~2e-8 at S = 32, D = 256, measured against float64), which matters when ``d^2`` is tiny: a
near-duplicate pair. Entries with ``d^2 < RECOMPUTE_BELOW`` (1e-4, i.e. ``d < 0.01``) are
recomputed from ``xbar - xhat`` directly, so every ``d`` is within ~1e-6 of the literal
formula (an identical pair gets 0, not ``sqrt(rounding noise)`` ~ 1e-4).

On the CPU in float32 the two large products run through whichever of oneDNN's
``mkldnn_linear`` and the default BLAS ``sgemm`` is faster on the machine, decided once per
process by timing both on a block-sized product (``USE_ONEDNN = None``; ``True`` / ``False``
force one): the ranking differs between machines — measured here, oneDNN was 2.3x faster than
MKL on an AMD EPYC (where MKL takes its AVX2 path) and MKL 2.5x faster than oneDNN on an Intel
Xeon with AVX-512. :func:`malloc_tuning` stops glibc from unmapping and re-faulting the same
few MB block buffers on every block (which cost more than the arithmetic here); both fall back
silently where unavailable.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

USE_ONEDNN: bool | None = None  # float32 CPU products via oneDNN; None: whichever is faster
TUNE_MALLOC = True  # glibc: keep freed block buffers for reuse (see malloc_tuning)
RECOMPUTE_BELOW = 1e-4  # squared distances below this are recomputed without expansion
_RECOMPUTE_CHUNK = 4096
_malloc_tuned = False
_onednn_measured: bool | None = None


@dataclass
class Prepared:
    """Per-sequence quantities of a set: ``x, q, xr (N, S, D)``, ``nr (N, S)``, ``gram (N, S, S)``.

    ``xr`` is the refined sequence ``xbar`` (or ``x`` without intra attention), ``nr`` its
    squared norms and ``gram`` ``x x^T``.
    """

    x: Tensor
    q: Tensor
    xr: Tensor
    nr: Tensor
    gram: Tensor

    def take(self, index: slice | Tensor) -> Prepared:
        """The sequences ``index`` (a slice: views; an index tensor: copies)."""
        fields = (self.x, self.q, self.xr, self.nr, self.gram)
        if isinstance(index, slice):
            return Prepared(*(t[index] for t in fields))
        return Prepared(*(t.index_select(0, index) for t in fields))


def prepare(
    x: Tensor,
    filters: Callable[[Tensor], Tensor],
    refine: Callable[[Tensor, Tensor], Tensor] | None,
    chunk: int = 1024,
) -> Prepared:
    """Compute ``q = filters(x)``, ``xr = refine(x, q)`` (``x`` if ``refine`` is None), the
    squared norms of ``xr`` and the Gram matrices, ``chunk`` sequences at a time."""
    n, s, _ = x.shape
    q = torch.empty_like(x)
    xr = torch.empty_like(x) if refine is not None else x
    gram, nr = x.new_empty(n, s, s), x.new_empty(n, s)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        q[sl] = filters(x[sl])
        if refine is not None:
            xr[sl] = refine(x[sl], q[sl])
        torch.bmm(x[sl], x[sl].transpose(1, 2), out=gram[sl])
        torch.linalg.vector_norm(xr[sl], dim=-1, out=nr[sl]).square_()
    return Prepared(x, q, xr, nr, gram)


def auto_block_size(length: int) -> int:
    """Sequences per block side so that a block's ``(n S) x (n S)`` buffers hold ~1M floats."""
    return max(1, 1024 // max(1, length))


@contextlib.contextmanager
def malloc_tuning() -> Iterator[None]:
    """glibc only: raise malloc's mmap and trim thresholds (once per process) so the same-sized
    block buffers are reused instead of being unmapped and page-faulted again on every block;
    ``malloc_trim(0)`` returns the freed memory to the system afterwards."""
    global _malloc_tuned
    libc = None
    if TUNE_MALLOC and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if not _malloc_tuned:
                libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: 32 MB (glibc's maximum)
                libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD: 512 MB
                _malloc_tuned = True
    try:
        yield
    finally:
        if libc is not None:
            with contextlib.suppress(AttributeError):
                libc.malloc_trim(0)


def _onednn(x: Tensor) -> bool:
    cpu_float32 = x.device.type == "cpu" and x.dtype == torch.float32
    if not (cpu_float32 and torch.backends.mkldnn.is_available()):
        return False
    return onednn_is_faster() if USE_ONEDNN is None else USE_ONEDNN


def onednn_is_faster(rows: int = 1024, dim: int = 256, repeats: int = 5) -> bool:
    """Whether oneDNN's ``mkldnn_linear`` beats the default ``left @ right.T`` on this CPU for
    a block-sized float32 product (best of ``repeats``, after a warm-up); measured once per
    process (about 0.1 s)."""
    global _onednn_measured
    if _onednn_measured is None:
        gen = torch.Generator().manual_seed(0)
        left = torch.randn(rows, dim, generator=gen)
        right = torch.randn(rows, dim, generator=gen)
        left_mkldnn = left.to_mkldnn()

        def best(fn: Callable[[], Tensor]) -> float:
            fn()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        dense = best(lambda: left @ right.t())
        mkldnn = best(lambda: torch.ops.aten.mkldnn_linear(left_mkldnn, right).to_dense())
        _onednn_measured = mkldnn < dense
    return _onednn_measured


def gemm_input(x: Tensor) -> Tensor:
    """``(N, S, D)`` -> the ``(N S, D)`` left operand of :func:`gemm_nt` (oneDNN's layout on
    the CPU)."""
    flat = x.reshape(-1, x.shape[-1])
    return flat.to_mkldnn() if _onednn(flat) and flat.numel() else flat


def gemm_nt(left: Tensor, right: Tensor) -> Tensor:
    """``left @ right.T`` as a dense tensor; ``left`` from :func:`gemm_input`."""
    if left.is_mkldnn:
        return torch.ops.aten.mkldnn_linear(left, right.contiguous()).to_dense()
    return left @ right.t()


def block_distance(
    a: Prepared,
    b: Prepared,
    *,
    intra_only: bool = False,
    left_a: Tensor | None = None,
    left_b: Tensor | None = None,
) -> Tensor:
    """Eq. 5 for every pair of two blocks: ``(nA, nB)``. ``left_a`` / ``left_b``: the blocks'
    :func:`gemm_input` of ``x``, if the caller keeps them across blocks."""
    if intra_only:
        return _intra_only(a, b)
    d_ab = _direction(a, b, left_b)  # (nB, nA): mean_i d_a^i
    d_ba = _direction(b, a, left_a)  # (nA, nB): mean_j d_b^j
    return 0.5 * (d_ab.t() + d_ba)


def _direction(ref: Prepared, mem: Prepared, left: Tensor | None = None) -> Tensor:
    """``mean_i ||xbar_ref^i - xhat_mem^i||`` for every (mem, ref) pair: ``(nM, nR)``."""
    n_r, s_r, d = ref.x.shape
    n_m, s_m = mem.x.shape[:2]
    if n_r == 0 or n_m == 0:
        return torch.zeros(n_m, n_r, device=ref.x.device)
    left = gemm_input(mem.x) if left is None else left  # (nM S_m, D)
    e = gemm_nt(left, ref.q.reshape(-1, d)).view(n_m, s_m, n_r * s_r)  # <x_b^n, q_a^i>
    c = gemm_nt(left, ref.xr.reshape(-1, d)).view(n_m, s_m, n_r * s_r)  # <x_b^n, xbar_a^i>
    w = torch.softmax(e, dim=1)  # inter-sequence weights over n, eq. 3
    del e
    h = torch.baddbmm(c, mem.gram, w, beta=-2.0)  # G_b W - 2 C
    del c
    d2 = h.mul_(w).sum(1).add_(ref.nr.reshape(1, -1))  # (nM, nR S_r): d_a^i squared
    del h
    if d2.min() < RECOMPUTE_BELOW:
        small = (d2 < RECOMPUTE_BELOW).nonzero()
        d2[small[:, 0], small[:, 1]] = _exact_sq(ref, mem, w, small)
    return d2.clamp_min_(0).sqrt_().view(n_m, n_r, s_r).mean(-1)


def _exact_sq(ref: Prepared, mem: Prepared, w: Tensor, idx: Tensor) -> Tensor:
    """``||xbar - sum_n w_n x_b^n||^2`` for the ``(b, a * S + i)`` entries in ``idx``."""
    xr = ref.xr.reshape(-1, ref.xr.shape[-1])
    out = []
    for chunk in idx.split(_RECOMPUTE_CHUNK):
        bi, col = chunk[:, 0], chunk[:, 1]
        xhat = torch.einsum("fn,fnd->fd", w[bi, :, col], mem.x[bi])  # (F, D)
        out.append((xr[col] - xhat).pow(2).sum(-1))
    return torch.cat(out)


def _intra_only(a: Prepared, b: Prepared) -> Tensor:
    """Intra-only matching: ``mean_i ||xbar_a^i - xbar_b^i||`` (positions one to one)."""
    xa, xb = a.xr.transpose(0, 1), b.xr.transpose(0, 1)  # (S, nA, D), (S, nB, D)
    d2 = torch.baddbmm(
        a.nr.t().unsqueeze(2) + b.nr.t().unsqueeze(1), xa, xb.transpose(1, 2), alpha=-2.0
    )  # (S, nA, nB)
    small = d2.new_zeros(0, 3, dtype=torch.long)
    if d2.numel() and d2.min() < RECOMPUTE_BELOW:
        small = (d2 < RECOMPUTE_BELOW).nonzero()
    for chunk in small.split(_RECOMPUTE_CHUNK):
        s, i, j = chunk.unbind(1)
        d2[s, i, j] = (xa[s, i] - xb[s, j]).pow(2).sum(-1)
    return d2.clamp_min_(0).sqrt_().mean(0)
