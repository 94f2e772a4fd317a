"""Where a command's model and its config come from: one argument group, one loader.

:func:`add_model_args` gives a command ``-c/--config``, the ``KEY=VALUE`` overrides and the
options that name its model (``--checkpoint``, ``--onnx``, ``--untrained``; the pictures also
take ``--features``); :func:`load_model` loads the model they name with its config
(:func:`attnreid.engine.build.load_model_and_config`: the config given with ``-c``, else the
one stored with the model, then the overrides; the model carries it).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from attnreid.errors import ConfigError

#: The options that name a model (or, ``--features``, extracted features), with their help.
SOURCES = {
    "checkpoint": "a checkpoint written by attnreid train",
    "onnx": "a model written by attnreid export onnx (run by onnxruntime)",
    "untrained": "the config's network as built (needs --config)",
    "features": "a .npz of attnreid extract",
}


def add_model_args(
    p: argparse.ArgumentParser,
    sources: Sequence[str] = ("checkpoint", "onnx"),
    *,
    required: bool = True,
    config: str | None = "optional",
    overrides: bool = True,
    repeat: bool = False,
) -> None:
    """Add the options of ``sources`` (keys of :data:`SOURCES`): one of them is ``required``,
    or, with ``repeat``, each may be given several times in any mix; ``config``:
    ``"required"``, ``"optional"`` or None (no ``-c``); ``overrides``: the ``KEY=VALUE``
    positional arguments."""
    if config is not None:
        p.add_argument(
            "--config",
            "-c",
            required=config == "required",
            help="a YAML file or the name of a preset in configs/ (see `attnreid list presets`)",
        )
    group: Any = p if repeat or len(sources) < 2 else p.add_mutually_exclusive_group(
        required=required
    )
    for name in sources:
        kwargs: dict[str, Any] = {"help": SOURCES[name]}
        if name == "untrained":
            kwargs["action"] = "store_true"
        elif repeat:
            kwargs.update(action="append", help=f"{SOURCES[name]} (repeatable)")
        elif len(sources) < 2:
            kwargs["required"] = required
        group.add_argument(f"--{name}", **kwargs)
    if overrides:
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="config overrides with dotted keys, e.g. optim.lr=3e-4 data.root=~/market",
        )


def load_model(args: argparse.Namespace, **named: Any) -> tuple[Any, dict[str, Any]]:
    """``(model, config)`` of the model ``args`` name; ``named``: ``checkpoint`` / ``onnx``
    given otherwise (one of several ``--checkpoint``, or the model an index names)."""
    from attnreid.engine.build import load_model_and_config

    config, untrained = getattr(args, "config", None), getattr(args, "untrained", False)
    if untrained and config is None:
        raise ConfigError("eval --untrained needs --config: the network to build")
    return load_model_and_config(
        named.get("checkpoint", getattr(args, "checkpoint", None)),
        named.get("onnx", getattr(args, "onnx", None)),
        config=config,
        overrides=getattr(args, "overrides", ()),
        untrained=untrained,
    )


def load_index_model(args: argparse.Namespace, index: Any) -> tuple[Any, dict[str, Any]]:
    """The model that searches a gallery ``index``: ``--checkpoint`` / ``--onnx`` if given,
    else the one the index was built with; refused when its features are not the index's."""
    from attnreid.errors import CheckpointError
    from attnreid.retrieval import model_source

    ckpt, onnx = getattr(args, "checkpoint", None), getattr(args, "onnx", None)
    if ckpt is None and onnx is None:
        ckpt, onnx = index.info.get("checkpoint"), index.info.get("onnx")
        if ckpt is None and onnx is None:
            raise ConfigError(f"index {args.index} names no model: pass --checkpoint or --onnx")
    model, cfg = load_model(args, checkpoint=ckpt, onnx=onnx)
    source = model_source(model, cfg, ckpt, onnx)
    if source["model"] != index.info.get("model") or source["feature_dim"] != index.dim:
        raise CheckpointError(
            f"{ckpt or onnx} is model {source['model']!r} but index {args.index} was built "
            f"with {index.info.get('model')!r} (dimension {index.dim})"
        )
    return model, cfg
