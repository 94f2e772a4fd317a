"""``attnreid viz``: figures from a trained model. Sub-commands: ``attention``.

``attnreid viz attention --checkpoint C --image Q.jpg [--point Y,X] [-o out.png]`` opens the
model of an attnreid checkpoint (:func:`attnreid.load`), resizes and normalises the image as
its config does for testing, asks the model for its attention maps (``attention_maps``,
implemented by every model with attention) and draws them over the image
(:func:`attnreid.viz.draw_attention`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attnreid.cli import viz_results
from attnreid.cli.options import add_model_args, load_model


def register(sub: Any) -> None:
    p = sub.add_parser(
        "viz",
        help="draw figures from a trained model (attention maps)",
        description="Draw figures from a trained model. Example: attnreid viz attention "
        "--checkpoint runs/sa_resnet50_cpu/checkpoints/last.ckpt --image query.jpg",
    )
    vsub = p.add_subparsers(dest="viz_command", metavar="WHAT", required=True)
    _register_attention(vsub)
    viz_results.register(vsub)  # ranks, cmc


def _parse_point(text: str) -> tuple[float, float]:
    try:
        y, x = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected Y,X (two numbers in [0, 1], e.g. 0.3,0.5), got {text!r}"
        ) from None
    if not (0.0 <= y <= 1.0 and 0.0 <= x <= 1.0):
        raise argparse.ArgumentTypeError(f"Y and X must lie in [0, 1], got {text!r}")
    return y, x


def _register_attention(vsub: Any) -> None:
    p = vsub.add_parser(
        "attention",
        help="overlay a model's attention maps on an image (PNG)",
        description="Overlay the attention maps of a trained model on an image, one panel per "
        "attention module (like Fig. 11 of SA-ResNet). Without --point a map shows the mean "
        "attention each position receives; with --point Y,X (fractions of the image height "
        "and width) it shows the attention of the feature position under that point.",
    )
    add_model_args(p, ("checkpoint",))
    p.add_argument("--image", required=True, help="the image to draw the attention of")
    p.add_argument(
        "--point",
        type=_parse_point,
        default=None,
        metavar="Y,X",
        help="query point in [0, 1] image coordinates, e.g. 0.3,0.5 (default: mean attention)",
    )
    p.add_argument(
        "--output",
        "-o",
        default=None,
        help="the PNG to write (default: IMAGE_NAME_attention.png in the current folder)",
    )
    p.add_argument("--scale", type=int, default=2, help="panel magnification (default: 2)")
    p.set_defaults(func=cmd_viz_attention)


def cmd_viz_attention(args: argparse.Namespace) -> int:
    from attnreid.data.images import read_image
    from attnreid.utils.checks import positive_int
    from attnreid.viz.attention import draw_attention, model_attention

    positive_int(args.scale, "--scale")
    extractor = load_model(args)
    shown, maps = model_attention(extractor, read_image(args.image), args.point)
    out = Path(args.output) if args.output else Path(f"{Path(args.image).stem}_attention.png")
    path = draw_attention(shown, maps, out, query_point=args.point, scale=args.scale)
    sizes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in maps.items())
    height, width = extractor.size
    print(
        f"wrote {path}: {extractor.model_name} attention maps ({sizes}) over a "
        f"{height}x{width} input"
    )
    return 0
