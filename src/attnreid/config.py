"""Configuration: YAML presets, inheritance, and ``key=value`` overrides, all validated.

A preset is a YAML file whose keys are a subset of :data:`DEFAULTS`; ``_base_: other.yaml``
(relative to the file, or a preset name) inherits another preset. The presets ship inside the
package (``attnreid/configs/*.yaml``, read through :mod:`importlib.resources`), so a plain
``pip install`` has them; ``-c path/to/file.yaml`` reads any other file. Command-line overrides
use dotted keys with YAML values: ``optim.lr=3e-4 data.height=128
model.options.backbone=resnet18``. An unknown key is an error that suggests the closest known
key; a value of the wrong type is an error that names the key and the expected type.
``model.options``, ``data.options`` and the ``loss`` list are free-form here and validated by
the model, dataset and loss builders.

**Merging.** ``_base_`` inheritance and overrides deep-merge every mapping, free-form ones
included: ``model.options.backbone=resnet18`` changes the backbone and keeps the preset's other
options. Lists (``loss``, ``sched.milestones``) and other values are replaced whole. Removing a
key of a free-form mapping is explicit: ``~model.options.last_stride`` on the command line
(``~model.options``: every key; ``model.options={}`` merges nothing and changes nothing), or
``_delete_: [last_stride]`` inside the mapping of a YAML file (``_delete_: true`` drops every
inherited key of that mapping: the file's mapping replaces the parent's, as in mmcv).
"""

from __future__ import annotations

import copy
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from attnreid.errors import ConfigError
from attnreid.utils.checks import did_you_mean

