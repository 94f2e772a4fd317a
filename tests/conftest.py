"""Shared fixtures: tiny image trees, and the real data in ../shared (skipped when absent)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


#: A small Market-1501 tree for make_market: two training identities, one query each of
#: two identities, their gallery images, a distractor (0000) and a junk image (-1).
MARKET = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s1_000101_01.jpg",
        "0007_c1s1_000201_02.jpg",
    ],
    "query": ["0001_c1s1_001051_00.jpg", "0003_c2s1_000301_00.jpg"],
    "bounding_box_test": [
        "0001_c2s1_000001_01.jpg",
        "0001_c1s1_000002_01.jpg",
        "0003_c1s1_000003_01.jpg",
        "0000_c1s1_000004_01.jpg",
        "-1_c1s1_000005_01.jpg",
    ],
}

def write_image(
    path: Path, seed: int = 0, size: tuple[int, int] = (32, 64), fmt: str | None = None
) -> Path:
    """A small random RGB image (width, height) at ``path``."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, format=fmt
    )
    return path


@pytest.fixture
def make_market(tmp_path: Path) -> Callable[..., Path]:
    """Build a Market-1501-style tree from {split_folder: [file names]}."""

    def build(files: dict[str, Iterable[str]], root: Path | None = None) -> Path:
        root = root or tmp_path / "market"
        for sub, names in files.items():
            (root / sub).mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(names):
                write_image(root / sub / name, seed=i)
        return root

    return build


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (real data and weights) is not available")
    return SHARED


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic dataset in Market-1501 layout (shared by the session's tests)."""
    from attnreid.data.synth import SynthConfig, generate_synthetic_reid

    root = tmp_path_factory.mktemp("synth") / "tiny"
    cfg = SynthConfig(
        num_train_ids=6, num_test_ids=6, num_cameras=3, num_distractors=4, num_junk=2, seed=7
    )
    generate_synthetic_reid(root, cfg, progress=False)
    return root


def tiny_train_overrides(root: Path, out: Path, **extra: object) -> list[str]:
    """Overrides that make any preset train in seconds on the tiny synthetic set."""
    base = {
        "data.dataset": "synth",
        "data.root": str(root),
        "data.height": 64,
        "data.width": 32,
        "data.num_identities": 3,
        "data.num_instances": 2,
        "data.workers": 0,
        "data.test_batch_size": 32,
        "data.transforms.cutout_size": 8,
        "model.pretrained": "none",
        "train.max_epochs": 2,
        "train.max_steps_per_epoch": 2,
        "train.eval_every": 1,
        "train.checkpoint_every": 1,
        "train.progress": False,
        "output_dir": str(out),
    }
    base.update({k: v for k, v in extra.items()})
    return ["~data.options", *(f"{k}={v}" for k, v in base.items())]  # the preset's go
