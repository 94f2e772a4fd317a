"""The DuATM networks: sequences, training outputs, test features, distances, video."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnreid.config import load_config
from attnreid.engine.train import train
from attnreid.errors import ConfigError, ModelError
from attnreid.losses import CompositeLoss
from attnreid.models import build_model
from attnreid.models.attention.dual_attention import literal_sequence_distance
from tests.conftest import tiny_train_overrides
from tests.engine.oracle import assert_row, capture_scoring, reference_row

LOSS = [
    {"type": "matching_triplet", "margin": 0.2},
    {"type": "decorrelation", "weight": 0.1},
    {"type": "cross_entropy", "weight": 0.5, "epsilon": 0.0},
]
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def small(name: str = "duatm", **options: object):
    torch.manual_seed(0)
    return build_model(name, 3, "none", **{"backbone": "mobilenet_v2", "dim": 16, **options})


@pytest.mark.parametrize("matching", ["full", "intra", "inter", "avgpool"])
def test_training_outputs_and_one_backward(matching):
    model = small(matching=matching, last_stride=1)
    out = model(torch.randn(6, 3, 64, 32))["duatm"]
    assert out["dist"].shape == (6, 6) and out["logits"].shape == (6, 3)
    assert out["seq"].shape == (6, 8, 16)  # 4 x 2 map at stride 16
    assert torch.allclose(out["seq"].norm(dim=-1), torch.ones(6, 8), atol=1e-5)
    total, _ = CompositeLoss(LOSS)(model(torch.randn(6, 3, 64, 32)), LABELS)
    total.backward()
    assert model.embed.weight.grad is not None
    assert next(model.backbone.parameters()).grad is not None


def test_densenet_block4_sequence_at_the_paper_size():
    model = build_model("duatm", 5, "none")  # DenseNet-121, D = 256
    model.eval()
    with torch.no_grad():
        seq = model(torch.randn(1, 3, 256, 128))
    assert seq.shape == (1, 32, 256)  # the 8 x 4 Block-4 map
    assert model.feature_dim == 256 and model.backbone.name == "densenet121"


def test_test_features_and_distance_follow_the_matching():
    model = small().eval()
    with torch.no_grad():
        q, g = model(torch.randn(3, 3, 64, 32)), model(torch.randn(4, 3, 64, 32))
    d = model.compute_distance(q, g)
    assert d.shape == (3, 4)
    ref = literal_sequence_distance(q[1], g[2], model.matcher)
    assert d[1, 2].item() == pytest.approx(ref, abs=1e-5)
    assert torch.allclose(model.compute_distance(q.flatten(1), g.flatten(1)), d)
    model.eval_mode, model.rerank_k = "two_stage", 2
    two = model.compute_distance(q, g)
    top = torch.cdist(q.mean(1), g.mean(1)).argsort(1)[:, :2]
    assert torch.allclose(two.gather(1, top), d.gather(1, top))
    with pytest.raises(ConfigError, match="sequences"):
        model.compute_distance(torch.zeros(2, 7), g)
    pooled = small(matching="avgpool").eval()
    with torch.no_grad():
        assert pooled(torch.randn(2, 3, 64, 32)).shape == (2, 16)
    assert pooled.compute_distance(torch.zeros(2, 16), torch.zeros(3, 16)) is None


def test_query_blocks_of_the_evaluation_give_the_whole_matrix():
    from attnreid.evaluation.scoring import Scorer

    model = small().eval()
    with torch.no_grad():
        q, g = model(torch.randn(5, 3, 64, 32)), model(torch.randn(4, 3, 64, 32))
    blocks = list(Scorer(model, block_elems=8).blocks(q, g))  # 2 queries each
    assert [start for start, _ in blocks] == [0, 2, 4]
    whole = model.compute_distance(q, g).numpy()
    assert np.array_equal(np.concatenate([b for _, b in blocks]), whole)


def test_attention_maps():
    model = small(last_stride=1)
    x = torch.randn(2, 3, 64, 32)
    maps = model.attention_maps(x)
    assert set(maps) == {"intra"} and maps["intra"].shape == (2, 4, 2)
    assert torch.allclose(maps["intra"].sum(dim=(1, 2)), torch.ones(2))  # mean of rows
    maps = model.attention_maps(x, query_point=(0.9, 0.1), other=torch.randn(2, 3, 64, 32))
    assert set(maps) == {"intra", "inter"}
    assert torch.allclose(maps["inter"].sum(dim=(1, 2)), torch.ones(2))
    assert model.training  # restored
    with pytest.raises(ModelError, match="avgpool"):
        small(matching="avgpool").attention_maps(x)
    with pytest.raises(ModelError, match="other="):
        small(matching="inter").attention_maps(x)


def test_option_errors():
    with pytest.raises(ModelError, match="matching"):
        small(matching="both")
    with pytest.raises(ModelError, match="eval_mode"):
        small(eval_mode="fast")
    with pytest.raises(ModelError, match="drop_prob"):
        small(drop_prob=1.0)
    with pytest.raises(ModelError, match="rnn"):
        small("duatm_video", rnn="transformer")
    with pytest.raises(ModelError, match="even"):
        small("duatm_video", dim=15)
    with pytest.raises(ModelError, match="rnn_merge"):
        small("duatm_video", rnn_merge="max")


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_video_directions_are_combined_as_configured(merge):
    model = small("duatm_video", rnn_merge=merge, dim=15 if merge == "sum" else 16).eval()
    d = model.dim
    assert model.rnn.bidirectional and model.rnn.hidden_size == (d // 2 if merge == "concat" else d)
    # an untrained backbone's frame vectors are ~1e-9: feed the recurrent layer random ones
    vectors = torch.randn(2, 5, model.backbone.out_channels)
    model.frame_vectors = lambda x: x  # (B, T, C) in, as the backbone's pooled output
    with torch.no_grad():
        hidden, _ = model.rnn(vectors)  # (B, T, 2 H): [forward, backward]
        both = hidden if merge == "concat" else hidden[..., :d] + hidden[..., d:]
        seq = model.sequence(vectors)
        assert seq.shape == (2, 5, d)
        assert torch.allclose(seq, torch.nn.functional.normalize(both, dim=-1), atol=1e-6)
        # bidirectional: the first hidden state already depends on the last frame
        later = vectors.clone()
        later[:, -1] += 1.0
        assert (model.sequence(later)[:, 0] - seq[:, 0]).abs().max() > 1e-4


# Table 1 / Table 2 rows: (matching, lambda1 or None, lambda2 or None, p)
PAPER_ROWS = {
    "duatm": ("full", 0.1, 0.5, 0.2),
    "duatm_avgpool": ("avgpool", None, None, None),
    "duatm_intra": ("intra", None, None, None),
    "duatm_inter": ("inter", None, None, None),
    "duatm_l0": ("full", None, None, None),
    "duatm_l0_l1": ("full", 0.1, None, None),
    "duatm_l0_l2": ("full", None, 0.5, 0.2),
    "duatm_tuned": ("full", 0.3, 0.9, 0.4),
    "duatm_tuned_duke": ("full", 0.1, 0.5, 0.6),
    "duatm_video": ("full", 0.1, 0.5, 0.2),
    "duatm_video_avgpool": ("avgpool", None, None, None),
    "duatm_video_l0": ("full", None, None, None),
    "duatm_video_l0_l1": ("full", 0.1, None, None),
    "duatm_video_l0_l2": ("full", None, 0.5, 0.2),
    "duatm_video_tuned": ("full", 0.5, 0.5, 0.4),
}


@pytest.mark.parametrize("preset", sorted(PAPER_ROWS))
@pytest.mark.parametrize("cpu", [False, True])
def test_presets_match_their_paper_rows(preset, cpu):
    cfg = load_config(preset + "_cpu" if cpu else preset)
    matching, lam1, lam2, p = PAPER_ROWS[preset]
    opts = cfg["model"]["options"]
    video = preset.startswith("duatm_video")
    assert cfg["model"]["name"] == ("duatm_video" if video else "duatm")
    assert opts["matching"] == matching and opts["dim"] == 256
    losses = {entry["type"]: entry for entry in cfg["loss"]}
    assert losses["matching_triplet"]["margin"] == 0.2
    assert losses["matching_triplet"].get("weight", 1.0) == 1.0
    assert losses.get("decorrelation", {}).get("weight") == lam1
    assert losses.get("cross_entropy", {}).get("weight") == lam2
    assert set(losses) <= {"matching_triplet", "decorrelation", "cross_entropy"}
    if lam2 is not None:
        assert opts["drop_prob"] == p and losses["cross_entropy"]["epsilon"] == 0.0
    assert cfg["eval"]["flip"] is False  # no position-wise averaging of mirrored sequences
    d, t = cfg["data"], cfg["train"]
    assert (d["num_identities"], d["num_instances"]) == ((7, 3) if video else (10, 4))
    if not cpu:  # the paper's recipe
        assert opts["backbone"] == "densenet121" and cfg["model"]["pretrained"] == "imagenet"
        assert (d["height"], d["width"]) == ((128, 64) if video else (256, 128))
        assert cfg["optim"]["name"] == "sgd" and cfg["optim"]["lr"] == 0.01
        assert t["max_epochs"] == 300 and t["freeze_backbone_epochs"] == 100
        assert cfg["sched"]["milestones"] == [250] and cfg["sched"]["gamma"] == 0.1
        assert cfg["sched"]["warmup_epochs"] == 0
        if video:  # 16-frame training clips; one 64-frame test clip, looped when shorter
            assert d["seq_len"] == 16 and d["transforms"]["flip"] == 0.0
            assert d["test_frames"] == "first" and d["test_seq_len"] == 64
        else:
            assert opts["last_stride"] == 2 and d["transforms"]["flip"] == 0.5


def test_video_model_consumes_clips():
    model = small("duatm_video")
    assert model.handles_video
    clips = torch.randn(6, 4, 3, 64, 32)  # (B, T, 3, H, W)
    out = model(clips)["duatm"]
    assert out["seq"].shape == (6, 4, 16) and out["dist"].shape == (6, 6)
    CompositeLoss(LOSS)({"duatm": out}, LABELS)[0].backward()
    assert model.rnn.weight_ih_l0.grad is not None
    model.eval()
    model.frame_chunk = 5  # frames through the backbone in chunks without gradients
    with torch.no_grad():
        feats = model(clips)
        assert feats.shape == (6, 4 * 16)  # the sequence, flattened for the clip tooling
        assert torch.allclose(feats.view(6, 4, 16), model.sequence(clips), atol=1e-5)
        assert model(clips[:, 0]).shape == (6, 16)  # still images: one-frame clips
    assert model.compute_distance(feats[:2], feats).shape == (2, 6)
    assert model.attention_maps(clips[:2])["intra"].shape == (2, 1, 4)


@pytest.mark.slow
def test_video_variant_trains_one_step_on_a_mars_tree(tmp_path, monkeypatch):
    from attnreid.engine import train as train_module
    from tests.data.trees import MARS_QUERY, MARS_TEST, MARS_TRAIN, build_mars

    shapes: list[tuple[bool, tuple[int, ...]]] = []
    real_build = train_module.build_model_from_config

    def spy(cfg, num_classes):
        model = real_build(cfg, num_classes)
        model.register_forward_pre_hook(lambda m, a: shapes.append((m.training, a[0].shape)))
        return model

    monkeypatch.setattr(train_module, "build_model_from_config", spy)
    scored = capture_scoring(monkeypatch)

    root = build_mars(tmp_path / "MARS", MARS_TRAIN, MARS_TEST, MARS_QUERY, size=(16, 32))
    overrides = tiny_train_overrides(
        root,
        tmp_path / "run",
        **{
            "data.dataset": "mars",
            "model.name": "duatm_video",
            "model.options": "{backbone: mobilenet_v2, dim: 16}",
            "data.seq_len": 3,
            "data.test_frames": "first",
            "data.test_seq_len": 5,
            "data.num_identities": 3,
            "data.num_instances": 2,
            "train.max_epochs": 1,
            "train.max_steps_per_epoch": 1,
            "train.freeze_backbone_epochs": 1,
            "eval.flip": False,
            "loss": "[{type: matching_triplet, margin: 0.2}, {type: decorrelation, weight: 0.1},"
            " {type: cross_entropy, weight: 0.5, epsilon: 0.0}]",
            "optim.name": "sgd",
            "optim.lr": 0.01,
        },
    )
    result = train(load_config(None, overrides))
    assert result["epochs"] == 1 and len(result["evaluations"]) == 1 and len(scored) == 1
    evaluation = result["evaluations"][0]
    assert evaluation["num_valid_queries"] == 2
    # scored with DuATM's own sequence distance, by the reference metrics
    call = scored[0]
    assert call["model"].model_name == "duatm_video"
    assert_row(evaluation, reference_row(call))
    # the clips themselves reach the model: 3 ids x 2 tracklets x 3 frames, in training and test
    assert {s for training, s in shapes if training} == {(6, 3, 3, 64, 32)}
    # one test clip of data.test_seq_len frames per tracklet
    assert all(len(s) == 5 and s[1] == 5 for training, s in shapes if not training)
