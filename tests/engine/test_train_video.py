"""Training an image model on MARS tracklets, with an unreadable frame skipped and counted."""

from __future__ import annotations

import pytest

from attnreid.config import load_config
from attnreid.engine import train as train_module
from attnreid.engine.train import train
from tests.conftest import tiny_train_overrides
from tests.data.trees import MARS_QUERY, MARS_TEST, MARS_TRAIN, build_mars
from tests.engine.oracle import assert_row, capture_scoring, reference_row

pytestmark = pytest.mark.slow


def test_mars_trains_one_step(tmp_path, monkeypatch, capsys):
    root = build_mars(tmp_path / "MARS", MARS_TRAIN, MARS_TEST, MARS_QUERY, size=(16, 32))
    # both frames of identity 7's first tracklet are truncated: every clip of it fails
    bad = root / "bbox_train" / "0007" / "0007C2T0001F001.jpg"
    for frame in (bad, bad.with_name("0007C2T0001F002.jpg")):
        frame.write_bytes(frame.read_bytes()[:50])
    shapes: list[tuple[bool, tuple[int, ...]]] = []
    real_build = train_module.build_model_from_config

    def spy(cfg, num_classes):
        model = real_build(cfg, num_classes)
        model.register_forward_pre_hook(lambda m, a: shapes.append((m.training, a[0].shape)))
        return model

    monkeypatch.setattr(train_module, "build_model_from_config", spy)
    scored = capture_scoring(monkeypatch)
    overrides = tiny_train_overrides(
        root,
        tmp_path / "run",
        **{
            "data.dataset": "mars",
            "model.name": "resnet18",
            "data.seq_len": 2,
            "data.test_frames": "all",
            "data.num_identities": 3,
            "data.num_instances": 2,
            "data.skip_bad_images": True,
            "train.max_epochs": 3,
            "train.max_steps_per_epoch": 1,
            "train.eval_every": 3,
        },
    )
    result = train(load_config(None, overrides))
    assert result["epochs"] == 3 and len(result["evaluations"]) == 1 and len(scored) == 1
    row = result["evaluations"][0]
    assert row["num_valid_queries"] == 2  # tracklet-level: 2 queries
    # one feature per tracklet, scored as the reference scores them
    assert len(scored[0]["query"]) == len(MARS_QUERY)
    assert_row(row, reference_row(scored[0]))
    train_shapes = {s for training, s in shapes if training}
    assert train_shapes == {(12, 3, 64, 32)}  # 3 ids x 2 tracklets x 2 frames, flattened
    assert all(len(s) == 4 and s[0] <= 32 for training, s in shapes if not training)
    # P x K = 3 x 2 draws both tracklets of identity 7 at every step: replaced 3 times
    assert result["skipped_images"] == {str(bad): 3}
    err = capsys.readouterr().err
    assert err.count(f"warning: unreadable training image {bad} replaced") == 1
    assert "[data] 3 time(s) an unreadable training image was replaced" in err


def test_bad_image_without_skipping_names_the_file(tmp_path):
    root = build_mars(tmp_path / "MARS", MARS_TRAIN, MARS_TEST, MARS_QUERY)
    for frame in (root / "bbox_train").rglob("*.jpg"):
        frame.write_bytes(b"")
    overrides = tiny_train_overrides(
        root, tmp_path / "run", **{"data.dataset": "mars", "model.name": "resnet18"}
    )
    from attnreid.errors import DatasetError

    with pytest.raises(DatasetError, match=r"bbox_train/\d{4}/\d{4}C\dT\d{4}F\d{3}\.jpg"):
        train(load_config(None, overrides))


@pytest.mark.parametrize(("test_seq_len", "expected"), [(None, 3), (5, 5)])
def test_every_extraction_uses_the_configs_test_clips(tmp_path, test_seq_len, expected):
    """evaluation, extract, pictures and indexes share FeatureExtractor.loader"""
    from torch import nn

    from attnreid.data import build_dataset
    from attnreid.evaluation.extractor import FeatureExtractor

    root = build_mars(tmp_path / "MARS", MARS_TRAIN, MARS_TEST, MARS_QUERY, size=(16, 32))
    cfg = load_config(
        None,
        [
            "data.seq_len=3",
            "data.test_frames=first",
            f"data.test_seq_len={'null' if test_seq_len is None else test_seq_len}",
            "data.height=32",
            "data.width=16",
            "data.test_batch_size=10",
            "data.workers=0",
        ],
    )
    items = build_dataset("mars", root).query
    loader = FeatureExtractor(nn.Identity(), cfg, device="cpu").loader(items)
    batch = next(iter(loader))
    assert batch["image"].shape[1:] == (expected, 3, 32, 16)
    assert loader.batch_size == max(1, 10 // expected) and loader.dataset.sampler == "first"
