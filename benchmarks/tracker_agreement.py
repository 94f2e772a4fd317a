"""What a tracker gets from an attnreid model: BoxMOT's two routes against ``attnreid eval``.

    python benchmarks/tracker_agreement.py [--crops 200] [--boxmot-python PYTHON]

OSNet x0.25 with torchreid's MSMT17 weights (``../shared/weights``; needs ``../shared``) at
256x128, on real CUHK01 crops read by OpenCV (BGR), measured here:

* **ONNX route**: ``attnreid export onnx`` (defaults: ImageNet input, flip inside the graph)
  fed exactly as BoxMOT's ONNX backend feeds a re-ID graph (``boxmot_features`` of
  ``tests/retrieval/test_deploy.py``: cv2 INTER_LINEAR resize, RGB, / 255, ImageNet mean /
  std), against the features ``attnreid eval`` scores (``FeatureExtractor``, PIL bilinear
  resize, flip averaging): cosine min / median.
* **torchreid route** (``attnreid export torchreid``: BoxMOT builds torchreid's OSNet and never
  flips): the same network without flip on BoxMOT's cv2 preprocessing (the export loads key
  for key into torchreid's forward, to 1e-5: the tests) against ``FeatureExtractor`` without
  flip (the resize alone) and with flip (what the missing flip changes).
* **BoxMOT itself** (``--boxmot-python``: an interpreter with BoxMOT installed, never a
  dependency of attnreid; a throw-away venv, see below): the crops pasted into one frame, with
  their boxes, given to BoxMOT's own re-ID runtime (``run_boxmot`` of the same test file:
  ``boxmot.reid.core.ReID(weights=...).model.get_features(boxes, frame)``, the call its
  trackers make) for both exported files; its features against attnreid's, and against the
  emulation above.
* What the flip costs in accuracy: ``attnreid eval --untrained`` of the preset (the MSMT17
  network before fine-tuning) on the CUHK01 test split, with ``eval.flip`` true and false.

A BoxMOT to check against: ``make boxmot`` installs BoxMOT 25.0.0 in ``.venv-boxmot`` (a
throw-away venv borrowing ``.venv``'s torch), then::

    python benchmarks/tracker_agreement.py --boxmot-python .venv-boxmot/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_serve import SHARED, osnet_checkpoint  # noqa: E402
from tests.retrieval.test_deploy import (  # noqa: E402
    boxmot_features,
    boxmot_frame,
    boxmot_input,
    run_boxmot,
)

import attnreid  # noqa: E402
from attnreid.cli.main import main as cli  # noqa: E402

PRESET = "osnet_x0_25_cuhk01_cpu"


def _cos(a: np.ndarray, b: np.ndarray) -> str:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    c = (a * (b / np.linalg.norm(b, axis=1, keepdims=True))).sum(1)
    return f"cosine min {c.min():.4f}, median {np.median(c):.4f}"


def _eval(flip: bool) -> dict:
    cmd = [sys.executable, "-m", "attnreid.cli.main", "eval", "-c", PRESET, "--untrained",
           "--json", f"eval.flip={str(flip).lower()}"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> int:
    import cv2

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crops", type=int, default=200)
    p.add_argument("--boxmot-python", help="an interpreter with BoxMOT installed (see above)")
    args = p.parse_args()
    files = sorted((SHARED / "data" / "cuhk01" / "campus").glob("*.png"))
    if not files:
        print(f"needs the CUHK01 crops of {SHARED}/data/cuhk01", file=sys.stderr)
        return 2
    crops = [cv2.imread(str(f)) for f in files[:: max(1, len(files) // args.crops)][: args.crops]]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = osnet_checkpoint(Path(tmp))
        onnx, pt = Path(tmp) / "osnet_x0_25_mine.onnx", Path(tmp) / "osnet_x0_25_mine.pt"
        assert cli(["export", "onnx", "--checkpoint", str(ckpt), "-o", str(onnx)]) == 0
        assert cli(["export", "torchreid", "--checkpoint", str(ckpt), "-o", str(pt)]) == 0
        extractor = attnreid.load(ckpt, device="cpu")
        with_flip = extractor(crops, channels="BGR")
        print(f"{len(crops)} CUHK01 crops, OSNet x0.25 (MSMT17 weights) at 256x128, measured here")
        onnx_route = boxmot_features(onnx, crops)
        print(f"ONNX route (BoxMOT's ONNX preprocessing) vs attnreid eval's features: "
              f"{_cos(onnx_route, with_flip)}")  # fmt: skip
        extractor.flip = False
        x = torch.from_numpy(boxmot_input(crops, *extractor.size))
        pt_route = extractor.forward(x).numpy()  # forward runs without gradients
        without_flip = extractor(crops, channels="BGR")
        print(f"torchreid route (no flip, cv2 resize) vs FeatureExtractor without flip: "
              f"{_cos(pt_route, without_flip)}")  # fmt: skip
        print(f"torchreid route vs attnreid eval's features (with flip): "
              f"{_cos(pt_route, with_flip)}")  # fmt: skip
        if args.boxmot_python:
            boxmot_frame(crops, Path(tmp))
            (b_onnx, b_pt), printed = run_boxmot(
                Path(args.boxmot_python), Path(tmp), [onnx.name, pt.name]
            )
            print("BoxMOT", printed.strip().replace("\n", "; "))
            print(f"BoxMOT's ONNX backend vs attnreid eval's features: {_cos(b_onnx, with_flip)}; "
                  f"vs the emulation above: {_cos(b_onnx, onnx_route)}")  # fmt: skip
            print(f"BoxMOT's PyTorch backend (.pt) vs FeatureExtractor without flip: "
                  f"{_cos(b_pt, without_flip)}; vs the emulation above: "
                  f"{_cos(b_pt, pt_route)}")  # fmt: skip
    for flip in (True, False):
        r = _eval(flip)
        print(f"CUHK01 test, the MSMT17 network untrained, eval.flip={flip}: "
              f"R1 {100 * r['rank1']:.1f}, mAP {100 * r['mAP']:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
