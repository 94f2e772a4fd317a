"""``train(config)``: build the dataset, model, loss and loaders from a config and fit.

Training runs on Lightning: CUDA with mixed precision when present (``device: auto``), the
CPU otherwise; checkpoints every ``train.checkpoint_every`` epochs plus ``last.ckpt`` after
every epoch, written atomically; ``resume`` continues from ``last.ckpt`` (or a given file)
with the optimiser, schedule, epoch, sampler and RNG state (on the CPU with the same seed a
resumed run ends exactly as an uninterrupted one); evaluation every ``train.eval_every``
epochs and after the last; CSV (and TensorBoard, if installed) logs under ``output_dir``.

Several processes: ``train.devices`` (per machine) x ``train.num_nodes`` > 1 trains with
Lightning's DDP (NCCL on CUDA, gloo on the CPU). Each process draws ``P x K`` batches of its
own identities (:class:`~attnreid.data.samplers.PKBatchSampler`), so the global batch is
``devices x num_nodes x P x K``; evaluation extracts features on all processes and scores
them on rank 0 (:mod:`attnreid.evaluation.distributed`).
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from attnreid.config import dump_config
from attnreid.data import build_train_loader, build_transforms
from attnreid.data.transforms import input_stats
from attnreid.engine.build import build_model_from_config, load_dataset
from attnreid.engine.callbacks import (
    EpochCheckpoint,
    EpochLog,
    EvaluationCallback,
    FreezeBackbone,
    SamplerState,
    TransformSchedule,
)
from attnreid.engine.checkpoint import AtomicCheckpointIO, check_resumable, read_checkpoint
from attnreid.engine.module import ReIDModule
from attnreid.engine.skipped import SkippedImages
from attnreid.errors import CheckpointError, ConfigError
from attnreid.evaluation.evaluate import make_evaluator
from attnreid.utils.checks import one_of, positive_int
from attnreid.utils.device import resolve_device
from attnreid.utils.io import atomic_write_text


def _precision(cfg: dict[str, Any], device: torch.device) -> str:
    p = cfg["train"]["precision"]
    if p == "auto":
        return "16-mixed" if device.type == "cuda" else "32-true"
    return str(p)


STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")


def _distribution(cfg: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Lightning's ``accelerator``, ``devices``, ``num_nodes`` and ``strategy`` from the
    config's ``device`` and ``train.devices`` / ``train.num_nodes`` / ``train.strategy``."""
    t = cfg["train"]
    devices, nodes, strategy = t["devices"], t["num_nodes"], t["strategy"]
    for key, value in (("devices", devices), ("num_nodes", nodes)):
        positive_int(value, f"train.{key}")
    one_of(strategy, STRATEGIES, "train.strategy")
    cuda = device.type == "cuda"
    if cuda and devices > torch.cuda.device_count():
        raise ConfigError(
            f"train.devices={devices} but this machine has {torch.cuda.device_count()} CUDA "
            f"device(s)"
        )
    single = devices == 1 and nodes == 1 and strategy == "auto"  # no DDP: this one device
    return {
        "accelerator": "gpu" if cuda else "cpu",
        "devices": ([device.index or 0] if cuda else 1) if single else devices,
        "num_nodes": nodes,
        "strategy": "ddp" if strategy == "auto" and not single else strategy,
    }


def _stop_other_ranks(trainer: L.Trainer) -> None:
    """After an error on rank 0 under DDP, end the processes Lightning started for the other
    ranks: they would otherwise wait in a collective until its timeout. (An error on another
    rank ends all processes by itself: Lightning watches its child processes.)"""
    launcher = trainer.strategy.launcher
    if trainer.global_rank == 0 and getattr(launcher, "procs", None):
        launcher.kill(signal.SIGKILL)


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*`isinstance.*treespec.*")
    # val/* are computed and logged on rank 0 only (rank_zero_only=True): nothing to sync
    warnings.filterwarnings("ignore", message=r".*self\.log\('val/.*sync_dist=True.*")


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
    # the epoch training starts at: the sampler schedule and the epoch-dependent transforms
    # must be set before Lightning builds the first data iterator
    resumed = read_checkpoint(ckpt_path) if ckpt_path else None
    start_epoch = int(resumed.get("epoch", -1)) + 1 if resumed else 0
    distribution = _distribution(cfg, device)
    dataset = load_dataset(cfg)
    model = build_model_from_config(cfg, dataset.num_train_pids)
    mean, std = input_stats(model, cfg)
    d, t = cfg["data"], cfg["train"]
    tf_opts = dict(d["transforms"])
    erasing_from = int(tf_opts.pop("random_erasing_start_epoch"))
    size = (d["height"], d["width"])
    late = build_transforms(*size, train=True, mean=mean, std=std, **tf_opts)
    tf_opts_early = {**tf_opts, "random_erasing": 0.0}
    early = build_transforms(*size, train=True, mean=mean, std=std, **tf_opts_early)
    schedule = TransformSchedule([(0, early), (erasing_from, late)])
    train_loader = build_train_loader(
        dataset.train,
        schedule.transform_at(start_epoch),
        num_identities=d["num_identities"],
        num_instances=d["num_instances"],
        seed=cfg["seed"],
        workers=d["workers"],
        seq_len=d["seq_len"],
        skip_bad=d["skip_bad_images"],
    )
    train_loader.batch_sampler.set_epoch(start_epoch)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    module = ReIDModule(model, cfg)
    if resumed is not None:
        check_resumable(resumed, ckpt_path, module)  # one line instead of a state-dict dump
        module.last_good_checkpoint = (ckpt_path, start_epoch)
        del resumed
    evaluator = EvaluationCallback(
        make_evaluator(dataset, cfg, device),
        t["eval_every"],
        t["max_epochs"],
        out / "metrics.json",
    )
    interactive = t["progress"] and sys.stderr.isatty()
    skipped = SkippedImages()
    callbacks: list[L.Callback] = [
        skipped,
        schedule,
        SamplerState(train_loader.batch_sampler),
        evaluator,
        EpochCheckpoint(ckpt_dir, t["checkpoint_every"]),
        RichProgressBar() if interactive else EpochLog(),
    ]
    if t["freeze_backbone_epochs"] > 0:
        callbacks.insert(0, FreezeBackbone(t["freeze_backbone_epochs"]))
    loggers: list[Any] = [CSVLogger(out, name="logs")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(out, name="tensorboard"))
    except ImportError:
        pass
    trainer = L.Trainer(
        **distribution,
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
    try:
        trainer.fit(module, train_dataloaders=train_loader, ckpt_path=ckpt_path)
    except BaseException:
        _stop_other_ranks(trainer)
        raise
    if skipped.report():
        print(skipped.report(), file=sys.stderr, flush=True)
    return {
        "skipped_images": dict(skipped.counts),
        "output_dir": str(out),
        "last_checkpoint": str(ckpt_dir / "last.ckpt"),
        "evaluations": evaluator.history,
        "epochs": trainer.current_epoch,
        "global_rank": trainer.global_rank,
    }
