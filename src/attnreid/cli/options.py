"""The options several commands share: where the model comes from, and the match verdicts.

:func:`add_model_args` gives a command ``-c/--config``, the ``KEY=VALUE`` overrides and the
options that name its model (``--checkpoint``, ``--onnx``, ``--untrained``; the pictures also
take ``--features``); :func:`load_model` opens the model they name with :func:`attnreid.load`
(the config given with ``-c``, else the one stored with the model, then the overrides).
:func:`add_verdict_args` / :func:`verdicts`: distances to match / no match (``search``,
``serve``).
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


def load_model(args: argparse.Namespace, source: Any = None, **options: Any) -> Any:
    """The :class:`~attnreid.evaluation.extractor.FeatureExtractor` (model, config, test
    preprocessing) of the model ``args`` name, or of ``source`` (one of several
    ``--checkpoint``, or the model an index names); ``options``: the extractor's."""
    from attnreid.engine.load import load

    config, untrained = getattr(args, "config", None), getattr(args, "untrained", False)
    if untrained:
        if config is None:
            raise ConfigError("eval --untrained needs --config: the network to build")
        return load(config=config, overrides=args.overrides, untrained=True, **options)
    if source is None:
        source = getattr(args, "checkpoint", None) or getattr(args, "onnx", None)
    return load(source, config=config, overrides=getattr(args, "overrides", ()), **options)


def load_index_model(args: argparse.Namespace, index: Any, **options: Any) -> Any:
    """The model that searches a gallery ``index``: ``--checkpoint`` / ``--onnx`` if given,
    else the one the index was built with; refused when its features are not the index's."""
    source = getattr(args, "checkpoint", None) or getattr(args, "onnx", None) or index.model_file
    if source is None:
        raise ConfigError(f"index {args.index} names no model: pass --checkpoint or --onnx")
    extractor = load_model(args, source, vectors=True, **options)
    index.check_model(extractor, f"index {args.index}")
    return extractor


def add_verdict_args(p: argparse.ArgumentParser) -> None:
    """The options that turn distances into match / no match (``search``, ``serve``)."""
    v = p.add_mutually_exclusive_group()
    v.add_argument("--fmr", type=float, default=1e-3, help="false match rate of 'match'")
    v.add_argument("--max-distance", type=float, help="'match' at or below this distance")
    p.add_argument(
        "--calibration",
        help="thresholds written by attnreid calibrate (default: those stored in the index)",
    )


def verdicts(args: argparse.Namespace, index: Any) -> Any:
    """The :class:`~attnreid.retrieval.calibration.Verdicts` the options of
    :func:`add_verdict_args` ask for."""
    from attnreid.retrieval.calibration import Verdicts, load_thresholds

    return Verdicts(load_thresholds(args.calibration, index), args.fmr, args.max_distance)
