"""``train(config)``: build the dataset, model, loss and loaders from a config and fit.

Training runs on Lightning: CUDA with mixed precision when present (``device: auto``), the
CPU otherwise; checkpoints every ``train.checkpoint_every`` epochs plus ``last.ckpt`` after
every epoch, written atomically; ``resume`` continues from ``last.ckpt`` (or a given file)
with the optimiser, schedule, epoch and RNG state; evaluation every ``train.eval_every``
epochs and after the last; CSV (and TensorBoard, if installed) logs under ``output_dir``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from attnreid.config import dump_config
from attnreid.data import build_dataset, build_test_loader, build_train_loader, build_transforms
from attnreid.data.base import ReIDDataset
from attnreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from attnreid.engine.callbacks import EpochCheckpoint, EpochLog, EvaluationCallback
from attnreid.engine.checkpoint import AtomicCheckpointIO
from attnreid.engine.module import ReIDModule
from attnreid.errors import CheckpointError, ConfigError
from attnreid.evaluation.evaluate import score_features
from attnreid.evaluation.features import extract_features
from attnreid.evaluation.metrics import RankResult
from attnreid.models import build_model
from attnreid.models.registry import ReIDModel
from attnreid.utils.device import resolve_device
from attnreid.utils.io import atomic_write_text


def input_stats(model: ReIDModel, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """The normalisation the model's weights expect, or ImageNet's."""
    if cfg["data"]["normalization"] == "backbone":
        return model.input_mean, model.input_std
    if cfg["data"]["normalization"] == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    raise ConfigError("data.normalization must be 'backbone' or 'imagenet'")


def load_dataset(cfg: dict[str, Any]) -> ReIDDataset:
    d = cfg["data"]
    return build_dataset(d["dataset"], d["root"], **d["options"])


def make_evaluator(
    dataset: ReIDDataset, cfg: dict[str, Any], mean: Any, std: Any, device: torch.device
) -> Any:
    """A function model -> RankResult on the dataset's query / gallery."""
    d, e = cfg["data"], cfg["eval"]
    tf = build_transforms(d["height"], d["width"], train=False, mean=mean, std=std)
    loaders = {
        s: build_test_loader(
            dataset.split(s), tf, batch_size=d["test_batch_size"], workers=d["workers"]
        )
        for s in ("query", "gallery")
    }
    mode = dataset.eval_mode if e["mode"] == "auto" else e["mode"]

    def run(model: ReIDModel) -> RankResult:
        model = model.to(device)
        q = extract_features(model, loaders["query"], device=device, flip=e["flip"])
        g = extract_features(model, loaders["gallery"], device=device, flip=e["flip"])
        return score_features(
            q,
            g,
            metric=e["metric"],
            normalize=e["normalize"],
            mode=mode,
            max_rank=e["max_rank"],
            model=model,
        )

    return run


def _precision(cfg: dict[str, Any], device: torch.device) -> str:
    p = cfg["train"]["precision"]
    if p == "auto":
        return "16-mixed" if device.type == "cuda" else "32-true"
    return str(p)


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*`isinstance.*treespec.*")


def train(cfg: dict[str, Any], resume: str | bool | None = None) -> dict[str, Any]:
    """Train per ``cfg`` (see :func:`attnreid.config.load_config`). ``resume``: ``True`` for
    ``output_dir/checkpoints/last.ckpt``, or a checkpoint path. Returns the evaluation history
    and paths."""
    _quiet_lightning()
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    device = resolve_device(cfg["device"])
    out = Path(cfg["output_dir"])
    ckpt_dir = out / "checkpoints"
    ckpt_path = None
    if resume:
        ckpt_path = ckpt_dir / "last.ckpt" if resume is True else Path(resume)
        if not ckpt_path.is_file():
            raise CheckpointError(f"cannot resume: checkpoint {ckpt_path} does not exist")
    dataset = load_dataset(cfg)
    m = cfg["model"]
    model = build_model(m["name"], dataset.num_train_pids, m["pretrained"], **m["options"])
    mean, std = input_stats(model, cfg)
    d, t = cfg["data"], cfg["train"]
    train_loader = build_train_loader(
        dataset.train,
        build_transforms(
            d["height"], d["width"], train=True, mean=mean, std=std, **d["transforms"]
        ),
        num_identities=d["num_identities"],
        num_instances=d["num_instances"],
        seed=cfg["seed"],
        workers=d["workers"],
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    module = ReIDModule(model, cfg)
    evaluator = EvaluationCallback(
        make_evaluator(dataset, cfg, mean, std, device),
        t["eval_every"],
        t["max_epochs"],
        out / "metrics.json",
    )
    interactive = t["progress"] and sys.stderr.isatty()
    callbacks: list[L.Callback] = [
        evaluator,
        EpochCheckpoint(ckpt_dir, t["checkpoint_every"]),
        RichProgressBar() if interactive else EpochLog(),
    ]
    loggers: list[Any] = [CSVLogger(out, name="logs")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(out, name="tensorboard"))
    except ImportError:
        pass
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        precision=_precision(cfg, device),
        max_epochs=t["max_epochs"],
        limit_train_batches=t["max_steps_per_epoch"] or 1.0,
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        log_every_n_steps=t["log_every"],
        gradient_clip_val=t["grad_clip"],
        deterministic=t["deterministic"],
        enable_progress_bar=interactive,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=out,
    )
    trainer.fit(module, train_dataloaders=train_loader, ckpt_path=ckpt_path)
    return {
        "output_dir": str(out),
        "last_checkpoint": str(ckpt_dir / "last.ckpt"),
        "evaluations": evaluator.history,
        "epochs": trainer.current_epoch,
    }
