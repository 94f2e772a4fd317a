"""Where the points go: from the plain OSNet x0.25 baseline to each paper's no-attention
baseline on OSNet, one change at a time, on the CUHK01 validation split (issue 24).

    python benchmarks/osnet_steps.py [--table] [--families DuATM SONA ...]

Every step is the previous step's config with one group of settings taken from the family's
target preset (the head, the losses, the input size, the augmentation, the schedule, the test
settings, in that order), trained once (seed 0) on the training identities left after 100 are
held out as a validation query / gallery (``data.validation_ids=100``, seed 0; the test split is
never read), and evaluated once after its last epoch. A step marked "test" changes only how the
previous step's network is evaluated: it is scored again from that checkpoint. The last step
of a family is its target preset, trained on the validation split: the script checks that no
other setting differs. Results go to ``benchmarks/results/osnet_steps.json`` (atomically,
resuming and skipping finished steps; several copies share the work, each taking a family no
other live copy has claimed) and the table is printed, with each step's change in
rank-1 and mAP: one run each, so a step of a point or two is within the seeds' noise (the test
table's seeds spread by 0.4-2.5 R1).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from attnreid.config import dump_config, load_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.driver import append_row, claim, load_rows  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "osnet_steps.json"
BASE = "osnet_x0_25_cuhk01_cpu"
VALIDATION = {"validation_ids": 100, "validation_seed": 0}
HEAD = ("head", ["model.name", "model.options"])
FAMILIES: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {
    "SONA": (
        "sona_bl_dbplus_osnet_cpu",
        [
            HEAD,
            ("losses", ["loss"]),
            ("augmentation", ["data.transforms"]),
            ("schedule", ["sched"]),
        ],
    ),
    "CCAN": (
        "ccan_g_osnet_cpu",
        [
            HEAD,
            ("losses", ["loss"]),
            ("augmentation", ["data.transforms"]),
            ("schedule", ["optim", "sched", "train.max_epochs"]),
            ("test", ["eval.flip"]),
        ],
    ),
    "DuATM": (
        "duatm_avgpool_osnet_cpu",
        [
            HEAD,
            ("losses", ["loss"]),
            ("input size", ["data.height", "data.width", "data.num_identities"]),
            ("augmentation", ["data.transforms"]),
            ("schedule", ["sched", "train.max_epochs", "train.freeze_backbone_epochs"]),
            ("test", ["eval.flip"]),
        ],
    ),
    "SA-ResNet": (
        "sa_resnet50_plain_osnet_cpu",
        [
            HEAD,
            ("augmentation", ["data.transforms"]),
            ("batch and schedule", ["data.num_identities", "sched"]),
            ("test", ["eval.flip"]),
        ],
    ),
}
#: What may differ between a family's last step and its target preset: names and bookkeeping.
BOOKKEEPING = {"name", "output_dir", "train.eval_every", "train.checkpoint_every"}
KEYS = ("rank1", "mAP")


def _get(cfg: dict, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _set(cfg: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        cfg = cfg[part]
    cfg[last] = copy.deepcopy(value)


def _leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(cfg, dict) or not cfg or prefix in ("model.options",):
        return {prefix: cfg}
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if not k.startswith("_"):
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else k))
    return out


def steps() -> list[dict[str, Any]]:
    """Every step: ``{"id", "family", "label", "config", "eval_only"}`` (the baseline first)."""
    base = load_config(BASE)
    base["data"].update(VALIDATION)
    base["name"], base["output_dir"] = "baseline", str(REPO / "runs" / "steps" / "baseline")
    out = [{"id": "baseline", "family": "all", "label": "plain OSNet x0.25", "config": base}]
    for family, (target_name, groups) in FAMILIES.items():
        target, cfg = load_config(target_name), copy.deepcopy(base)
        for n, (label, keys) in enumerate(groups, start=1):
            cfg = copy.deepcopy(cfg)
            for key in keys:
                _set(cfg, key, _get(target, key))
            step_id = f"{family.lower().replace('-', '')}{n}"
            cfg["name"], cfg["output_dir"] = step_id, str(REPO / "runs" / "steps" / step_id)
            cfg["train"]["eval_every"] = cfg["train"]["max_epochs"]  # once, at the end
            label = f"{label}: {', '.join(keys)}"
            step = {"id": step_id, "family": family, "label": label, "config": cfg}
            out.append({**step, "eval_only": label.startswith("test")})
        left = {
            k
            for k, v in _leaves(target).items()
            if k not in BOOKKEEPING and not k.startswith("data.validation") and _leaves(cfg)[k] != v
        }
        if left:
            raise SystemExit(f"{family}: the steps leave {sorted(left)} unlike {target_name}")
    return out


def _run(step: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    cfg = step["config"]
    out = Path(cfg["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if step.get("eval_only"):
        ckpt = Path(previous["config"]["output_dir"]) / "checkpoints" / "last.ckpt"
        cmd = ["eval", "--checkpoint", str(ckpt), "--json", f"eval.flip={cfg['eval']['flip']}"]
        done = subprocess.run([sys.executable, "-m", "attnreid.cli.main", *cmd], cwd=REPO,
                              check=True, capture_output=True, text=True)  # fmt: skip
        final = json.loads(done.stdout)
    else:
        (out / "step.yaml").write_text(dump_config(cfg))
        cmd = ["train", "-c", str(out / "step.yaml"), "train.progress=false"]
        if (out / "checkpoints" / "last.ckpt").is_file():
            cmd.append("--resume")
        subprocess.run([sys.executable, "-m", "attnreid.cli.main", *cmd], cwd=REPO, check=True)
        final = json.loads((out / "metrics.json").read_text())["evaluations"][-1]
    return {
        "id": step["id"],
        "family": step["family"],
        "label": step["label"],
        **{k: final[k] for k in (*KEYS, "rank5", "mINP")},
        "minutes": round((time.perf_counter() - t0) / 60, 2),
        "date": time.strftime("%Y-%m-%d"),
    }


def table(rows: list[dict[str, Any]]) -> str:
    by_id = {r["id"]: r for r in rows}
    lines = ["| family | step | change (settings taken from the target) | R1 | mAP | ΔR1 | ΔmAP |"]
    lines.append("|---" * 7 + "|")
    prev: dict[str, Any] | None = None
    for step in steps():
        if step["family"] != (prev or {}).get("family") and step["id"] != "baseline":
            prev = by_id.get("baseline")
        r = by_id.get(step["id"])
        if r is None:
            lines.append(f"| {step['family']} | `{step['id']}` | {step['label']} | — | — | | |")
            continue
        delta = [f"{100 * (r[k] - prev[k]):+.1f}" if prev else "" for k in KEYS]
        values = [f"{100 * r[k]:.1f}" for k in KEYS]
        lines.append(
            f"| {step['family']} | `{step['id']}` | {step['label']} | "
            + " | ".join(values + delta)
            + " |"
        )
        prev = r
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="store_true", help="only print the table")
    p.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES),
                   help="which families to run, in this order (after the baseline)")  # fmt: skip
    args = p.parse_args()
    all_steps = steps()
    for family in [] if args.table else ["all", *args.families]:
        with claim(REPO / "runs" / "steps" / f"family-{family}") as mine:
            previous = all_steps[0]
            for step in (s for s in all_steps if mine and s["family"] == family):
                if not any(r["id"] == step["id"] for r in load_rows(RESULTS, "steps")):
                    row = _run(step, previous)
                    append_row(RESULTS, "steps", row)
                    print(json.dumps(row), flush=True)
                previous = step
    print(table(load_rows(RESULTS, "steps")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
