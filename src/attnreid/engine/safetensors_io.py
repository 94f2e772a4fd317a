"""Network weights as ``.safetensors`` files beside the training checkpoints.

A Lightning checkpoint is a pickle (read here with ``weights_only=True``, which refuses code);
a ``.safetensors`` file holds only tensors and a JSON header, so it can be shared and loaded by
any tool without running anything. Training writes ``epochNNN.safetensors`` and
``last.safetensors`` beside ``epochNNN.ckpt`` / ``last.ckpt`` (the network's weights, without
the optimiser state and the loss modules), with the model description in the header's
metadata so that :func:`attnreid.load` rebuilds the
network from either file:

* ``attnreid``: JSON ``{"model", "num_classes", "options", "feature_dim"}`` (as in the
  checkpoint's ``hyper_parameters["attnreid"]``);
* ``attnreid.config``: JSON of the training config; ``attnreid.epoch``: the epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from attnreid.errors import CheckpointError, wrong_file
from attnreid.utils.io import atomic_write

__all__ = ["read_safetensors", "save_beside_checkpoint", "save_safetensors", "weights_path"]

#: What a ``.safetensors`` checkpoint must be, as the message for another kind of file says it.
SAFETENSORS_FILE = (
    "a readable safetensors file (the .safetensors weights written by attnreid train)"
)


def weights_path(checkpoint: str | Path) -> Path:
    """The ``.safetensors`` file that goes with a checkpoint path."""
    return Path(checkpoint).with_suffix(".safetensors")


def save_safetensors(
    model: torch.nn.Module,
    path: str | Path,
    meta: dict[str, Any],
    config: dict[str, Any] | None = None,
    epoch: int | None = None,
) -> Path:
    """Write ``model``'s weights and description to ``path`` atomically."""
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    header = {"format": "pt", "attnreid": json.dumps(meta, default=str)}
    if config is not None:
        header["attnreid.config"] = json.dumps(
            {k: v for k, v in config.items() if not k.startswith("_")}, default=str
        )
    if epoch is not None:
        header["attnreid.epoch"] = str(int(epoch))
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def read_safetensors(path: str | Path) -> dict[str, Any]:
    """A ``.safetensors`` file as a checkpoint-shaped dict: ``state_dict`` (prefixed ``model.``
    as in Lightning's), ``hyper_parameters`` (``attnreid``, ``config``) and ``epoch``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            state = {f"model.{k}": fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError):
        raise CheckpointError(wrong_file(path, "checkpoint", SAFETENSORS_FILE)) from None
    hparams: dict[str, Any] = {}
    try:
        if "attnreid" in header:
            hparams["attnreid"] = json.loads(header["attnreid"])
        if "attnreid.config" in header:
            hparams["config"] = json.loads(header["attnreid.config"])
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {path} has a malformed attnreid header") from None
    epoch = header.get("attnreid.epoch")
    return {
        "state_dict": state,
        "hyper_parameters": hparams,
        "epoch": int(epoch) if epoch is not None else None,
    }


def save_beside_checkpoint(trainer: Any, pl_module: Any, checkpoint: str | Path) -> Path | None:
    """Write ``checkpoint``'s ``.safetensors`` twin from a training module (rank 0 only)."""
    if not trainer.is_global_zero:
        return None
    hp = pl_module.hparams
    return save_safetensors(
        pl_module.model,
        weights_path(checkpoint),
        dict(hp["attnreid"]),
        hp.get("config"),
        trainer.current_epoch,
    )
