"""``attnreid list``: the registered models, datasets and config presets."""

from __future__ import annotations

import argparse
from typing import Any

from attnreid.config import CONFIG_DIR


def register(sub: Any) -> None:
    p = sub.add_parser("list", help="list models, datasets or config presets")
    p.add_argument("what", choices=("models", "datasets", "presets"))
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "models":
        from attnreid.models import list_models

        print("\n".join(list_models()))
    elif args.what == "datasets":
        from attnreid.data import list_datasets

        print("\n".join(list_datasets()))
    else:
        print("\n".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))))
    return 0
