"""``attnreid data stats | prepare``: inspect a dataset folder, run its one-time preparation.

``stats`` loads the dataset as training would, prints identities / images (tracklets and
frames for video) / cameras per split, and compares them with the published numbers: one
``warning:`` line (on stderr) per difference; the exit status is 0 either way (2 if the folder
does not load). ``prepare`` runs the steps a dataset needs once — for CUHK03, extracting the
labeled and detected images from ``cuhk03_release/cuhk-03.mat`` with a progress bar
(idempotent, safe to interrupt); for the others there is nothing to do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from attnreid.errors import ConfigError, DatasetError


def _options(pairs: list[str]) -> dict[str, Any]:
    from attnreid.config import yaml_load

    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"--option {item!r} must look like key=value (e.g. images=detected)")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml_load(raw) if raw else ""
    return out


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="dataset statistics and one-time preparation")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    s = dsub.add_parser(
        "stats",
        help="identities / images / cameras per split, checked against the published numbers",
        description="Example: attnreid data stats cuhk03 --root ~/cuhk03 --option images=detected",
    )
    s.add_argument("name", help="dataset name (see `attnreid list datasets`)")
    s.add_argument("--root", required=True, help="the dataset folder")
    s.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loader option (repeatable), e.g. images=detected, protocol=classic",
    )
    s.set_defaults(func=cmd_stats)

    r = dsub.add_parser(
        "prepare",
        help="one-time preparation (CUHK03: extract the images from cuhk-03.mat)",
        description="Example: attnreid data prepare cuhk03 --root ~/cuhk03",
    )
    r.add_argument("name", help="dataset name")
    r.add_argument("--root", required=True, help="the dataset folder")
    r.add_argument("--cache-dir", default=None, help="CUHK03: where to extract (default: root)")
    r.set_defaults(func=cmd_prepare)


def cmd_stats(args: argparse.Namespace) -> int:
    from attnreid.data import build_dataset
    from attnreid.data.stats import compare_with_published, format_stats, published_counts

    ds = build_dataset(args.name, args.root, **_options(args.option))
    print(format_stats(ds))
    diffs = compare_with_published(ds)
    for line in diffs:
        print(f"warning: {line}", file=sys.stderr)
    if published_counts(ds) is None:
        print("no published numbers to compare with")
    elif not diffs:
        print("all counts match the published numbers")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from attnreid.data.datasets import build_dataset
    from attnreid.data.datasets.cuhk03_extract import KINDS, extract_images

    name = args.name.lower().replace("-", "").replace("_", "")
    if name != "cuhk03":
        build_dataset(args.name, args.root)  # validates the name and the folder
        print(f"{args.name}: nothing to prepare (the folder loads as it is)")
        return 0
    root = Path(args.root).expanduser()
    raw = next(
        (p for p in (root / "cuhk03_release" / "cuhk-03.mat", root / "cuhk-03.mat") if p.is_file()),
        None,
    )
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else root
    if raw is None:
        from attnreid.data.datasets.cuhk03 import find_np_layout

        if all((cache / f"images_{k}").is_dir() for k in KINDS):
            print(f"cuhk03: the images are extracted already in {cache}")
            return 0
        if root.is_dir() and any(find_np_layout(root, k) for k in KINDS):
            print(f"cuhk03: {root} is in the CUHK03-NP layout: nothing to prepare")
            return 0
        raise DatasetError(
            f"cuhk03: expected the raw release {root / 'cuhk03_release' / 'cuhk-03.mat'}; "
            f"it does not exist"
        )
    for kind in KINDS:
        folder, written = extract_images(raw, kind, cache, progress=sys.stderr.isatty())
        state = f"{written} images extracted" if written else "already complete"
        print(f"cuhk03 {kind}: {folder} ({state})")
    return 0
