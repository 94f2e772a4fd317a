"""``attnreid train | eval | extract | synth | list``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnreid.cli.model_args import add_model_args, load_model
from attnreid.config import CONFIG_DIR, dump_config, load_config
from attnreid.errors import ConfigError
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

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset's query/gallery protocol",
        description="Evaluate a trained checkpoint or an exported ONNX model (float or INT8); "
        "or, with --untrained, the network a config "
        "builds before any re-ID training (its model.pretrained backbone and a new head), the "
        "'before training' row of a comparison.",
    )
    add_model_args(p, ("checkpoint", "onnx", "untrained"))
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (eval.rerank)")
    p.add_argument(
        "--png",
        help="draw the genuine / impostor distance histograms with the thresholds of eval.fmrs "
        "(several test sets: one picture each, numbered)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("extract", help="extract query and gallery features to one .npz file")
    add_model_args(p, ("checkpoint", "onnx"))
    p.add_argument("--output", "-o", required=True, help="the .npz file to write")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("synth", help="generate the embedded synthetic dataset (Market-1501 layout)")
    p.add_argument("--root", default="data/synth", help="output folder (default: data/synth)")
    p.add_argument("--train-ids", dest="num_train_ids", type=int, help="training identities")
    p.add_argument("--test-ids", dest="num_test_ids", type=int, help="test identities")
    p.add_argument("--cameras", dest="num_cameras", type=int, help="number of cameras")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("list", help="list models, datasets or config presets")
    p.add_argument("what", choices=("models", "datasets", "presets"))
    p.set_defaults(func=cmd_list)


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


def cmd_eval(args: argparse.Namespace) -> int:
    from attnreid.engine.build import load_targets
    from attnreid.evaluation.evaluate import evaluate
    from attnreid.evaluation.report import results_table, verification_table

    model, cfg = load_model(args)
    source = args.checkpoint or args.onnx
    label = f"{cfg['name']} (untrained)" if args.untrained else Path(source).name
    several = bool(cfg["eval"]["targets"])  # one row per test set, named after it
    rows = []
    for target in load_targets(cfg):
        result = evaluate(model, target, cfg, rerank=args.rerank or None)
        name = target.name if several else label
        if any(name == n for n, _ in rows):
            name = f"{name} ({len(rows) + 1})"
        rows.append((name, result))
        if not args.json:
            print(
                f"{target.name}: {len(target.query)} queries, {len(target.gallery)} gallery "
                f"images ({result.num_skipped_queries} queries without a valid match skipped)"
            )
    if args.json:
        metrics = {name: r.as_dict() for name, r in rows} if several else rows[0][1].as_dict()
        print(json.dumps(metrics, indent=2))
    else:
        print(f"model: {label}\n{results_table(rows)}" if several else results_table(rows))
        print(verification_table(rows))
    if args.png:
        from attnreid.viz.verification import draw_verification

        for n, (name, result) in enumerate(rows):
            if result.verification is None:
                raise ConfigError("--png needs the verification view: set eval.fmrs")
            path = Path(args.png)
            path = path.with_stem(f"{path.stem}_{n + 1}") if len(rows) > 1 else path
            draw_verification(result.verification, path, title=name)
            print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from attnreid.engine.build import load_dataset
    from attnreid.evaluation.evaluate import extract_query_gallery
    from attnreid.evaluation.features import save_features
    from attnreid.utils.device import resolve_device

    model, cfg = load_model(args)
    dataset = load_dataset(cfg)
    sets = extract_query_gallery(model, dataset, cfg, resolve_device(cfg["device"]))
    path = save_features(args.output, sets[0], sets[1])
    print(
        f"wrote {path}: {len(sets[0])} query and {len(sets[1])} gallery features "
        f"of dimension {sets[0].features.shape[1]}"
    )
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from attnreid.data.synth import SynthConfig, generate_synthetic_reid

    given = {k: getattr(args, k) for k in ("num_train_ids", "num_test_ids", "num_cameras", "seed")}
    cfg = SynthConfig(**{k: v for k, v in given.items() if v is not None})
    summary = generate_synthetic_reid(
        args.root, cfg, overwrite=args.overwrite, progress=sys.stderr.isatty()
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "models":
        from attnreid.models import list_models

        print("\n".join(list_models()))
    elif args.what == "datasets":
        from attnreid.data import list_datasets

        print("\n".join(list_datasets()))
    else:
        print("\n".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))))
    return 0
