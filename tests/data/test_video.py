from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attnreid.config import load_config
from attnreid.data import (
    build_dataset,
    build_train_loader,
    build_transforms,
    read_image,
)
from attnreid.data.base import ReIDItem
from attnreid.data.loaders import ImageDataset
from attnreid.data.video import VideoDataset, evenly_spaced, random_clip
from attnreid.errors import ConfigError, DatasetError
from attnreid.evaluation.extractor import FeatureExtractor
from tests.conftest import write_image
from tests.data.trees import MARS_QUERY, MARS_TEST, MARS_TRAIN, build_mars

TEST_TF = build_transforms(16, 8, train=False)


class MeanColour(nn.Module):
    """Feature = the mean of each channel: (B, 3, H, W) -> (B, 3). Flip-invariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ClipMean(nn.Module):
    handles_video = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return x.mean(dim=(1, 3, 4))


@pytest.fixture(scope="module")
def mars(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("video") / "MARS"
    return build_dataset("mars", build_mars(root, MARS_TRAIN, MARS_TEST, MARS_QUERY))


def _frame_feature(path: str) -> torch.Tensor:
    return TEST_TF(read_image(path)).mean(dim=(1, 2))


def _extractor(
    model: nn.Module, *, batch_size: int, seq_len: int, test_frames: str, flip: bool
) -> FeatureExtractor:
    """The test-time extractor of ``model`` with these clip settings, on the CPU, through
    ``TEST_TF``."""
    cfg = load_config(
        None,
        [
            "data.height=16",
            "data.width=8",
            f"data.test_batch_size={batch_size}",
            "data.workers=0",
            f"data.test_seq_len={seq_len}",
            f"data.test_frames={test_frames}",
            f"eval.flip={str(flip).lower()}",
            "device=cpu",
        ],
    )
    extractor = FeatureExtractor(model, cfg)
    extractor.transform = TEST_TF
    return extractor


def test_frame_samplers():
    torch.manual_seed(0)
    for _ in range(20):
        clip = random_clip(10, 4)
        assert clip == list(range(clip[0], clip[0] + 4)) and 0 <= clip[0] <= 6
    starts = {random_clip(10, 4)[0] for _ in range(200)}
    assert starts == set(range(7))  # every start is drawn
    assert random_clip(3, 7) == [0, 1, 2, 0, 1, 2, 0]
    assert random_clip(3, 5, short="pad") == [0, 1, 2, 2, 2]
    assert evenly_spaced(9, 3) == [0, 4, 8] and evenly_spaced(2, 4) == [0, 0, 1, 1]
    assert evenly_spaced(100, 8)[-1] == 99 and len(set(evenly_spaced(100, 8))) == 8


def test_video_dataset_samples(mars):
    long = next(it for it in mars.gallery if len(it.frames) == 5)  # pid 2 camera 3
    ds = VideoDataset([long], TEST_TF, seq_len=2, sampler="all")
    assert len(ds) == 3  # chunks of 2, 2 and 1 (+ padding)
    last = ds[2]
    assert last["image"].shape == (2, 3, 16, 8) and last["mask"].tolist() == [True, False]
    assert torch.equal(last["image"][0], last["image"][1])  # padded with the last frame
    evenly = VideoDataset([long], TEST_TF, seq_len=3, sampler="evenly")[0]
    expected = torch.stack([TEST_TF(read_image(long.frames[j])) for j in (0, 2, 4)])
    assert torch.allclose(evenly["image"], expected) and "mask" not in evenly
    first = VideoDataset([long], TEST_TF, seq_len=7, sampler="first")[0]  # 5 frames, looped
    expected = torch.stack([TEST_TF(read_image(long.frames[j])) for j in (0, 1, 2, 3, 4, 0, 1)])
    assert torch.allclose(first["image"], expected) and "mask" not in first
    with pytest.raises(ConfigError, match="must be one of evenly, first, all"):
        VideoDataset([long], TEST_TF, sampler="middle")


def test_same_augmentation_for_all_frames(tmp_path):
    frame = str(write_image(tmp_path / "f.jpg", size=(20, 40)))
    item = ReIDItem(frame, 1, 0, 1, (frame,) * 4)
    tf = build_transforms(32, 16, train=True, pad=4, random_erasing=0.5, color_jitter=0.3)
    torch.manual_seed(1)
    same = [VideoDataset([item], tf, seq_len=4)[0]["image"] for _ in range(6)]
    assert all(torch.equal(c[0], c[k]) for c in same for k in range(4))
    assert not all(torch.equal(same[0], c) for c in same[1:])  # but differs between samples
    indep = [
        VideoDataset([item], tf, seq_len=4, same_augmentation=False)[0]["image"] for _ in range(6)
    ]
    assert not all(torch.equal(c[0], c[k]) for c in indep for k in range(4))


@pytest.mark.parametrize("test_frames", ["all", "evenly", "first"])
def test_tracklet_features_average_frames(mars, test_frames):
    extractor = _extractor(
        MeanColour(), batch_size=6, seq_len=3, test_frames=test_frames, flip=True
    )
    loader = extractor.loader(mars.gallery)
    assert loader.batch_size == 2  # 6 frames = 2 clips of 3
    assert loader.dataset.sampler == test_frames and loader.dataset.transform is TEST_TF
    fs = extractor.extract(mars.gallery)
    assert fs.features.shape == (len(mars.gallery), 3)
    assert fs.paths == [it.path for it in mars.gallery]
    assert fs.pids.tolist() == [it.pid for it in mars.gallery]
    for row, it in enumerate(mars.gallery):
        n = len(it.frames)
        idx = {"all": range(n), "evenly": evenly_spaced(n, 3), "first": [j % n for j in range(3)]}[
            test_frames
        ]
        expected = torch.stack([_frame_feature(it.frames[j]) for j in idx]).mean(0)
        assert torch.allclose(fs.features[row], expected, atol=1e-5)


def test_model_that_handles_video_gets_clips(mars):
    model = ClipMean()
    extractor = _extractor(model, batch_size=8, seq_len=4, test_frames="evenly", flip=False)
    fs = extractor.extract(mars.query)
    assert model.seen == [(2, 4, 3, 16, 8)]
    frames = mars.query[1].frames
    expected = torch.stack([_frame_feature(frames[j]) for j in evenly_spaced(len(frames), 4)])
    assert torch.allclose(fs.features[1], expected.mean(0), atol=1e-5)


def test_pk_batches_of_tracklets(mars):
    tf = build_transforms(16, 8, train=True)
    loader = build_train_loader(
        mars.train, tf, num_identities=2, num_instances=2, seq_len=3, workers=0, seed=3
    )
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 3, 16, 8)
    pids = batch["pid"].tolist()
    assert len(set(pids)) == 2 and all(pids.count(p) == 2 for p in pids)


def test_unreadable_images_replaced_by_same_identity(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.jpg", seed=i)) for i in range(4)]
    Path(paths[1]).write_bytes(Path(paths[1]).read_bytes()[:100])  # truncated
    items = [ReIDItem(paths[i], pid, 0) for i, pid in enumerate((0, 0, 1, 1))]
    with pytest.raises(DatasetError, match=r"truncated image .*1\.jpg"):
        ImageDataset(items, TEST_TF)[1]
    ds = ImageDataset(items, TEST_TF, skip_bad=True)
    sample = ds[1]
    assert sample["index"] == 0 and sample["pid"] == 0 and sample["replaced"] == paths[1]
    assert ds[2]["replaced"] == ""
    Path(paths[0]).write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="no other image of identity 0 is readable"):
        ds[1]


def test_unreadable_frame_replaces_the_tracklet(mars, tmp_path):
    frames = [str(write_image(tmp_path / f"f{i}.jpg", seed=i)) for i in range(4)]
    Path(frames[1]).write_text("not a jpeg")
    items = [
        ReIDItem(frames[0], 5, 0, 1, tuple(frames[:2])),
        ReIDItem(frames[2], 5, 1, 2, tuple(frames[2:])),
    ]
    ds = VideoDataset(items, TEST_TF, seq_len=2, sampler="evenly", skip_bad=True)
    sample = ds[0]
    assert sample["index"] == 1 and sample["replaced"] == frames[1]
    assert np.isclose(float(sample["image"].sum()), float(ds[1]["image"].sum()))
