"""Reading torch files without ever running code they hold.

``torch.load(weights_only=True)`` refuses pickled objects other than tensors and plain data;
its refusal message then advises loading again with ``weights_only=False``, which is exactly
what a user must not do with a file from elsewhere. :func:`load_tensors_only` keeps the one line
that says what was refused and raises :class:`RefusedFile` with it, so that checkpoints and
pretrained-weights files report the same clear reason.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch


class RefusedFile(Exception):
    """The file holds objects whose loading could run code; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def refusal_reason(text: str) -> str:
    """The line of torch's ``weights_only`` refusal that names what was refused."""
    for line in text.splitlines():
        line = line.strip()
        if "GLOBAL" in line or line.lower().startswith("unsupported"):
            return line.rstrip(".")
    return "unsupported content"


def load_tensors_only(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; :class:`RefusedFile` for pickles
    of code. Other read errors (truncated file, not a torch file) propagate unchanged."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on legacy (non-zip) files
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RefusedFile(refusal_reason(str(exc))) from None
