"""Distance matrices: against brute force, block-size independence, input types, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnreid.errors import ConfigError
from attnreid.utils.distance import DISTANCE_METRICS, compute_distance, normalize_distance


def features(seed: int, n: int, dim: int = 16) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, dim))).float()


def brute_euclidean(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    q64, g64 = q.double(), g.double()
    return ((q64[:, None, :] - g64[None, :, :]) ** 2).sum(-1)


def brute_cosine(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    q64, g64 = q.double(), g.double()
    dots = q64 @ g64.t()
    norms = q64.norm(dim=1)[:, None] * g64.norm(dim=1)[None, :]
    return 1 - dots / norms


def test_euclidean_matches_brute_force():
    q, g = features(0, 13), features(1, 29)
    d = compute_distance(q, g)
    assert d.dtype == torch.float32 and d.shape == (13, 29)
    torch.testing.assert_close(d.double(), brute_euclidean(q, g), rtol=1e-5, atol=1e-4)
    assert compute_distance(q, g, "euclidean").equal(d)


def test_euclidean_is_clamped_at_zero():
    q = features(2, 5, dim=64) * 100
    d = compute_distance(q, q)
    assert (d >= 0).all()
    scale = (q * q).sum(dim=1)  # self-distance is 0 up to float32 rounding of ||q||^2
    assert (torch.diagonal(d) <= 1e-6 * scale).all()


def test_cosine_matches_brute_force():
    q, g = features(3, 11), features(4, 17)
    d = compute_distance(q, g, metric="cosine")
    torch.testing.assert_close(d.double(), brute_cosine(q, g), rtol=0, atol=1e-6)
    # scale invariance: the features are L2-normalised inside
    torch.testing.assert_close(
        compute_distance(q * 7.5, g * 0.1, metric="cosine"), d, rtol=0, atol=1e-6
    )


def test_cosine_zero_vector_has_distance_one():
    q = torch.zeros(1, 8)
    d = compute_distance(q, features(5, 4, dim=8), metric="cosine")
    torch.testing.assert_close(d, torch.ones(1, 4))


@pytest.mark.parametrize("metric", DISTANCE_METRICS)
def test_block_size_does_not_change_the_result(metric):
    q, g = features(6, 37), features(7, 23)
    full = compute_distance(q, g, metric=metric, block_size=4096)
    for block in (1, 5, 36, 37, 100):
        torch.testing.assert_close(
            compute_distance(q, g, metric=metric, block_size=block), full, rtol=1e-6, atol=1e-5
        )


def test_numpy_and_mixed_inputs():
    q, g = features(8, 6), features(9, 7)
    expected = compute_distance(q, g)
    from_numpy = compute_distance(q.numpy(), g.numpy())
    assert isinstance(from_numpy, torch.Tensor) and from_numpy.device.type == "cpu"
    torch.testing.assert_close(from_numpy, expected)
    torch.testing.assert_close(compute_distance(q.numpy(), g), expected)
    torch.testing.assert_close(compute_distance(q, g.numpy()), expected)


def test_float64_is_computed_in_float64_and_returned_as_float32():
    q = features(10, 4).double() + 1000.0
    g = features(11, 5).double() + 1000.0
    d = compute_distance(q, g)
    assert d.dtype == torch.float32
    torch.testing.assert_close(d.double(), brute_euclidean(q, g), rtol=1e-6, atol=1e-6)


def test_integer_and_half_inputs_are_promoted():
    q = torch.tensor([[0, 0], [3, 4]])
    g = torch.tensor([[0, 0]], dtype=torch.float16)
    torch.testing.assert_close(compute_distance(q, g), torch.tensor([[0.0], [25.0]]))


def test_no_gradient_is_tracked():
    q = features(12, 3).requires_grad_()
    d = compute_distance(q, features(13, 4))
    assert not d.requires_grad


def test_empty_sets_give_empty_matrices():
    assert compute_distance(torch.zeros(0, 4), features(14, 3, dim=4)).shape == (0, 3)
    assert compute_distance(features(15, 3, dim=4), torch.zeros(0, 4)).shape == (3, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_stays_on_the_device():  # pragma: no cover - no GPU in CI
    q, g = features(16, 3).cuda(), features(17, 4).cuda()
    assert compute_distance(q, g).device == q.device


def test_errors():
    q, g = features(18, 3), features(19, 4)
    with pytest.raises(ConfigError, match="metric must be one of euclidean, cosine, got 'manh"):
        compute_distance(q, g, metric="manhattan")
    with pytest.raises(ConfigError, match="query features have dimension 16, gallery"):
        compute_distance(q, features(20, 4, dim=8))
    with pytest.raises(ConfigError, match="2-D"):
        compute_distance(q[0], g)
    with pytest.raises(ConfigError, match="block_size"):
        compute_distance(q, g, block_size=0)
    with pytest.raises(ConfigError, match=r"torch\.Tensor or a numpy array"):
        compute_distance(q.tolist(), g)
    with pytest.raises(ConfigError, match="real"):
        compute_distance(q.numpy().astype(np.complex64), g)


def test_normalize_distance():
    d = compute_distance(features(21, 5), features(22, 6))
    n = normalize_distance(d)
    assert isinstance(n, torch.Tensor)
    assert n.max().item() == pytest.approx(1.0) and n.min().item() >= 0
    torch.testing.assert_close(n, d / d.max())
    # same ranking per query
    assert torch.equal(torch.argsort(n, dim=1, stable=True), torch.argsort(d, dim=1, stable=True))
    a = normalize_distance(np.array([[0.0, 2.0], [4.0, -1e-9]]))
    assert isinstance(a, np.ndarray)
    np.testing.assert_allclose(a, [[0.0, 0.5], [1.0, 0.0]])
    np.testing.assert_array_equal(normalize_distance(np.zeros((2, 2))), np.zeros((2, 2)))
    assert torch.equal(normalize_distance(torch.zeros(2, 3)), torch.zeros(2, 3))
    assert normalize_distance(torch.zeros(0, 3)).shape == (0, 3)
    assert normalize_distance(torch.tensor([[1, 3]])).dtype == torch.float32
