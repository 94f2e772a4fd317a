"""The :class:`Backbone` container shared by every backbone family.

A backbone is an ImageNet network cut into *stages*: ``stages[0]`` is the stem and the following
entries are the network's stages in order, so that applying them one after the other gives the
final feature map. The attention networks of the library insert their modules between these
stages (SONA-Net after ``layer2``/``layer3``, CCAN after the GoogLeNet inception groups), which
is why the stages are plain :class:`torch.nn.Module` objects that can be called, copied
(``copy.deepcopy(backbone.stages[3])`` for a part stream) or wrapped individually.

Each family describes its stages with a :class:`StagePart` layout that names, for every
sub-module of a stage, the path of that sub-module in the *reference model* (torchvision or
timm). :func:`assemble_backbone` builds the stages from that layout and derives from the very
same layout the key mapping ``reference key -> backbone key`` used by
:meth:`Backbone.load_reference_state_dict`; the layout is therefore the one place per family
where parameter names are defined.
"""

from __future__ import annotations

import difflib
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
HALF_MEAN_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

# BatchNorm's step counter does not influence any output and is absent from old checkpoints.
_OPTIONAL_SUFFIX = "num_batches_tracked"


@dataclass(frozen=True)
class StagePart:
    """One sub-module of a stage.

    ``local`` is the sub-module's name inside the stage (it becomes part of the backbone's
    parameter names); ``ref`` is its dotted path in the reference model, or ``None`` for a
    parameter-free module that the reference model applies functionally (e.g. DenseNet's final
    ReLU), in which case ``module`` must be given.
    """

    local: str
    ref: str | None
    module: nn.Module | None = None


@dataclass(frozen=True)
class StageSpec:
    """A stage: name, output channels, nominal output stride, and its modules.

    ``whole`` is the dotted path of a reference module that *is* the stage (ResNet's ``layer2``);
    otherwise ``parts`` lists the sub-modules chained in an ``nn.Sequential``. Channels are
    declared rather than inferred because concatenating blocks (DenseNet, Inception) end with a
    conv whose width is not the stage's.
    """

    name: str
    channels: int
    stride: int
    whole: str | None = None
    parts: tuple[StagePart, ...] = ()


