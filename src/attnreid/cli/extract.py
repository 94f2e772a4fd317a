"""``attnreid extract``: query and gallery features of a model to one ``.npz`` file."""

from __future__ import annotations

import argparse
from typing import Any

from attnreid.cli.options import add_model_args, load_model


def register(sub: Any) -> None:
    p = sub.add_parser("extract", help="extract query and gallery features to one .npz file")
    add_model_args(p, ("checkpoint", "onnx"))
    p.add_argument("--output", "-o", required=True, help="the .npz file to write")
    p.set_defaults(func=cmd_extract)


def cmd_extract(args: argparse.Namespace) -> int:
    from attnreid.engine.build import load_dataset
    from attnreid.evaluation.features import save_features

    extractor = load_model(args)
    dataset = load_dataset(extractor.config)
    sets = [extractor.extract(dataset.split(s)) for s in ("query", "gallery")]
    path = save_features(args.output, sets[0], sets[1])
    print(
        f"wrote {path}: {len(sets[0])} query and {len(sets[1])} gallery features "
        f"of dimension {sets[0].features.shape[1]}"
    )
    return 0
