"""``attnreid synth``: generate the embedded synthetic dataset (Market-1501 layout)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("synth", help="generate the embedded synthetic dataset (Market-1501 layout)")
    p.add_argument("--root", default="data/synth", help="output folder (default: data/synth)")
    p.add_argument("--train-ids", dest="num_train_ids", type=int, help="training identities")
    p.add_argument("--test-ids", dest="num_test_ids", type=int, help="test identities")
    p.add_argument("--cameras", dest="num_cameras", type=int, help="number of cameras")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from attnreid.data.synth import SynthConfig, generate_synthetic_reid

    given = {k: getattr(args, k) for k in ("num_train_ids", "num_test_ids", "num_cameras", "seed")}
    cfg = SynthConfig(**{k: v for k, v in given.items() if v is not None})
    summary = generate_synthetic_reid(
        args.root, cfg, overwrite=args.overwrite, progress=sys.stderr.isatty()
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0