def _get_submodule(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as exc:  # a wrong layout is a programming error, say where
        raise RuntimeError(f"reference model has no sub-module {path!r}") from exc


class Backbone(nn.Module):
    """An ImageNet network cut into stages that map ``(B, 3, H, W)`` to ``(B, C, h, w)``.

    Attributes:
        name: the registry name (``"resnet50"``, ``"googlenet"``, ...).
        stages: ``stages[0]`` is the stem, then the network's stages in order.
        stage_names: a name per stage (``["stem", "layer1", ..., "layer4"]`` for ResNets).
        stage_channels: output channels of each stage.
        stage_strides: nominal output stride of each stage w.r.t. the input (after
            ``last_stride`` / ``dilation``); exact when ``H`` and ``W`` are multiples of the
            final stride.
        out_channels: ``stage_channels[-1]``.
        mean, std: the input normalisation the pretrained weights expect (RGB in ``[0, 1]``).
    """

    def __init__(
        self,
        name: str,
        stages: Sequence[nn.Module],
        stage_names: Sequence[str],
        stage_channels: Sequence[int],
        stage_strides: Sequence[int],
        key_map: Sequence[tuple[str, str]],
        *,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        head_prefixes: Sequence[str] = (),
        key_fixups: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__()
        if not (len(stages) == len(stage_names) == len(stage_channels) == len(stage_strides)):
            raise ValueError(
                "stages, stage_names, stage_channels and stage_strides differ in length"
            )
        self.name = name
        self.stages = nn.ModuleList(stages)
        self.stage_names: list[str] = list(stage_names)
        self.stage_channels: list[int] = list(stage_channels)
        self.stage_strides: list[int] = list(stage_strides)
        self.out_channels: int = self.stage_channels[-1]
        self.mean: tuple[float, float, float] = mean
        self.std: tuple[float, float, float] = std
        # Longest reference prefix first, so "features.1" never shadows "features.10".
        self._key_map: list[tuple[str, str]] = sorted(key_map, key=lambda kv: -len(kv[0]))
        self._head_prefixes: tuple[str, ...] = tuple(head_prefixes)
        self._key_fixups: list[tuple[re.Pattern[str], str]] = [
            (re.compile(pat), repl) for pat, repl in key_fixups
        ]

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Return the output of every stage, stem first (the last one is ``forward(x)``)."""
        outputs: list[Tensor] = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def extra_repr(self) -> str:
        return f"name={self.name!r}, stages={self.stage_names}, out_channels={self.out_channels}"

    # ------------------------------------------------------------------ weight loading
    def map_reference_key(self, key: str) -> str | None:
        """Map a reference-model key (``layer1.0.conv1.weight``) to this backbone's key.

        Keys already in backbone layout (``stages.1.0.conv1.weight``) are returned unchanged.
        Returns ``None`` for keys of the dropped classifier heads and for unknown keys.
        """
        for pattern, repl in self._key_fixups:
            key = pattern.sub(repl, key)
        if key.startswith("stages."):
            return key
        for ref_prefix, own_prefix in self._key_map:
            if key.startswith(ref_prefix):
                return own_prefix + key[len(ref_prefix) :]
        return None

    def is_head_key(self, key: str) -> bool:
        """True for keys of the classifier heads the backbone drops (``fc.``, ``classifier.``)."""
        return key.startswith(self._head_prefixes)

    def load_reference_state_dict(self, state: Mapping[str, Tensor], source: str) -> None:
        """Load a state dict in reference (torchvision / timm) or backbone layout.

        Strict about the backbone: every parameter and buffer must be present with the right
        shape (BatchNorm's ``num_batches_tracked`` counters excepted), and keys that are neither
        the backbone's nor a dropped classifier head's are rejected. ``source`` names the
        weights in error messages.
        """
        own = self.state_dict()
        required = [k for k in own if not k.endswith(_OPTIONAL_SUFFIX)]
        mapped: dict[str, Tensor] = {}
        unexpected: list[str] = []
        mismatch: tuple[str, str, tuple[int, ...], tuple[int, ...]] | None = None
        for key, value in state.items():
            if not isinstance(value, Tensor):
                raise ModelError(
                    f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor"
                )
            own_key = self.map_reference_key(key)
            if own_key is None or own_key not in own:
                if not self.is_head_key(key):
                    unexpected.append(key)
                continue
            if tuple(value.shape) != tuple(own[own_key].shape):
                if mismatch is None:
                    mismatch = (key, own_key, tuple(value.shape), tuple(own[own_key].shape))
                continue
            mapped[own_key] = value
        matched = sum(1 for k in required if k in mapped)
        missing = [k for k in required if k not in mapped]
        head = (
            f"{source} does not fit backbone {self.name!r}: "
            f"{matched}/{len(required)} tensors matched"
        )
        if mismatch is not None:
            key, own_key, got, want = mismatch
            where = key if key == own_key else f"{key} (-> {own_key})"
            raise ModelError(
                f"{head}; first mismatching key {where} has shape {list(got)} in the file "
                f"but {list(want)} in the model"
            )
        if missing:
            extra = (
                f"; the file's first unrecognised key is {unexpected[0]!r}" if unexpected else ""
            )
            raise ModelError(f"{head}; {len(missing)} missing, the first is {missing[0]!r}{extra}")
        if unexpected:
            raise ModelError(
                f"{head} but the file has {len(unexpected)} keys the backbone does not have, "
                f"the first is {unexpected[0]!r}"
            )
        with torch.no_grad():
            result = self.load_state_dict(mapped, strict=False)
        leftover = [k for k in result.missing_keys if not k.endswith(_OPTIONAL_SUFFIX)]
        if leftover or result.unexpected_keys:  # cannot happen after the checks above
            raise ModelError(f"{head}; loading left {leftover or result.unexpected_keys}")


def assemble_backbone(
    name: str,
    model: nn.Module,
    layout: Iterable[StageSpec],
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    head_prefixes: Sequence[str] = (),
    key_fixups: Sequence[tuple[str, str]] = (),
) -> Backbone:
    """Cut ``model`` into the stages described by ``layout`` and derive the key mapping.

    The reference model's modules are moved (not copied) into the stages, so the returned
    backbone shares their parameters; everything not named in the layout (classifier heads,
    auxiliary heads) is left behind with ``model``.
    """
    stages: list[nn.Module] = []
    names: list[str] = []
    channels: list[int] = []
    strides: list[int] = []
    key_map: list[tuple[str, str]] = []
    for index, spec in enumerate(layout):
        if spec.whole is not None:
            stage = _get_submodule(model, spec.whole)
            key_map.append((f"{spec.whole}.", f"stages.{index}."))
        else:
            modules: OrderedDict[str, nn.Module] = OrderedDict()
            for part in spec.parts:
                if part.ref is None:
                    if part.module is None:
                        raise ValueError(f"stage part {part.local!r} needs a module or a ref")
                    modules[part.local] = part.module
                else:
                    modules[part.local] = _get_submodule(model, part.ref)
                    key_map.append((f"{part.ref}.", f"stages.{index}.{part.local}."))
            stage = nn.Sequential(modules)
        stages.append(stage)
        names.append(spec.name)
        channels.append(spec.channels)
        strides.append(spec.stride)
    return Backbone(
        name,
        stages,
        names,
        channels,
        strides,
        key_map,
        mean=mean,
        std=std,
        head_prefixes=head_prefixes,
        key_fixups=key_fixups,
    )


def reject_options(name: str, kwargs: Mapping[str, object], allowed: Sequence[str]) -> None:
    """Raise :class:`ModelError` for keyword options the family builder does not accept."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none"
        raise ModelError(
            f"unknown option(s) {', '.join(unknown)} for backbone {name!r} (accepted: {accepted})"
        )


def set_conv_stride(conv: nn.Module, stride: int) -> None:
    """Set the stride of a conv layer in place (both spatial dimensions)."""
    if isinstance(conv, nn.Conv2d):
        conv.stride = (stride, stride)
    else:  # pragma: no cover - the families only pass convs
        raise TypeError(f"cannot set the stride of {type(conv).__name__}")


def check_last_stride(name: str, last_stride: int) -> None:
    """``last_stride`` must be 1 or 2."""
    if isinstance(last_stride, bool) or last_stride not in (1, 2):
        raise ModelError(f"last_stride must be 1 or 2 for backbone {name!r}, got {last_stride!r}")


def check_no_dilation(name: str, dilation: object) -> None:
    """Raise for a requested dilation on a family that does not support it."""
    wanted = any(dilation) if isinstance(dilation, Sequence) else bool(dilation)
    if wanted:
        raise ModelError(
            f"dilation is only supported by the resnet backbones, not {name!r}; "
            "use last_stride=1 for a larger final map"
        )


def check_backbone_name(name: object, valid: Iterable[str]) -> str:
    """Return ``name`` if it is a known backbone, else raise with a close-match suggestion."""
    valid = sorted(valid)
    if isinstance(name, str) and name in valid:
        return name
    text = str(name)
    close = difflib.get_close_matches(text.lower(), valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ModelError(f"unknown backbone {text!r}{hint} (valid: {', '.join(valid)})")
