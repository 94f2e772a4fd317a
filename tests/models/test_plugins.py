"""Attention plug-ins on OSNet (issue 24): the untrained plug-in network computes exactly the
plain network's features, and training can move every plug-in away from the identity."""

from __future__ import annotations

import pytest
import torch

from attnreid.config import load_config
from attnreid.losses import CompositeLoss
from attnreid.models import build_model
from attnreid.utils.distance import compute_distance

PLUGINS = ("sona2", "ccan", "sa", "duatm")
SIZE = (128, 64)  # an 8x4 final map


def _pair(plugin: str, **options):
    """The plain OSNet x0.25 and the plug-in network with the same weights (random here)."""
    torch.manual_seed(0)
    plain = build_model("osnet_x0_25", 7)
    model = build_model(f"osnet_x0_25_{plugin}_plugin", 7, input_size=list(SIZE), **options)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("plugins.", "duatm.")) for k in missing)
    return plain.eval(), model.eval()


@pytest.mark.parametrize("plugin", PLUGINS)
def test_untrained_plugin_gives_the_plain_features_exactly(plugin):
    plain, model = _pair(plugin, **({"rank_with": "feature"} if plugin == "duatm" else {}))
    x = torch.randn(5, 3, *SIZE)
    with torch.no_grad():
        want, got = plain(x), model(x)
    assert torch.equal(got, want)  # bit for bit: the residual branches start at zero
    # the plain network's ranking of these images is therefore unchanged too
    assert torch.equal(compute_distance(got, got), compute_distance(want, want))


def test_duatm_plugin_ranks_with_its_matching_distance_beside_the_feature():
    plain, model = _pair("duatm")  # rank_with: matching
    assert model.own_distance and not plain.own_distance
    x = torch.randn(4, 3, *SIZE)
    with torch.no_grad():
        seq = model(x)  # (B, S * D): the 8x4 map pooled 2x2 -> S = 8, D = 256
        d = model.compute_distance(seq, seq)
        model.rank_with = "feature"
        feat = model(x)
    assert seq.shape == (4, 8 * 256) and d.shape == (4, 4)
    assert torch.allclose(d.diagonal(), torch.zeros(4), atol=1e-5)  # a sequence matches itself
    assert torch.equal(feat, plain(x))


@pytest.mark.parametrize("plugin", PLUGINS)
def test_training_moves_each_plugin_away_from_the_identity(plugin):
    _, model = _pair(plugin)
    model.train()
    loss = CompositeLoss(load_config(f"osnet_x0_25_{plugin}_plugin_cpu")["loss"])
    x, y = torch.randn(8, 3, *SIZE), torch.arange(4).repeat_interleave(2)
    total, parts = loss(model(x), y)
    total.backward()
    if plugin == "duatm":
        assert {"matching_triplet", "decorrelation"} <= {k.split("/")[0] for k in parts}
    grads = [p.grad for n, p in model.named_parameters() if n.startswith(("plugins.", "duatm."))]
    # the gates / output projections that start at zero get a gradient: they can leave zero
    gate = {
        "sona2": lambda: model.plugins["2"].p.weight,
        "ccan": lambda: model.plugins["1"].gamma,
        "sa": lambda: model.plugins["4"].alpha,
        "duatm": lambda: model.duatm.embed.weight,
    }[plugin]()
    assert gate.grad is not None and gate.grad.abs().sum() > 0
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
