"""``model.init_from``: start a network from the weights of another re-ID checkpoint.

Fine-tuning starts from a network that already knows people: an attnreid checkpoint (``.ckpt``
or its ``.safetensors`` twin) of the same or a related network, or a torchreid model-zoo file
(``osnet_x0_25_msmt17.pth``; bare, under ``state_dict``, with or without ``module.``).
Every tensor of the file whose name and shape fit the configured model is loaded; the rest is
skipped and reported — typically the classifier, trained for another set of identities. Names
are matched as they are (attnreid's layout, after Lightning's ``model.`` prefix is removed) and
through each backbone's reference layout, so torchreid's ``conv1.*`` ... ``conv5.*`` reach
``backbone.stages.*`` and its ``fc.*`` / ``classifier.*`` reach OSNet's head of the same names.

This differs from ``--resume`` (which continues the *same* run: optimiser, schedule, epoch) and
from ``model.pretrained`` (which initialises the backbone only, strictly, before the network is
assembled — what the attention networks use, since some copy backbone stages into branches).
A file of which nothing fits is refused with one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.backbones.base import Backbone
from attnreid.models.backbones.weights import load_weights_file

__all__ = ["InitReport", "init_from"]


@dataclass
class InitReport:
    """What :func:`init_from` loaded: model keys loaded, file keys skipped (with the reason),
    and model keys left as initialised."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    untouched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = len(self.loaded) + len(self.untouched)
        lines = [f"init_from {self.source}: loaded {len(self.loaded)} of {total} tensors"]
        if self.skipped:
            shown = "; ".join(f"{k} ({why})" for k, why in list(self.skipped.items())[:4])
            more = f" and {len(self.skipped) - 4} more" if len(self.skipped) > 4 else ""
            lines.append(f"  skipped {len(self.skipped)} of the file's: {shown}{more}")
        if self.untouched:
            shown = ", ".join(self.untouched[:4])
            more = f" and {len(self.untouched) - 4} more" if len(self.untouched) > 4 else ""
            lines.append(f"  left as initialised: {shown}{more}")
        return "\n".join(lines)


def _file_state(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise ModelError(f"model.init_from: {path} does not exist")
    state = load_weights_file(path)
    if any(k.startswith("model.") for k in state):  # a Lightning checkpoint: the network only
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    return state


def _translate(model: nn.Module, key: str, own: dict[str, Tensor]) -> str | None:
    """The model key a file key stands for: the same name, or a backbone's reference key."""
    if key in own:
        return key
    for prefix, module in model.named_modules():
        if isinstance(module, Backbone):
            mapped = module.map_reference_key(key)
            full = f"{prefix}.{mapped}" if prefix else mapped
            if mapped is not None and full in own:
                return full
    return None


def init_from(model: nn.Module, path: str | Path) -> InitReport:
    """Load every tensor of ``path`` whose name and shape fit ``model`` (in place).

    Raises:
        ModelError: the file is missing or unreadable, or none of its tensors fits.
    """
    path = Path(path).expanduser()
    state = _file_state(path)
    own = model.state_dict()
    report = InitReport(str(path))
    chosen: dict[str, Tensor] = {}
    for key, value in state.items():
        target = _translate(model, key, own)
        if target is None:
            report.skipped[key] = "no such tensor in the model"
        elif tuple(value.shape) != tuple(own[target].shape):
            report.skipped[key] = f"shape {list(value.shape)}, model {list(own[target].shape)}"
        else:
            chosen[target] = value
    if not chosen:
        first = next(iter(report.skipped.items()), ("", "the file holds no tensors"))
        raise ModelError(
            f"model.init_from: nothing in {path} fits model "
            f"{getattr(model, 'model_name', '') or type(model).__name__!r} "
            f"(0 of {len(state)} tensors; first: {first[0]} - {first[1]})"
        )
    with torch.no_grad():
        model.load_state_dict(chosen, strict=False)
    report.loaded = sorted(chosen)
    report.untouched = [
        k for k in own if k not in chosen and not k.endswith("num_batches_tracked")
    ]
    return report
