"""train.freeze_backbone_epochs: the backbone does not change while frozen, and does after."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from attnreid.config import load_config
from attnreid.engine.callbacks import FreezeBackbone
from attnreid.engine.module import ReIDModule
from attnreid.errors import ConfigError
from attnreid.models import build_model

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec")


class _Batches(Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randn(3, 64, 32, generator=g), "pid": i % 3}


def _fit(model, callbacks, epochs=2):
    cfg = load_config(
        None,
        [
            "optim.name=sgd",
            "optim.lr=0.1",
            "sched.warmup_mode=none",
            "loss=[{type: matching_triplet, margin: 0.2}, {type: decorrelation, weight: 0.1}]",
        ],
    )
    module = ReIDModule(model, cfg)
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=2,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    trainer.fit(module, DataLoader(_Batches(), batch_size=6, shuffle=False))


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_backbone_is_frozen_then_trained():
    torch.manual_seed(0)
    model = build_model("duatm", 3, "none", backbone="mobilenet_v2", dim=16)
    snaps = [(_state(model.backbone), _state(model.embed))]
    modes = []

    class Snap(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            modes.append((trainer.current_epoch, pl_module.model.backbone.training))

        def on_train_epoch_end(self, trainer, pl_module):
            snaps.append((_state(pl_module.model.backbone), _state(pl_module.model.embed)))

    _fit(model, [FreezeBackbone(1), Snap()])
    (b0, e0), (b1, e1), (b2, _) = snaps
    assert _same(b0, b1)  # frozen epoch: weights and BatchNorm statistics unchanged
    assert not _same(e0, e1)  # ... while the head trains
    assert not _same(b1, b2)  # unfrozen: the backbone trains
    assert modes == [(0, False), (0, False), (1, True), (1, True)]
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_freezing_needs_a_backbone():
    class NoBackbone(torch.nn.Module):
        pass

    module = type("M", (), {"model": NoBackbone(), "training": True})()
    trainer = type("T", (), {"current_epoch": 0})()
    with pytest.raises(ConfigError, match="backbone"):
        FreezeBackbone(1).on_train_batch_start(trainer, module, None, 0)
