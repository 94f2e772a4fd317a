"""The attention ablations on CUHK01 from an OSNet x0.25 (MSMT17) start, several seeds each:
each paper's network against its own no-attention baseline rebuilt on OSNet, and each attention
module as a plug-in on the plain OSNet baseline (issue 24; ``--plugins`` runs only those).

    python benchmarks/osnet_ablation.py [--seeds 3] [--presets P ...] [--plugins]

Runs ``attnreid train -c PRESET seed=S output_dir=runs/PRESET/seedS`` for every ``_osnet_cpu``
preset and seed, seed-major (every row gets its first seed before any gets its second), resuming
a run that was interrupted and skipping one that has finished, so the whole table can be built
over several sessions; several copies can share the runs (each takes a run no other live copy
has claimed: ``OMP_NUM_THREADS=1`` twice on 2 cores nearly doubles the throughput). After
each run it records the run's final evaluation (the last row of its ``metrics.json``), the
wall time measured here and the machine in ``benchmarks/results/osnet_ablation.json``
(atomically, under a lock), then prints the table: mean ± sample
std over the finished seeds, and for each attention pair whether the difference of the means
is larger than the seeds' spread (``|diff| > s1 + s2``, the sum of the two rows' std). The
DuATM plug-in ranks with its matching distance; after each of its runs the trained network's
own 512-d feature is scored too (``rank_with = "feature"``), as the row ``...:feature``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from attnreid.engine.runs import KEYS, summarize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.driver import append_row, claim, load_rows  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "osnet_ablation.json"
ROWS = [  # (preset, label); pairs are consecutive rows after the baseline
    ("osnet_x0_25_cuhk01_cpu", "OSNet x0.25 fine-tuned (baseline)"),
    ("sona_bl_dbplus_osnet_cpu", "SONA: BL + DB+"),
    ("sona2_net_osnet_cpu", "SONA: SONA²-Net"),
    ("ccan_g_osnet_cpu", "CCAN: G"),
    ("ccan_osnet_cpu", "CCAN: G + SS + L + CC"),
    ("duatm_avgpool_osnet_cpu", "DuATM: AvePool + l0"),
    ("duatm_osnet_cpu", "DuATM: dual attention + l0 + l1 + l2"),
    ("sa_resnet50_plain_osnet_cpu", "SA-ResNet: plain"),
    ("sa_resnet50_osnet_cpu", "SA-ResNet: self-attention"),
]
PAIRS = [(ROWS[i][0], ROWS[i + 1][0]) for i in range(1, len(ROWS), 2)]
BASELINE = ROWS[0][0]
PLUGINS = [  # each against the plain baseline, with the baseline's recipe
    ("osnet_x0_25_sona2_plugin_cpu", "plug-in: + SONA² (after conv3)"),
    ("osnet_x0_25_ccan_plugin_cpu", "plug-in: + CCAN SS (after conv2) + CC (stripes)"),
    ("osnet_x0_25_sa_plugin_cpu", "plug-in: + SA block (after conv5)"),
    ("osnet_x0_25_duatm_plugin_cpu", "plug-in: + DuATM matching, ranked by it"),
    ("osnet_x0_25_duatm_plugin_cpu:feature", "plug-in: + DuATM losses, ranked by the feature"),
]
ROWS += PLUGINS
PAIRS += [(BASELINE, preset) for preset, _ in PLUGINS]


def _done(name: str, seed: int) -> bool:
    return any(r["preset"] == name and r["seed"] == seed for r in load_rows(RESULTS, "runs"))


def _run(preset: str, seed: int) -> dict:
    out = REPO / "runs" / preset / f"seed{seed}"
    cmd = [sys.executable, "-m", "attnreid.cli.main", "train", "-c", preset, f"seed={seed}"]
    cmd += [f"output_dir={out}", "train.progress=false"]
    if (out / "checkpoints" / "last.ckpt").is_file():
        cmd.append("--resume")
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    minutes = (time.perf_counter() - t0) / 60
    final = json.loads((out / "metrics.json").read_text())["evaluations"][-1]
    return _row(preset, seed, final, minutes, "--resume" in cmd)


def _feature_ranking(preset: str, seed: int) -> dict:
    """The DuATM plug-in's trained network scored by its own 512-d feature."""
    import attnreid
    from attnreid.engine.build import load_dataset

    extractor = attnreid.load(REPO / "runs" / preset / f"seed{seed}" / "checkpoints" / "last.ckpt")
    extractor.model.rank_with = "feature"
    t0 = time.perf_counter()
    result = attnreid.evaluate(extractor.model, load_dataset(extractor.config)).as_dict()
    return _row(f"{preset}:feature", seed, result, (time.perf_counter() - t0) / 60, False)


