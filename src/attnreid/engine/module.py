"""The Lightning module that trains any registered re-ID model with a composite loss.

A loss that stops being finite ends training with a :class:`~attnreid.errors.TrainingError`
that names the epoch, the step, the batch's identities and the last good checkpoint (the
one to resume from). Under DDP the check is agreed by all ranks, so they stop together.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from attnreid.engine.optim import build_optimizer, build_scheduler
from attnreid.errors import TrainingError
from attnreid.losses import CompositeLoss
from attnreid.models.registry import ReIDModel
from attnreid.utils.seed import get_rng_state, set_rng_state


class ReIDModule(L.LightningModule):
    """Wraps a :class:`ReIDModel`; the config is saved in every checkpoint."""

    def __init__(self, model: ReIDModel, config: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.config = config
        #: (path, 1-based epoch) of the newest checkpoint with finite weights, if any; kept up
        #: to date by :class:`attnreid.engine.callbacks.EpochCheckpoint` and ``train()``.
        self.last_good_checkpoint: tuple[Path, int] | None = None
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
        finite = bool(torch.isfinite(total))
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            self._stop_non_finite(total, batch["pid"], batch_idx)
        bs = images.shape[0]
        # sync_dist: under DDP the epoch's loss is the mean over all ranks (no-op otherwise)
        self.log(
            "loss", total, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs, sync_dist=True
        )
        for name, value in parts.items():
            self.log(
                f"loss/{name}", value, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True
            )
        self.log(
            "lr",
            self.optimizers().param_groups[0]["lr"],
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            batch_size=bs,
        )
        return total

    def _stop_non_finite(self, total: torch.Tensor, pids: torch.Tensor, batch_idx: int) -> None:
        """Raise the one-line error of a NaN / inf loss (on every rank under DDP)."""
        local = (float(total.detach()), sorted({int(p) for p in pids.tolist()}))
        reports = [local]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            reports = [None] * dist.get_world_size()
            dist.all_gather_object(reports, local)
        bad = [(r, rep) for r, rep in enumerate(reports) if not math.isfinite(rep[0])]
        rank, (value, ids) = bad[0] if bad else (0, local)
        where = f" on rank {rank}" if len(reports) > 1 else ""
        shown = ", ".join(map(str, ids[:16])) + (", ..." if len(ids) > 16 else "")
        if self.last_good_checkpoint is not None:
            path, epoch = self.last_good_checkpoint
            last = f"last good checkpoint: {path} (end of epoch {epoch}; continue with --resume)"
        else:
            last = "no checkpoint was written before (nothing to resume from)"
        raise TrainingError(
            f"the loss became {value} at epoch {self.current_epoch + 1}, step "
            f"{self.global_step + 1} (batch {batch_idx + 1} of the epoch){where}; batch "
            f"identities (training labels): {shown}; {last}; try a lower optim.lr or set "
            f"train.grad_clip"
        )

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
        # Lightning builds the resumed epoch's data iterator (which draws the workers' base
        # seed, and the main process's augmentations follow) after this hook and before any
        # epoch hook: the RNG continues exactly where the checkpointed run was
        if "rng_state" in checkpoint:
            set_rng_state(checkpoint["rng_state"])
