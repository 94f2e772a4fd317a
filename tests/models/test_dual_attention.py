"""The dual attention block: batched distances against the literal eq. 1-5 oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError, ModelError
from attnreid.models.attention import duatm_kernel
from attnreid.models.attention.dual_attention import DualAttention, literal_sequence_distance


def unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def block(dim: int, matching: str = "full", seed: int = 0) -> DualAttention:
    """A block with non-trivial BatchNorm statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    blk = DualAttention(dim, matching)
    with torch.no_grad():
        blk.bn.running_mean.uniform_(-0.2, 0.2)
        blk.bn.running_var.uniform_(0.5, 2.0)
        blk.bn.weight.uniform_(0.5, 3.0)
        blk.bn.bias.uniform_(-0.5, 0.5)
    return blk.eval()


def oracle(blk: DualAttention, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    return torch.tensor(
        [[literal_sequence_distance(a, b, blk) for b in gallery] for a in query],
        dtype=torch.float64,
    )


def sets(s: int, d: int, sg: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random query / gallery sequences with an identical and a near-duplicate pair."""
    q, g = unit(4, s, d, seed=1), unit(6, sg or s, d, seed=2)
    if sg is None or sg == s:
        g[2] = q[1]
        g[4] = F.normalize(q[3] + 0.003 * unit(s, d, seed=3), dim=-1)
    return q, g


@pytest.mark.parametrize("matching", ["full", "inter", "intra"])
@pytest.mark.parametrize("onednn", [True, False, None])  # None: the faster, measured
def test_batched_equals_literal(matching, onednn, monkeypatch):
    monkeypatch.setattr(duatm_kernel, "USE_ONEDNN", onednn)
    blk = block(16, matching)
    q, g = sets(5, 16)
    ref = oracle(blk, q, g)
    for bs in (None, 1, 2, 4):
        got = blk.distance_matrix(q, g, block_size=bs)
        assert got.dtype == torch.float32 and got.shape == (4, 6)
        assert torch.allclose(got.double(), ref, atol=1e-5, rtol=0), (bs, (got - ref).abs().max())
    if matching != "inter":  # refined vs aligned: 0 for an identical pair
        assert got[1, 2] < 1e-5


def test_batched_equals_literal_at_the_paper_shapes():
    """S = 32 (the 8x4 Block-4 map at 256x128), D = 256."""
    blk = block(256)
    q, g = unit(2, 32, 256, seed=4), unit(3, 32, 256, seed=5)
    g[1] = q[0]
    assert torch.allclose(blk.distance_matrix(q, g).double(), oracle(blk, q, g), atol=1e-5, rtol=0)


@pytest.mark.parametrize("matching", ["full", "inter"])
def test_sequences_of_different_lengths(matching):
    blk = block(8, matching)
    q, g = sets(3, 8, sg=7)
    got = blk.distance_matrix(q, g, block_size=2)
    assert torch.allclose(got.double(), oracle(blk, q, g), atol=1e-5, rtol=0)


def test_expansion_alone_is_not_exact_for_duplicates(monkeypatch):
    """The guard that recomputes tiny squared distances is what makes duplicates exact."""
    blk = block(256)
    q, g = unit(2, 32, 256, seed=4), unit(3, 32, 256, seed=5)
    g[1] = q[0]
    g[2] = F.normalize(q[1] + 0.003 * unit(32, 256, seed=3), dim=-1)
    ref = oracle(blk, q, g)
    guarded = (blk.distance_matrix(q, g).double() - ref).abs().max()
    monkeypatch.setattr(duatm_kernel, "RECOMPUTE_BELOW", -1.0)
    unguarded = (blk.distance_matrix(q, g).double() - ref).abs().max()
    assert guarded < 1e-6 < 1e-5 < unguarded


@pytest.mark.parametrize("matching", ["full", "inter", "intra"])
def test_distance_is_symmetric(matching):
    blk = block(12, matching)
    a, b = unit(5, 4, 12, seed=6), unit(7, 4, 12, seed=7)
    ab, ba = blk.distance_matrix(a, b), blk.distance_matrix(b, a)
    assert torch.allclose(ab, ba.t(), atol=1e-6, rtol=0)
    assert literal_sequence_distance(a[0], b[0], blk) == pytest.approx(
        literal_sequence_distance(b[0], a[0], blk), abs=1e-12
    )
    train_d = blk(torch.cat([a, b]))
    assert torch.allclose(train_d, train_d.t())


@pytest.mark.parametrize("matching", ["full", "inter", "intra"])
def test_training_forward_equals_literal_and_has_gradients(matching):
    blk = block(10, matching)
    x = unit(6, 4, 10, seed=8)
    x[3] = x[0]
    got = blk(x)  # eval mode: running statistics, as the oracle
    assert torch.allclose(got.double(), oracle(blk, x, x), atol=1e-5, rtol=0)
    blk.train()
    xg = x.clone().requires_grad_(True)
    d = blk(xg)
    assert d.shape == (6, 6)
    (d * torch.rand(6, 6)).sum().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in blk.parameters())


def test_attention_weights_are_distributions():
    blk = block(8)
    x = unit(3, 5, 8, seed=9)
    w = blk.weights(blk.filters(x), x)
    assert w.shape == (3, 5, 5) and (w >= 0).all()
    assert torch.allclose(w.sum(-1), torch.ones(3, 5))


def test_two_stage_rescores_the_top_k_and_keeps_the_rest_in_pooled_order():
    blk = block(16)
    q, g = unit(3, 5, 16, seed=10), unit(9, 5, 16, seed=11)
    exact = blk.distance_matrix(q, g)
    pooled = torch.cdist(q.mean(1), g.mean(1))
    two = blk.two_stage_distance(q, g, k=4)
    for r in range(3):
        top = pooled[r].argsort()[:4]
        rest = pooled[r].argsort()[4:]
        assert torch.allclose(two[r, top], exact[r, top])
        assert two[r, rest].min() > two[r, top].max()
        assert torch.equal(two[r, rest].argsort(), pooled[r, rest].argsort())
    assert torch.allclose(blk.two_stage_distance(q, g, k=50), exact)  # k >= G: all exact


def test_errors():
    with pytest.raises(ModelError, match="matching"):
        DualAttention(8, "cross")
    blk = block(8, "intra")
    with pytest.raises(ConfigError, match="same length"):
        blk.distance_matrix(unit(2, 3, 8, seed=0), unit(2, 4, 8, seed=1))
    with pytest.raises(ConfigError, match=r"sequences \(N, S, 8\)"):
        blk.distance_matrix(unit(2, 8, seed=0), unit(2, 8, seed=1))
    with pytest.raises(ConfigError, match="k must be"):
        block(8).two_stage_distance(unit(2, 3, 8, seed=0), unit(2, 3, 8, seed=1), k=0)


def test_evaluation_restores_training_mode_and_leaves_statistics():
    blk = block(8)
    blk.train()
    before = blk.bn.running_mean.clone()
    blk.distance_matrix(unit(2, 3, 8, seed=0), unit(3, 3, 8, seed=1))
    assert blk.training and torch.equal(blk.bn.running_mean, before)


def test_prepared_sets_are_cached_until_the_parameters_change():
    blk = block(8)
    g = unit(5, 3, 8, seed=0)
    first = blk.prepare(g)
    assert blk.prepare(g) is first and blk.prepare(first) is first
    with torch.no_grad():
        blk.fc.bias.add_(0.1)
    second = blk.prepare(g)
    assert second is not first and not torch.equal(second.q, first.q)
    assert torch.allclose(blk.distance_matrix(g, second), blk.distance_matrix(g, g))
    blk.train()
    assert blk._cache is None
