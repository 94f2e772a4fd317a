"""The :class:`Backbone` container shared by every backbone family.

A backbone is an ImageNet network cut into *stages*: ``stages[0]`` is the stem and the following
entries are the network's stages in order, so that applying them one after the other gives the
final feature map. The attention networks of the library insert their modules between these
stages (SONA-Net after ``layer2``/``layer3``, CCAN after the GoogLeNet inception groups), which
is why the stages are plain :class:`torch.nn.Module` objects that can be called, copied
(``copy.deepcopy(backbone.stages[3])`` for a part stream) or wrapped individually.

Each family declares itself as a :class:`Family`: how to build its *reference model*
(torchvision, timm or our own), the options it accepts, its stages as paths of sub-modules of
the reference model, and the layers ``last_stride=1`` changes. :func:`assemble_backbone` does
the rest for every family alike: it rejects unknown options, checks ``last_stride`` and
``dilation``, builds the model, keeps the resolution of the last stage if asked, cuts the
model into the stages and derives from the very same stage paths the key mapping
``reference key -> backbone key`` used by :meth:`Backbone.load_reference_state_dict`; the
stage table is therefore the one place per family where parameter names are defined.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.utils.checks import did_you_mean

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
HALF_MEAN_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

# BatchNorm's step counter does not influence any output and is absent from old checkpoints.
_OPTIONAL_SUFFIX = "num_batches_tracked"


#: A stage: ``(name, modules, channels, stride)``. ``modules`` is the dotted path of the
#: reference module that *is* the stage (ResNet's ``layer2``), or the paths of the sub-modules
#: chained in an ``nn.Sequential``, each named in the stage (and so in the backbone's parameter
#: names) by its path without the family's ``prefix`` and without dots (``features.7`` -> ``7``
#: under ``features.``, ``blocks.5`` -> ``blocks5``). ``stride`` is the nominal output stride
#: with ``last_stride=2`` and no dilation. Channels are declared rather than inferred because
#: concatenating blocks (DenseNet, Inception) end with a conv whose width is not the stage's.
Stage = tuple[str, str | tuple[str, ...], int, int]


@dataclass(frozen=True)
class Family:
    """What one backbone family declares; :func:`assemble_backbone` does the rest.

    Attributes:
        make: ``make(init_weights=..., dilation=..., **options)`` builds the reference model
            (``dilation``: the flags ``resolve_dilation`` returned, ``None`` for the families
            without it; ``init_weights=False`` may skip an initialisation that pretrained
            weights will overwrite).
        stages: the stages, stem first (see :data:`Stage`); ``prefix`` is left out of the
            names of their sub-modules.
        options: the keyword options ``make`` accepts.
        last_downsampling: the reference paths of the layers that halve the map in the last
            stage that does: ``last_stride=1`` sets the stride of those that are convs to 1 and
            replaces the others (poolings) by the identity, which halves the stride of the
            stage holding the first path and of every stage after it.
        resolve_dilation: ``(name, dilation, last_stride) -> flags``, one flag per stage of
            ``dilatable`` (a dilated stage, and every one after it, keeps the resolution of the
            one before); ``None``: the family refuses dilation.
        mean, std: the input normalisation the pretrained weights expect.
        head_prefixes, key_fixups: see :class:`Backbone`.
    """

    make: Callable[..., nn.Module]
    stages: Sequence[Stage]
    options: tuple[str, ...] = ()
    prefix: str = ""
    last_downsampling: tuple[str, ...] = ()
    resolve_dilation: Callable[[str, Any, int], list[bool]] | None = None
    dilatable: tuple[str, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    head_prefixes: tuple[str, ...] = ()
    key_fixups: tuple[tuple[str, str], ...] = ()


def _get_submodule(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as exc:  # a wrong stage table is a programming error, say where
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

    def reference_state_dict(self) -> dict[str, Tensor]:
        """The backbone's weights under the reference model's keys (``stages.1.0.x`` ->
        ``conv2.0.x`` for OSNet): the inverse of :meth:`map_reference_key` (checked on every
        key)."""
        own_to_ref = sorted(((own, ref) for ref, own in self._key_map), key=lambda kv: -len(kv[0]))
        out: dict[str, Tensor] = {}
        for key, value in self.state_dict().items():
            ref = next((r + key[len(o) :] for o, r in own_to_ref if key.startswith(o)), None)
            if ref is None or self.map_reference_key(ref) != key:
                raise ModelError(f"backbone {self.name!r}: no reference key for {key!r}")
            out[ref] = value
        return out

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
    family: Family,
    *,
    last_stride: int = 2,
    dilation: bool | Sequence[bool] = False,
    init_weights: bool = True,
    options: Mapping[str, Any] | None = None,
) -> Backbone:
    """Build backbone ``name`` of ``family``: check the options, build the reference model,
    apply ``last_stride`` and cut the model into the family's stages.

    Every option is checked before the model is built. The reference model's modules are moved
    (not copied) into the stages, so the returned backbone shares their parameters; everything
    not named in the stages (classifier heads, auxiliary heads) is left behind with the model.
    """
    options = dict(options or {})
    reject_options(name, options, family.options)
    check_last_stride(name, last_stride)
    if family.resolve_dilation is None:
        check_no_dilation(name, dilation)
        flags = None
    else:
        flags = family.resolve_dilation(name, dilation, last_stride)
    model = family.make(init_weights=init_weights, dilation=flags, **options)
    names = [stage[0] for stage in family.stages]
    halved = [names.index(stage) for stage, flag in zip(family.dilatable, flags or ()) if flag]
    if last_stride == 1:
        for path in family.last_downsampling:
            _keep_resolution(model, path)
        halved.append(_stage_holding(family.stages, family.last_downsampling[0]))
    stages: list[nn.Module] = []
    strides: list[int] = []
    key_map: list[tuple[str, str]] = []
    for index, (_, modules, _, stride) in enumerate(family.stages):
        if isinstance(modules, str):
            stage = _get_submodule(model, modules)
            key_map.append((f"{modules}.", f"stages.{index}."))
        else:
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            for path in modules:
                local = path.removeprefix(family.prefix).replace(".", "")
                parts[local] = _get_submodule(model, path)
                key_map.append((f"{path}.", f"stages.{index}.{local}."))
            stage = nn.Sequential(parts)
        stages.append(stage)
        strides.append(stride // 2 ** sum(1 for first in halved if first <= index))
    return Backbone(
        name,
        stages,
        names,
        [stage[2] for stage in family.stages],
        strides,
        key_map,
        mean=family.mean,
        std=family.std,
        head_prefixes=family.head_prefixes,
        key_fixups=family.key_fixups,
    )


def _stage_holding(stages: Iterable[Stage], path: str) -> int:
    """Index of the stage whose modules hold the reference module ``path``."""
    for index, (_, modules, _, _) in enumerate(stages):
        for own in (modules,) if isinstance(modules, str) else modules:
            if path == own or path.startswith(own + "."):
                return index
    raise RuntimeError(f"no stage holds {path!r}")  # a wrong family table, say where


def _keep_resolution(model: nn.Module, path: str) -> None:
    """Stride 1 for the conv at ``path``; a pooling there is replaced by the identity."""
    layer = _get_submodule(model, path)
    if isinstance(layer, nn.Conv2d):
        layer.stride = (1, 1)
    else:
        parent, _, attr = path.rpartition(".")
        setattr(_get_submodule(model, parent) if parent else model, attr, nn.Identity())


def reject_options(name: str, kwargs: Mapping[str, object], allowed: Sequence[str]) -> None:
    """Raise :class:`ModelError` for keyword options the family builder does not accept."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none"
        raise ModelError(
            f"unknown option(s) {', '.join(unknown)} for backbone {name!r} (accepted: {accepted})"
        )


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
    hint = did_you_mean(text.lower(), valid, cutoff=0.5)
    raise ModelError(f"unknown backbone {text!r}{hint} (valid: {', '.join(valid)})")
