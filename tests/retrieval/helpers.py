"""An attnreid checkpoint of an untrained model, written without training (fast)."""

from __future__ import annotations

from pathlib import Path

import torch

from attnreid.config import load_config
from attnreid.models import build_model


def fake_checkpoint(
    path: Path, root: Path, name: str = "resnet18", options: dict | None = None, **overrides: object
) -> Path:
    """A checkpoint as training writes it: ``model.``-prefixed weights, the model description
    and a config for the tiny synthetic set at 64x32 (``overrides``: more config keys)."""
    options = dict(options or {})
    torch.manual_seed(0)
    model = build_model(name, 6, "none", **options)
    ov = {
        "data.root": str(root),
        "data.height": 64,
        "data.width": 32,
        "data.workers": 0,
        "data.test_batch_size": 16,
        "model.name": name,
        **overrides,
    }
    cfg = load_config("demo", [f"{k}={v}" for k, v in ov.items()])
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "attnreid": {
                    "model": name,
                    "num_classes": 6,
                    "options": options,
                    "feature_dim": model.feature_dim,
                },
                "config": cfg,
            },
            "epoch": 0,
        },
        path,
    )
    return path


def build_index(checkpoint: Path, folder: Path, out: Path) -> Path:
    """``attnreid index build --checkpoint CHECKPOINT --folder FOLDER -o OUT`` (must succeed)."""
    from attnreid.cli.main import main

    argv = ["index", "build", "--checkpoint", checkpoint, "--folder", folder, "-o", out]
    assert main([str(a) for a in argv]) == 0
    return out
