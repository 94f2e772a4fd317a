"""``attnreid``: train, evaluate, extract features, generate the synthetic dataset, demo.

Every user error (:class:`attnreid.errors.AttnReidError`) is printed as one line,
``error: <what is wrong>``, with exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from attnreid import __version__
from attnreid.errors import AttnReidError

COMMANDS = (
    "train", "eval", "extract", "synth", "list", "demo", "bench", "viz", "data",
    "index", "search", "export", "calibrate", "serve",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnreid",
        description="Attention-based person re-identification: train, evaluate and search.",
    )
    parser.add_argument("--version", action="version", version=f"attnreid {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:  # each in the file named after it
        importlib.import_module(f"attnreid.cli.{name}").register(sub)
    return parser


def one_line(exc: BaseException) -> str:
    """The user-facing line of an error. An error raised in a DataLoader worker arrives
    re-raised with the worker's traceback in its message: keep only the original message."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
        text = text.removeprefix(prefix).removeprefix(f"{type(exc).__name__}: ")
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AttnReidError as exc:
        if args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
