"""The Lightning module that trains any registered re-ID model with a composite loss."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from attnreid.engine.optim import build_optimizer, build_scheduler
from attnreid.losses import CompositeLoss
from attnreid.models.registry import ReIDModel
from attnreid.utils.seed import get_rng_state, set_rng_state


class ReIDModule(L.LightningModule):
    """Wraps a :class:`ReIDModel`; the config is saved in every checkpoint."""

    def __init__(self, model: ReIDModel, config: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.loss = CompositeLoss(config["loss"])
        self.save_hyperparameters(
            {
                "config": {k: v for k, v in config.items() if not k.startswith("_")},
                "attnreid": {
                    "model": model.model_name,
                    "num_classes": model.num_classes,
                    "options": model.model_options,
                    "feature_dim": model.feature_dim,
                },
            }
        )

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch["image"], batch["pid"]
        if images.dim() == 5 and not getattr(self.model, "handles_video", False):
            # video clips (B, T, 3, H, W) train an image model as torchreid does: every frame
            # is a sample (B*T, 3, H, W) with its tracklet's identity
            targets = targets.repeat_interleave(images.shape[1])
            images = images.flatten(0, 1)
        outputs = self.model(images)
        total, parts = self.loss(outputs, targets)
        if not torch.isfinite(total):
            pids = sorted(set(batch["pid"].tolist()))
            raise FloatingPointError(
                f"loss became {total.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step} (batch identities {pids[:16]}{' ...' * (len(pids) > 16)})"
            )
        bs = images.shape[0]
        self.log("loss", total, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        for name, value in parts.items():
            self.log(f"loss/{name}", value, on_step=False, on_epoch=True, batch_size=bs)
        self.log(
            "lr",
            self.optimizers().param_groups[0]["lr"],
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            batch_size=bs,
        )
        return total

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.model, self.config["optim"])
        scheduler = build_scheduler(optimizer, self.config["sched"])
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_state"] = get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_state" in checkpoint:
            set_rng_state(checkpoint["rng_state"])
