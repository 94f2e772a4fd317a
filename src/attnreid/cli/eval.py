"""``attnreid eval``: evaluate a model on its test sets (CMC, mAP, mINP, verification)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnreid.cli.options import add_model_args, load_model
from attnreid.errors import ConfigError


def register(sub: Any) -> None:
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


def cmd_eval(args: argparse.Namespace) -> int:
    from attnreid.engine.build import load_targets
    from attnreid.evaluation.evaluate import evaluate
    from attnreid.evaluation.report import results_table, verification_table

    extractor = load_model(args)
    model, cfg = extractor.model, extractor.config
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
