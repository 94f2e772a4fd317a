"""Several training runs of one config, reported as mean ± std (as the papers' tables).

``train_seeds(cfg, seeds)`` trains the config once per seed, each in
``output_dir/seed<N>`` (so every run can be resumed on its own), and summarises the final
evaluation of each run: mean and sample standard deviation (ddof = 1) of rank-1/5/10, mAP and
mINP. ``vary_split=True`` also sets ``data.options.split_seed`` to the seed, for datasets
evaluated over random identity splits (CUHK01).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from attnreid.engine.train import train
from attnreid.utils.io import atomic_write_text

KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{metric: {"mean": m, "std": s}}`` over runs (std with ddof = 1, 0 for one run)."""
    out = {}
    for key in KEYS:
        values = np.array([float(r[key]) for r in results])
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[key] = {"mean": float(values.mean()), "std": std}
    return out


def format_summary(label: str, summary: dict[str, dict[str, float]], runs: int) -> str:
    cells = " | ".join(
        f"{100 * summary[k]['mean']:.1f} ± {100 * summary[k]['std']:.1f}" for k in KEYS
    )
    return f"| {label} ({runs} runs) | {cells} |"


def train_seeds(
    cfg: dict[str, Any],
    seeds: list[int],
    *,
    resume: bool = False,
    vary_split: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` once per seed; returns per-run results and the mean ± std summary."""
    base_out = Path(cfg["output_dir"])
    runs = []
    for seed in seeds:
        run_cfg = copy.deepcopy(cfg)
        run_cfg["seed"] = seed
        run_cfg["output_dir"] = str(base_out / f"seed{seed}")
        if vary_split:
            run_cfg["data"]["options"] = {**run_cfg["data"]["options"], "split_seed": seed}
        last = Path(run_cfg["output_dir"]) / "checkpoints" / "last.ckpt"
        result = train(run_cfg, resume=True if resume and last.is_file() else None)
        final = result["evaluations"][-1]
        runs.append({"seed": seed, **{k: final[k] for k in KEYS}, "epoch": final["epoch"]})
    summary = summarize(runs)
    report = {"runs": runs, "summary": summary}
    atomic_write_text(base_out / "runs.json", json.dumps(report, indent=2))
    return report
