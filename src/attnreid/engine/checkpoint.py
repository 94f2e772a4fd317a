"""Checkpoints: atomic writes and safe reading.

Training checkpoints are Lightning's (``last.ckpt``, ``epochNNN.ckpt``), written through
:class:`AtomicCheckpointIO` so a crash never leaves a half-written file. Each one records,
under ``attnreid``, the model name, class count and options, so that :func:`attnreid.load`
rebuilds the right network and ``--resume`` refuses a checkpoint of another architecture or
class count with a clear message. Reading uses ``torch.load(weights_only=True)``: a checkpoint
can never execute code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from attnreid.errors import CheckpointError, wrong_file
from attnreid.utils.io import atomic_write
from attnreid.utils.safe_load import RefusedFile, load_tensors_only

#: What ``--checkpoint`` expects, as the message for another kind of file says it.
CHECKPOINT_FILE = (
    "a readable torch checkpoint (a .ckpt written by attnreid train, or a .pth written by "
    "torch.save)"
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes to a temporary file and renames it into place, and
    reads with :func:`read_checkpoint` (``weights_only=True``: never runs code)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return read_checkpoint(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict without executing code; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = load_tensors_only(path)
    except RefusedFile as exc:
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects other than tensors and plain "
            f"data, and loading it could run code ({exc.reason})"
        ) from None
    except Exception:  # torch, zip and pickle errors of many types (KeyError for a text file)
        raise CheckpointError(wrong_file(path, "checkpoint", CHECKPOINT_FILE)) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict of weights")
    return ckpt


def model_state_dict(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights: Lightning's ``state_dict`` with the ``model.`` prefix removed."""
    state = ckpt.get("state_dict", ckpt)
    return {
        k.removeprefix("model."): v
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and not k.startswith("loss.")
    }


def checkpoint_meta(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    meta = ckpt.get("hyper_parameters", {}).get("attnreid")
    if not isinstance(meta, dict) or "model" not in meta:
        raise CheckpointError(
            f"checkpoint {path} was not written by attnreid training (no model description)"
        )
    return meta


def check_resumable(ckpt: dict[str, Any], path: str | Path, module: torch.nn.Module) -> None:
    """Refuse to resume training ``module`` (a ``ReIDModule``) from a checkpoint of another
    architecture, class count or set of weights, with one clear line instead of a traceback."""
    meta = checkpoint_meta(ckpt, path)
    model = module.model
    name, classes = meta["model"], int(meta["num_classes"])
    if name != model.model_name:
        raise CheckpointError(
            f"cannot resume from checkpoint {path}: it holds model {name!r} but the config "
            f"asks for {model.model_name!r}"
        )
    if classes != model.num_classes:
        raise CheckpointError(
            f"cannot resume from checkpoint {path}: it has a {classes}-class classifier but the "
            f"dataset has {model.num_classes} training identities (evaluation does not need the "
            f"classifier: attnreid eval --checkpoint {path} drops it)"
        )
    state = ckpt.get("state_dict", {})
    want = module.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    reshaped = [
        k
        for k in want
        if k in state
        and isinstance(state[k], torch.Tensor)
        and tuple(state[k].shape) != tuple(want[k].shape)
    ]
    if missing or unexpected or reshaped:
        first = (missing or unexpected or reshaped)[0]
        raise CheckpointError(
            f"cannot resume from checkpoint {path}: its weights do not fit the configured "
            f"{name!r} model ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(reshaped)} of another shape; first: {first}); were model.options changed?"
        )
