"""Training callbacks: periodic evaluation, checkpoints, sampler state, a plain-text epoch log."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from attnreid.engine.safetensors_io import save_beside_checkpoint
from attnreid.errors import ConfigError, TrainingError
from attnreid.evaluation.metrics import RankResult
from attnreid.utils.io import atomic_write_text


class EvaluationCallback(L.Callback):
    """Every ``every`` epochs (and after the last), score the model on query vs gallery, log
    ``val/rank1``, ``val/mAP``... and keep the history in ``metrics.json`` (atomic writes).

    Under DDP ``evaluate`` runs on every rank (each extracts its share of the features, see
    :mod:`attnreid.evaluation.distributed`) and returns the result on rank 0, None elsewhere.
    """

    def __init__(
        self,
        evaluate: Callable[[Any], RankResult | None],
        every: int,
        max_epochs: int,
        out_file: Path,
        echo: bool = True,
    ) -> None:
        self.evaluate, self.every, self.max_epochs = evaluate, every, max_epochs
        self.out_file, self.echo = out_file, echo
        self.history: list[dict[str, Any]] = []
        if out_file.is_file():
            self.history = json.loads(out_file.read_text()).get("evaluations", [])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after a resume, forget evaluations of epochs that will be trained again
        self.history = [h for h in self.history if h["epoch"] <= trainer.current_epoch]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if not (self.every > 0 and epoch % self.every == 0) and epoch != self.max_epochs:
            return
        t0 = time.perf_counter()
        result = self.evaluate(pl_module.model)  # collective under DDP
        if trainer.global_rank != 0 or result is None:
            return
        row = {"epoch": epoch, **result.as_dict(), "seconds": round(time.perf_counter() - t0, 2)}
        self.history = [h for h in self.history if h["epoch"] != epoch] + [row]
        for key in ("rank1", "rank5", "mAP", "mINP"):
            pl_module.log(f"val/{key}", float(row[key]), rank_zero_only=True)
        atomic_write_text(self.out_file, json.dumps({"evaluations": self.history}, indent=2))
        if self.echo:
            print(
                f"[eval] epoch {epoch}: rank-1 {100 * row['rank1']:.1f}  mAP {100 * row['mAP']:.1f}"
                f"  mINP {100 * row['mINP']:.1f}  ({row['seconds']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )


class EpochLog(L.Callback):
    """One line per epoch (used instead of a live progress bar when output is not a TTY)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0 = time.perf_counter()
        # the learning rate of this epoch (the scheduler steps before on_train_epoch_end)
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        m = trainer.callback_metrics
        loss = m.get("loss_epoch", m.get("loss"))
        print(
            f"[train] epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            f"  loss {float(loss):.4f}  lr {self.lr:.2e}  {time.perf_counter() - self.t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )


class TransformSchedule(L.Callback):
    """Switch the training transform at given epochs (e.g. random erasing from epoch 50).

    ``stages`` is a list of ``(first_epoch, transform)``. The transform of the starting epoch is
    given to the loader when it is built (Lightning builds the first iterator before any epoch
    hook); later switches happen at the start of the epoch, before that epoch's iterator (and
    its worker processes) are created.
    """

    def __init__(self, stages: list[tuple[int, Any]]) -> None:
        self.stages = sorted(stages, key=lambda s: s[0])

    def transform_at(self, epoch: int) -> Any:
        started = [tf for first, tf in self.stages if epoch >= first]
        return started[-1] if started else self.stages[0][1]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is not None and hasattr(dataset, "transform"):
            dataset.transform = self.transform_at(trainer.current_epoch)


class EpochCheckpoint(L.Callback):
    """``epochNNN.ckpt`` (1-based) every ``every`` epochs and ``last.ckpt`` after every epoch,
    written through the trainer's (atomic) checkpoint IO. Placed after the evaluation callback
    so a checkpoint always includes that epoch's evaluation in ``metrics.json``.

    Weights that are no longer finite are never written: training stops with an error that
    names the last good checkpoint, which stays as it was."""

    def __init__(self, dirpath: Path, every: int) -> None:
        self.dirpath, self.every = Path(dirpath), every

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        bad = next(
            (n for n, p in pl_module.named_parameters() if not torch.isfinite(p).all()), None
        )
        if bad is not None:
            good = getattr(pl_module, "last_good_checkpoint", None)
            last = f"{good[0]} (end of epoch {good[1]})" if good else "none was written"
            raise TrainingError(
                f"the weights stopped being finite in epoch {epoch} (first: {bad}), so no "
                f"checkpoint was written; last good checkpoint: {last}; try a lower optim.lr "
                f"or set train.grad_clip"
            )
        numbered = [f"epoch{epoch:03d}.ckpt"] if self.every > 0 and epoch % self.every == 0 else []
        for name in [*numbered, "last.ckpt"]:
            trainer.save_checkpoint(self.dirpath / name)
            save_beside_checkpoint(trainer, pl_module, self.dirpath / name)
        if hasattr(pl_module, "last_good_checkpoint"):
            pl_module.last_good_checkpoint = (self.dirpath / "last.ckpt", epoch)


class SamplerState(L.Callback):
    """Moves the P x K batch sampler to each epoch (Lightning calls ``set_epoch`` only on a
    loader's ``sampler`` and on ``batch_sampler.sampler``, not on a batch sampler itself) and
    stores its state (seed, epoch, P, K, world size) in every checkpoint; on resume, warns when
    the run is set up differently (its batches then differ from the interrupted run's)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sampler.set_epoch(trainer.current_epoch)  # before the epoch's iterator is built

    def state_dict(self) -> dict[str, Any]:
        return dict(self.sampler.state())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        now = self.sampler.state()
        changed = [
            f"{k} {state_dict[k]} -> {now[k]}"
            for k in ("seed", "num_identities", "num_instances", "num_replicas", "num_pids")
            if k in state_dict and state_dict[k] != now[k]
        ]
        if changed:
            print(
                f"warning: resuming with another sampler set-up ({', '.join(changed)}): the "
                "batches differ from the interrupted run's",
                file=sys.stderr,
                flush=True,
            )


class FreezeBackbone(L.Callback):
    """Freeze ``model.backbone`` for the first ``epochs`` epochs (DuATM: DenseNet frozen for
    100 of 300 epochs): its parameters get no gradients (so the optimiser, which skips
    parameters without a gradient, leaves them and their weight decay alone) and it runs in
    eval mode (BatchNorm statistics fixed). Set before every training batch, so a resumed run
    freezes or not by its epoch."""

    def __init__(self, epochs: int) -> None:
        self.epochs = int(epochs)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        backbone = getattr(getattr(pl_module, "model", None), "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise ConfigError("train.freeze_backbone_epochs needs a model with a 'backbone' module")
        frozen = trainer.current_epoch < self.epochs
        for p in backbone.parameters():
            p.requires_grad_(not frozen)
        backbone.train(pl_module.training and not frozen)
