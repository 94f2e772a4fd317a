"""INT8 vs float ONNX of trained checkpoints: speed in onnxruntime and the change in accuracy.

    python benchmarks/bench_int8.py CKPT [CKPT ...] [--quantisation-crops 256] [--batch 16]

For each checkpoint (a trained run's ``last.ckpt``): ``attnreid export onnx`` (float) and
``attnreid export onnx --int8`` (onnxruntime static quantisation, calibrated on
``--quantisation-crops`` crops of the preset's training split), images/s of both in onnxruntime
(random 0-255 input of the preset's size, batch ``--batch``, the machine's threads, after a
warm-up, at least ``--seconds`` s each), and ``attnreid eval`` of the checkpoint, the float
ONNX model and the INT8 model on the preset's test split (its own evaluation settings). Prints
the machine and a Markdown table; every figure is measured by this run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import images_per_second
from bench_metrics import machine

from attnreid.models.exported import OnnxModel, read_onnx_metadata

CLI = [sys.executable, "-m", "attnreid.cli.main"]


def _run(*args: str) -> str:
    return subprocess.run([*CLI, *args], check=True, capture_output=True, text=True).stdout


def _eval(kind: str, path: Path) -> dict:
    return json.loads(_run("eval", f"--{kind}", str(path), "--json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--quantisation-crops", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine().items()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in args.checkpoints:
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            _run("export", "onnx", "--checkpoint", str(ckpt), "-o", str(fp32))
            _run("export", "onnx", "--checkpoint", str(ckpt), "-o", str(int8), "--int8",
                 "--quantisation-crops", str(args.quantisation_crops))  # fmt: skip
            meta = read_onnx_metadata(fp32)
            x = torch.rand(args.batch, 3, *meta["input_size"]) * 255
            speed = [
                images_per_second(OnnxModel(p), x, args.warmup, args.seconds) for p in (fp32, int8)
            ]
            acc = [_eval("checkpoint", ckpt), _eval("onnx", fp32), _eval("onnx", int8)]
            name = meta["config"]["name"]
            row = (name, *speed, *acc, fp32.stat().st_size, int8.stat().st_size)
            print(f"{name}: float {speed[0]:.1f} img/s, INT8 {speed[1]:.1f} img/s; "
                  + "; ".join(f"R1 {a['rank1']:.4f} mAP {a['mAP']:.4f}" for a in acc))  # fmt: skip
            rows.append(row)
    print(f"\nMarkdown table (batch {args.batch}, {torch.get_num_threads()} threads):")
    print("| model | float img/s | INT8 img/s | speed-up | R1 PyTorch / float / INT8 | "
          "mAP PyTorch / float / INT8 | file MB float / INT8 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, s32, s8, pt, f32, q8, b32, b8 in rows:
        r1 = " / ".join(f"{100 * a['rank1']:.1f}" for a in (pt, f32, q8))
        ap = " / ".join(f"{100 * a['mAP']:.1f}" for a in (pt, f32, q8))
        print(f"| {name} | {s32:.1f} | {s8:.1f} | {s8 / s32:.2f}x | {r1} | {ap} | "
              f"{b32 / 2**20:.1f} / {b8 / 2**20:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
