"""``attnreid train``: train a model from a config preset (or several seeds of it)."""

from __future__ import annotations

import argparse
from typing import Any

from attnreid.cli.options import add_model_args
from attnreid.config import dump_config, load_config
from attnreid.utils.checks import positive_int


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a config preset",
        description="Train a model. Example: attnreid train -c demo train.max_epochs=5",
    )
    add_model_args(p, (), config="required")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CKPT",
        help="continue from OUTPUT_DIR/checkpoints/last.ckpt, or from CKPT",
    )
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="train N runs (seeds seed..seed+N-1, each in OUTPUT_DIR/seedS) and print mean ± std",
    )
    p.add_argument(
        "--vary-split",
        action="store_true",
        help="with --seeds: also use the seed as data.options.split_seed (CUHK01 random splits)",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    from attnreid.engine.train import train
    from attnreid.evaluation.report import results_table

    if args.seeds is not None:
        from attnreid.engine.runs import KEYS, format_summary, train_seeds

        positive_int(args.seeds, "--seeds")
        seeds = list(range(cfg["seed"], cfg["seed"] + args.seeds))
        report = train_seeds(cfg, seeds, resume=bool(args.resume), vary_split=args.vary_split)
        print("| model | " + " | ".join(KEYS) + " |")
        print("|---" * (len(KEYS) + 1) + "|")
        print(format_summary(cfg["name"], report["summary"], len(seeds)))
        print(f"per-run results: {cfg['output_dir']}/runs.json")
        return 0
    result = train(cfg, resume=args.resume)
    if result.get("global_rank", 0) != 0:  # DDP: rank 0 reports
        return 0
    if result["evaluations"]:
        last = result["evaluations"][-1]
        print(results_table([(f"{cfg['model']['name']} @ epoch {last['epoch']}", last)]))
    print(f"checkpoints and logs: {result['output_dir']}")
    return 0