#: The presets shipped in the package (a plain folder once installed by pip or setuptools).
CONFIG_DIR = Path(str(importlib.resources.files("attnreid") / "configs"))
FREE_FORM = {"model.options", "data.options", "loss", "data.transforms.resize_crop"}
#: Keys that also take a list of what their default's type is (several datasets).
LIST_TOO = {"data.dataset"}
#: Keys of older versions, ignored in the configs stored with models (:func:`stored_config`):
#: evaluation always streams query blocks now.
RETIRED = {"eval": ("block_threshold",)}

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "output_dir": "runs/${name}",
    "data": {
        "dataset": "synth",  # a name, or a list of names / {name, root, options} (data/combine.py)
        "root": "data/synth",
        "options": {},
        "height": 256,
        "width": 128,
        "num_identities": 16,  # P
        "num_instances": 4,  # K  (batch = P x K)
        "workers": 2,
        "test_batch_size": 128,
        "normalization": "backbone",  # backbone | imagenet
        "seq_len": 4,  # video: frames per training clip (T), and per test chunk
        "test_frames": "all",  # video test frames: all (in chunks) | evenly | first (a clip)
        "test_seq_len": None,  # video test clip length (evenly / first / chunks); None: seq_len
        "skip_bad_images": False,  # training: replace unreadable images, count them
        # hold out this many training identities as a validation query / gallery (0: none);
        # training and evaluation then use them instead of the test split (data/base.py)
        "validation_ids": 0,
        "validation_seed": 0,
        "transforms": {
            "flip": 0.5,
            "pad": 10,
            "resize_crop": None,
            "rotation": 0.0,
            "translate": 0.0,
            "vflip": 0.0,
            "color_jitter": 0.0,
            "random_erasing": 0.0,
            "random_erasing_style": "torchvision",  # torchvision | zhong (Zhong et al.: CCAN)
            "random_erasing_start_epoch": 0,  # CCAN: random erasing from epoch 50 on
            "cutout": 0.0,
            "cutout_size": 64,
        },
    },
    "model": {
        "name": "resnet50",
        "pretrained": "none",  # none | imagenet | a weights file: the backbone's start
        "init_from": None,  # a re-ID checkpoint: every tensor that fits (engine/init_from.py)
        "options": {},
    },
    "loss": [
        {"type": "cross_entropy", "weight": 1.0, "epsilon": 0.1},
        {"type": "triplet", "weight": 1.0, "margin": 0.3},
    ],
    "optim": {
        "name": "adam",  # adam | adamw | sgd
        "lr": 3.5e-4,
        "weight_decay": 5e-4,
        "momentum": 0.9,
        "nesterov": False,
        "betas": [0.9, 0.999],
        "bias_lr_factor": 1.0,
        "head_lr_factor": 1.0,
    },
    "sched": {
        "warmup_epochs": 10,
        "warmup_mode": "linear",  # linear | staircase | none
        "warmup_factor": 0.01,  # linear: start at lr * warmup_factor
        "warmup_step": 5,  # staircase: lr * (epoch // step + 1) * step / warmup_epochs
        "milestones": [40, 70],
        "gamma": 0.1,
    },
    "train": {
        "max_epochs": 120,
        "max_steps_per_epoch": None,
        "eval_every": 20,
        "checkpoint_every": 10,
        "precision": "auto",  # auto = 16-mixed on CUDA, 32-true on CPU
        "log_every": 10,
        "grad_clip": None,
        "deterministic": False,
        "progress": True,
        "freeze_backbone_epochs": 0,  # DuATM: backbone frozen (no grads, BN fixed) this long
        "devices": 1,  # processes per machine (GPUs, or CPU processes); > 1: DDP
        "num_nodes": 1,  # machines of a multi-node DDP run (README: several nodes)
        "strategy": "auto",  # auto (ddp when devices x num_nodes > 1) | ddp |
        # ddp_find_unused_parameters_true (models with parameters unused in some steps)
    },
    "eval": {
        "metric": "euclidean",  # euclidean | cosine
        "normalize": False,  # L2-normalise features before the distance
        "flip": True,  # average the features of the image and its mirror
        "max_rank": 50,
        "mode": "auto",  # auto (the dataset's protocol) | market | cuhk03
        "rerank": False,  # k-reciprocal re-ranking (Zhong et al. 2017)
        "rerank_k1": 20,
        "rerank_k2": 6,
        "rerank_lambda": 0.3,
        "fmrs": [1.0e-2, 1.0e-3, 1.0e-4],  # verification: TPR at these FPRs ([]: none)
        "targets": [],  # attnreid eval: test sets, one row each ([]: the training data's)
    },
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def resolve_config_path(name: str | Path) -> Path:
    """A YAML path, or the name of a preset in ``configs/`` (with or without ``.yaml``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / f"{name}", CONFIG_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    presets = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []
    hint = did_you_mean(name, presets)
    raise ConfigError(f"config {name!r} is neither a file nor a preset in {CONFIG_DIR}{hint}")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"config {path}: _base_ inheritance loops back to itself")
    try:
        data = yaml_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys to values")
    base = data.pop("_base_", None)
    if base is None:
        return data
    base_path = path.parent / base if (path.parent / base).is_file() else resolve_config_path(base)
    return _merge(_read_yaml(base_path, (*seen, path)), data, "", strict=False)


def _free_form(dotted: str) -> bool:
    """Whether ``dotted`` is a free-form mapping or lies inside one."""
    return any(dotted == f or dotted.startswith(f"{f}.") for f in FREE_FORM)


def _merge(
    base: dict[str, Any], new: Mapping[str, Any], prefix: str, strict: bool
) -> dict[str, Any]:
    """``base`` deep-merged with ``new`` (see the module docstring); ``strict``: keys of
    ``new`` outside free-form mappings must exist in ``base``."""
    out = copy.deepcopy(base)
    new = dict(new)
    delete = new.pop("_delete_", None)
    if delete is not None:
        out = _delete(out, delete, prefix)
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        free = _free_form(dotted)
        if strict and not free and key not in out:
            _unknown(dotted, prefix, out)
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{dotted}.", strict and not free)
        elif isinstance(value, Mapping):  # a new mapping: only its own deletions to drop
            out[key] = _merge({}, value, f"{dotted}.", strict=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _delete(section: dict[str, Any], delete: Any, prefix: str) -> dict[str, Any]:
    """``section`` without the keys ``delete`` names (``True``: without any key)."""
    where = prefix.rstrip(".") or "the config"
    if not _free_form(prefix.rstrip(".")):
        raise ConfigError(
            f"keys of {where!r} cannot be removed (only those of model.options, data.options and "
            "data.transforms.resize_crop): "
            "set the value instead"
        )
    if delete is True:
        return {}
    names = [delete] if isinstance(delete, str) else delete
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"_delete_ in {where!r} must be true or a list of key names")
    for name in names:
        if name not in section:
            hint = did_you_mean(f"{prefix}{name}", [f"{prefix}{k}" for k in section])
            raise ConfigError(f"cannot remove config key '{prefix}{name}': it is not set{hint}")
        del section[name]
    return section


def _unknown(dotted: str, prefix: str, section: Mapping[str, Any]) -> None:
    hint = did_you_mean(dotted, [f"{prefix}{k}" for k in section])
    raise ConfigError(f"unknown config key {dotted!r}{hint}")


def _check_types(cfg: Mapping[str, Any], ref: Mapping[str, Any], prefix: str = "") -> None:
    for key, default in ref.items():
        dotted = f"{prefix}{key}"
        value = cfg[key]
        if dotted in FREE_FORM or default is None or value is None:
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} must be a mapping, got {value!r}")
            _check_types(value, default, f"{dotted}.")
            continue
        ok = (
            isinstance(value, list)
            if dotted in LIST_TOO and isinstance(value, list)
            else isinstance(value, bool)
            if isinstance(default, bool)
            else isinstance(value, int) and not isinstance(value, bool)
            if isinstance(default, int)
            else isinstance(value, (int, float)) and not isinstance(value, bool)
            if isinstance(default, float)
            else isinstance(value, type(default))
        )
        if not ok:
            raise ConfigError(
                f"config key {dotted!r} must be of type {type(default).__name__}, "
                f"got {value!r} ({type(value).__name__})"
            )


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x", "~d.e"]`` -> nested dict, values parsed as YAML; ``~d.e`` removes
    key ``e`` of the free-form mapping ``d`` (``{"d": {"_delete_": ["e"]}}``), ``~d`` every
    key of ``d`` (``{"d": {"_delete_": True}}``)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if item.startswith("~") and "=" not in item:
            key = item[1:].strip()
            *parents, last = key.split(".")
            node = out
            for part in parents if key not in FREE_FORM else key.split("."):
                node = node.setdefault(part, {})
            if key in FREE_FORM:  # ~model.options: the whole mapping
                node["_delete_"] = True
            else:
                node.setdefault("_delete_", []).append(last)
            continue
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} must look like key=value (e.g. optim.lr=3e-4), "
                "or ~key to remove a key (e.g. ~model.options.last_stride)"
            )
        key, raw = item.split("=", 1)
        try:
            value = yaml_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] = (), **updates: Any
) -> dict[str, Any]:
    """Defaults <- preset file (with its ``_base_`` chain) <- ``updates`` <- ``overrides``."""
    cfg = copy.deepcopy(DEFAULTS)
    source = "defaults"
    if path is not None:
        file = resolve_config_path(path)
        cfg = _merge(cfg, _read_yaml(file), "", strict=True)
        source = str(file)
    if updates:
        cfg = _merge(cfg, updates, "", strict=True)
    cfg = _merge(cfg, parse_overrides(overrides), "", strict=True)
    _check_types(cfg, DEFAULTS)
    if not isinstance(cfg["loss"], list):
        raise ConfigError("config key 'loss' must be a list of loss terms")
    cfg["output_dir"] = str(cfg["output_dir"]).replace("${name}", str(cfg["name"]))
    cfg["_source"] = source
    return cfg


def stored_config(saved: Mapping[str, Any] | None) -> dict[str, Any]:
    """A config stored with a model (in a checkpoint or an ONNX file), as ``updates`` for
    :func:`load_config`: without its private keys (``_source``) nor the keys this version no
    longer has (:data:`RETIRED`), so that models written by an older version still load."""
    out = {k: copy.deepcopy(v) for k, v in (saved or {}).items() if not k.startswith("_")}
    for key, value in out.items():
        if isinstance(value, dict):
            gone = RETIRED.get(key, ())
            out[key] = {k: v for k, v in value.items() if not k.startswith("_") and k not in gone}
    return out


def dump_config(cfg: Mapping[str, Any]) -> str:
    return yaml.safe_dump({k: v for k, v in cfg.items() if not k.startswith("_")}, sort_keys=False)
