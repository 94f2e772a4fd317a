""" "Which model should I use?": rank-1 against CPU time per image for every OSNet-start row.

    python benchmarks/plot_choice.py [--latency benchmarks/results/latency_osnet.json]
        [-o docs/choice.png]

Reads the seeded CUHK01 results of ``benchmarks/osnet_ablation.py``
(``benchmarks/results/osnet_ablation.json``: mean ± sample std of rank-1 over the seeds) and
the forward times of ``attnreid bench latency --json`` run on the same presets (batch 1,
interleaved; the JSON written to ``--latency``), draws rank-1 (error bars: ± one std) against
the median milliseconds per image with matplotlib, writes the PNG and prints the Markdown
table (with parameters and GFLOPs). Every number comes from those two files, measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from attnreid.utils.io import atomic_write

REPO = Path(__file__).resolve().parents[1]
ZOOM_MS = 20  # plug-ins faster than this are drawn again in the inset, beside the plain model
GROUPS = {  # preset -> (label, group)
    "osnet_x0_25_cuhk01_cpu": ("OSNet x0.25 (plain)", "plain"),
    "sona_bl_dbplus_osnet_cpu": ("SONA BL + DB+", "paper baseline"),
    "sona2_net_osnet_cpu": ("SONA²-Net", "paper network"),
    "ccan_g_osnet_cpu": ("CCAN G", "paper baseline"),
    "ccan_osnet_cpu": ("CCAN", "paper network"),
    "duatm_avgpool_osnet_cpu": ("DuATM AvePool", "paper baseline"),
    "duatm_osnet_cpu": ("DuATM", "paper network"),
    "sa_resnet50_plain_osnet_cpu": ("SA plain", "paper baseline"),
    "sa_resnet50_osnet_cpu": ("SA-ResNet", "paper network"),
    "osnet_x0_25_sona2_plugin_cpu": ("+ SONA² plug-in", "plug-in"),
    "osnet_x0_25_ccan_plugin_cpu": ("+ CCAN plug-in", "plug-in"),
    "osnet_x0_25_sa_plugin_cpu": ("+ SA plug-in", "plug-in"),
    "osnet_x0_25_duatm_plugin_cpu": ("+ DuATM plug-in (matching)", "plug-in"),
    "osnet_x0_25_duatm_plugin_cpu:feature": ("+ DuATM plug-in (feature)", "plug-in"),
}
OFFSET = {"osnet_x0_25_duatm_plugin_cpu:feature": (6, 6), "osnet_x0_25_sona2_plugin_cpu": (6, -12)}
STYLE = {"plain": ("black", "o"), "paper baseline": ("tab:gray", "s"),
         "paper network": ("tab:blue", "D"), "plug-in": ("tab:red", "^")}  # fmt: skip


def _stat(rows: list[dict], key: str) -> tuple[float, float]:
    """Mean and sample std (0 for one seed) of ``key``, in percent."""
    values = [100 * r[key] for r in rows]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f} (one seed)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(REPO / "benchmarks/results/osnet_ablation.json"))
    p.add_argument("--latency", default=str(REPO / "benchmarks/results/latency_osnet.json"))
    p.add_argument("--output", "-o", default=str(REPO / "docs/choice.png"))
    args = p.parse_args()
    runs: dict[str, list[dict]] = {}
    for r in json.loads(Path(args.results).read_text())["runs"]:
        runs.setdefault(r["preset"], []).append(r)
    latency = {row["label"]: row for row in json.loads(Path(args.latency).read_text())}
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    inset = ax.inset_axes((0.3, 0.06, 0.42, 0.5))  # the plain model and its cheap plug-ins
    lines = ["| model | group | seeds | R1 | mAP | ms / image | params (M) | GFLOPs |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for preset, (label, group) in GROUPS.items():
        timed = preset.split(":")[0]  # a re-scored row runs its network's forward
        if preset not in runs or timed not in latency:
            continue
        lat, n = latency[timed], len(runs[preset])
        (mean, std), m_ap = (_stat(runs[preset], k) for k in ("rank1", "mAP"))
        colour, marker = STYLE[group]
        first = group not in ax.get_legend_handles_labels()[1]
        x = lat["median_ms"]
        zoomed = group in ("plain", "plug-in") and x < ZOOM_MS
        for where in (ax, inset) if zoomed else (ax,):
            where.errorbar(x, mean, yerr=std, fmt=marker, color=colour, capsize=3,
                           label=group if first and where is ax else None)  # fmt: skip
        target = inset if zoomed else ax
        target.annotate(label, (x, mean), textcoords="offset points",
                        xytext=OFFSET.get(preset, (6, -3)), fontsize=7)  # fmt: skip
        lines.append(
            f"| {label} (`{preset}`) | {group} | {n} | {_cell(mean, std, n)} | {_cell(*m_ap, n)} | "
            f"{lat['median_ms']:.1f} | {lat['params_m']:.2f} | {lat['gflops']:.2f} |"
        )
    ax.set_xlabel("CPU time per image, batch 1 (ms, median; this machine, 2 threads)")
    ax.set_ylabel("CUHK01 rank-1 (%), mean ± std over training seeds")
    ax.set_title("OSNet x0.25 (MSMT17 start) on CUHK01: accuracy against time")
    ax.grid(alpha=0.3)
    inset.margins(x=0.6, y=0.12)  # room for the labels
    inset.tick_params(labelsize=7)
    inset.grid(alpha=0.3)
    ax.indicate_inset_zoom(inset, edgecolor="gray")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix.lstrip('.') or 'png'))
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
