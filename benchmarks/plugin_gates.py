"""How much each trained plug-in uses its attention module (issue 24).

    python benchmarks/plugin_gates.py [--runs runs]

For every finished plug-in run of ``benchmarks/osnet_ablation.py``
(``RUNS/osnet_x0_25_{sona2,ccan,sa}_plugin_cpu/seedS/checkpoints/last.ckpt``) it prints the
values the residual branches start from at zero and end at after training (SONA²: the mean
``|p|`` of its output projection; CCAN: the two gates ``gamma``; SA: ``alpha``), and scores
the trained network on its test split twice: as trained (checked against the run's own
``metrics.json``), and with the branch switched off
(that value set back to 0, the rest of the trained network unchanged). A module the network
relies on costs accuracy when switched off; one it leaves unused costs nothing. Results go to
``benchmarks/results/plugin_gates.json`` (atomically, after each run; a run measured before
is skipped). The DuATM plug-in is not here: its
module is a distance, scored beside the feature by ``osnet_ablation.py`` itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import attnreid
from attnreid.engine.build import load_dataset
from attnreid.utils.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "plugin_gates.json"
#: plug-in -> the parameters (name suffixes under ``plugins.``) that switch its branch off at 0
SWITCHES = {"sona2": (".p.weight", ".p.bias"), "ccan": (".gamma",), "sa": (".alpha",)}


def _score(model: torch.nn.Module, dataset) -> dict[str, float]:
    result = attnreid.evaluate(model, dataset).as_dict()
    return {k: round(100 * result[k], 2) for k in ("rank1", "mAP")}


def measure(ckpt: Path, plugin: str) -> dict:
    extractor = attnreid.load(ckpt)
    model, dataset = extractor.model, load_dataset(extractor.config)
    switches = {
        name: p
        for name, p in model.named_parameters()
        if ".plugins." in f".{name}" and name.endswith(SWITCHES[plugin])
    }
    if not switches:
        raise SystemExit(f"{ckpt}: no {SWITCHES[plugin]} parameters in its plug-ins")
    values = {n: round(float(p.abs().mean()), 5) for n, p in switches.items()}
    on = _score(model, dataset)
    with torch.no_grad():
        for p in switches.values():
            p.zero_()
    off = _score(model, dataset)
    return {"mean |value|": values, "trained": on, "switched off": off}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(REPO / "runs"))
    args = p.parse_args()
    rows = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    done = {(r["plugin"], r["seed"]) for r in rows}
    for plugin in SWITCHES:
        pattern = f"osnet_x0_25_{plugin}_plugin_cpu/seed*/checkpoints/last.ckpt"
        for ckpt in sorted(Path(args.runs).glob(pattern)):
            seed = int(ckpt.parents[1].name.removeprefix("seed"))
            run = ckpt.parents[1]
            if (
                (plugin, seed) in done
                or (run / ".claimed").exists()
                or not (run / "metrics.json").is_file()
            ):
                continue  # measured before, or still training
            row = {"plugin": plugin, "seed": seed, **measure(ckpt, plugin)}
            final = json.loads((run / "metrics.json").read_text())["evaluations"][-1]
            if abs(100 * final["rank1"] - row["trained"]["rank1"]) > 0.05:
                raise SystemExit(f"{run}: scored {row['trained']} here, its metrics.json {final}")
            rows.append(row)
            print(json.dumps(rows[-1]), flush=True)
            atomic_write_text(RESULTS, json.dumps(rows, indent=1) + "\n")
    print("| plug-in | seed | mean abs value at the end (0 at the start) | R1 / mAP trained | "
          "R1 / mAP switched off |\n|---|---|---|---|---|")  # fmt: skip
    for r in sorted(rows, key=lambda r: (list(SWITCHES).index(r["plugin"]), r["seed"])):
        vals = ", ".join(f"{n.split('plugins.')[-1]} {v:g}" for n, v in r["mean |value|"].items())
        on, off = r["trained"], r["switched off"]
        print(f"| {r['plugin']} | {r['seed']} | {vals} | {on['rank1']:.1f} / {on['mAP']:.1f} | "
              f"{off['rank1']:.1f} / {off['mAP']:.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