def _row(preset: str, seed: int, final: dict, minutes: float, resumed: bool) -> dict:
    return {
        "preset": preset,
        "seed": seed,
        "epoch": final.get("epoch"),
        **{k: final[k] for k in KEYS},
        "minutes": round(minutes, 2),
        "resumed": resumed,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or '?'}",
    }


def table(data: dict) -> str:
    runs: dict[str, list[dict]] = {}
    for r in data["runs"]:
        runs.setdefault(r["preset"], []).append(r)
    summary = {preset: summarize(rs) for preset, rs in runs.items()}

    def stat(preset: str, key: str) -> tuple[float, float, int]:
        if preset not in summary:
            return float("nan"), float("nan"), 0
        s = summary[preset][key]
        return 100 * s["mean"], 100 * s["std"], len(runs[preset])

    lines = ["| model | preset | seeds | R1 | R5 | R10 | mAP | mINP | minutes / run |"]
    lines.append("|---" * 9 + "|")
    for preset, label in ROWS:
        cells = []
        for key in KEYS:
            mean, std, n = stat(preset, key)
            cells.append("—" if n == 0 else f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}")
        mins = [r["minutes"] for r in runs.get(preset, [])]
        minutes = f"{statistics.median(mins):.1f}" if mins else "—"
        n = len(runs.get(preset, []))
        lines.append(f"| {label} | `{preset}` | {n} | " + " | ".join(cells) + f" | {minutes} |")
    lines.append("")
    for plain, attn in PAIRS:
        for key in ("rank1", "mAP"):
            (m1, s1, n1), (m2, s2, n2) = stat(plain, key), stat(attn, key)
            if min(n1, n2) == 0:
                continue
            if min(n1, n2) < 2:
                verdict = "undecided: one seed has no spread to compare with"
            else:
                where = "beyond" if abs(m2 - m1) > s1 + s2 else "within"
                verdict = f"{where} the seeds' spread {s1 + s2:.1f}"
            lines.append(
                f"- {attn} vs {plain}, {key}: {m2 - m1:+.1f} ({verdict}; {n1} and {n2} seeds)"
            )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    trained = [r[0] for r in ROWS if ":" not in r[0]]
    p.add_argument("--presets", nargs="*", default=trained)
    p.add_argument("--plugins", action="store_true", help="the baseline and the plug-ins only")
    p.add_argument("--first-seed", type=int, default=0, help="start at this seed")
    p.add_argument("--table", action="store_true", help="only print the table")
    args = p.parse_args()
    plugins = [BASELINE, *(r[0] for r in PLUGINS if ":" not in r[0])]
    presets = plugins if args.plugins else args.presets
    if not args.table:
        for seed in range(args.first_seed, args.seeds):
            for preset in presets:
                with claim(REPO / "runs" / preset / f"seed{seed}") as mine:
                    for name, make in ((preset, _run), (f"{preset}:feature", _feature_ranking)):
                        extra = make is _feature_ranking and name not in dict(ROWS)
                        if not mine or extra or _done(name, seed):
                            continue
                        row = make(preset, seed)
                        append_row(RESULTS, "runs", row)
                        print(json.dumps(row), flush=True)
    print(table({"runs": load_rows(RESULTS, "runs")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
