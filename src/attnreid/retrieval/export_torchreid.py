"""``attnreid export torchreid``: an OSNet re-ID model as torchreid's (and BoxMOT's) ``.pt``.

torchreid's OSNet state dict names the backbone ``conv1`` .. ``conv5`` and the head ``fc``
(Linear + BatchNorm1d, then ReLU) and ``classifier``: :class:`~attnreid.models.osnet.OSNetReID`
has exactly that head, and its backbone maps back to those keys
(:meth:`~attnreid.models.backbones.base.Backbone.reference_state_dict`). The file is
``{"state_dict": ..., "model_name", "num_classes", "img_size"}``: torchreid's
``load_pretrained_weights`` and BoxMOT's PyTorch backend both read the ``state_dict`` key;
BoxMOT also reads the other three (the architecture, the classifier size and the input size)
and, when they are absent, guesses the architecture from the longest model name inside the
file name: name the file ``osnet_x0_25_<tag>.pt``. Neither ever flips the crops: the features
are those of ``attnreid eval`` with ``eval.flip=false``.

Networks torchreid has no class for (the attention networks, the plug-ins, OSNet with
``last_stride=1``) are refused with one line that points at ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnreid.errors import ModelError
from attnreid.models.osnet import OSNetReID
from attnreid.utils.io import atomic_write

__all__ = ["export_torchreid"]


def export_torchreid(model: nn.Module, path: str | Path, height: int, width: int) -> dict[str, Any]:
    """Write ``model``'s weights in torchreid's layout to ``path`` (atomically); returns what the
    file holds besides the weights."""
    name = getattr(model, "model_name", "") or type(model).__name__
    options = getattr(model, "model_options", {})
    plain = isinstance(model, OSNetReID) and model.plugin == "none" and model.duatm is None
    if not plain or options.get("last_stride", 2) != 2:
        raise ModelError(
            f"torchreid has no network for model {name!r} (only the plain OSNet re-ID models "
            "export to torchreid's layout): export it with attnreid export onnx"
        )
    state = model.backbone.reference_state_dict()
    state.update({f"fc.{k}": v for k, v in model.fc.state_dict().items()})
    state.update({f"classifier.{k}": v for k, v in model.classifier.state_dict().items()})
    backbone = model.backbone.name  # osnet_x0_25 ...
    info = {"model_name": backbone, "num_classes": model.num_classes, "img_size": [height, width]}
    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    atomic_write(path, lambda tmp: torch.save({"state_dict": state, **info}, tmp))
    return info
