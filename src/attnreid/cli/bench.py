"""``attnreid bench latency``: single-image forward time of a preset's model, and of variants.

    attnreid bench latency -c sona2_net --compare "BL:model.name=sona_bl"

Each ``--compare`` is ``LABEL:KEY=VALUE[,KEY=VALUE...]`` (overrides of the main config) or the
name of another preset; the table gives each model's median time and its difference to the
first row. The models are timed interleaved (one forward of each per round), so that a change
in machine load falls on all rows alike. Weights are random (``model.pretrained`` is ignored):
timing does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

from attnreid.cli.options import add_model_args
from attnreid.config import load_config
from attnreid.errors import ConfigError


def register(sub: Any) -> None:
    bench = sub.add_parser("bench", help="measure inference time")
    bsub = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    p = bsub.add_parser(
        "latency",
        help="median forward time of a preset's model at its input size",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p, (), config="required")
    p.add_argument(
        "--compare", action="append", default=[], metavar="LABEL:K=V,...|PRESET",
        help="another model to time: overrides of the main config, or a preset (repeatable)",
    )
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--repeats", type=int, default=30, help="timed forwards (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed forwards first (default 5)")
    p.add_argument("--num-classes", type=int, default=751, help="classifier size (default 751)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_latency)


def _variants(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    main = load_config(args.config, args.overrides)
    out = [(str(main["name"]), main)]
    for spec in args.compare:
        if ":" in spec and "=" in spec:
            label, _, rest = spec.partition(":")
            out.append((label, load_config(args.config, [*args.overrides, *rest.split(",")])))
        elif "=" not in spec:
            cfg = load_config(spec, args.overrides)
            out.append((str(cfg["name"]), cfg))
        else:
            raise ConfigError(f"--compare {spec!r} must be LABEL:KEY=VALUE[,...] or a preset name")
    return out


def cmd_latency(args: argparse.Namespace) -> int:
    import torch

    from attnreid.engine.build import build_model_from_config
    from attnreid.engine.latency import measure_latencies
    from attnreid.utils.device import resolve_device

    variants = _variants(args)
    models = []
    for _label, cfg in variants:
        cfg["model"]["pretrained"] = "none"
        models.append(build_model_from_config(cfg, args.num_classes))
    sizes = [(cfg["data"]["height"], cfg["data"]["width"]) for _, cfg in variants]
    lats = measure_latencies(
        models, sizes, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
        device=resolve_device(variants[0][1]["device"]),
    )
    rows = [(label, lat) for (label, _), lat in zip(variants, lats)]
    if args.json:
        print(json.dumps([{"label": label, **lat.as_dict()} for label, lat in rows], indent=2))
        return 0
    first = rows[0][1].median_ms
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {rows[0][1].threads} threads, device {rows[0][1].device}"
    )
    print("| model | input | batch | median ms | IQR ms | vs first | params (M) | GFLOPs |")
    print("|---|---|---|---|---|---|---|---|")
    for label, lat in rows:
        rel = f"{100 * (lat.median_ms / first - 1):+.1f}%"
        print(
            f"| {label} | {lat.height}x{lat.width} | {lat.batch} | {lat.median_ms:.1f} | "
            f"{lat.q1_ms:.1f}-{lat.q3_ms:.1f} | {rel} | {lat.params_m:.2f} | {lat.gflops:.2f} |"
        )
    return 0
