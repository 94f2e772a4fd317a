"""Reading torch files and ``.npz`` archives without ever running code they hold.

``torch.load(weights_only=True)`` refuses pickled objects other than tensors and plain data;
its refusal message then advises loading again with ``weights_only=False``, which is exactly
what a user must not do with a file from elsewhere. :func:`load_tensors_only` keeps the one line
that says what was refused and raises :class:`RefusedFile` with it, so that checkpoints and
pretrained-weights files report the same clear reason. A file that cannot be a torch file at all
(text, random bytes, an empty file) is never handed to the unpickler: :class:`NotATorchFile`.

:func:`open_npz` opens feature files and gallery indexes with ``allow_pickle=False``; anything
that is not a ``.npz`` archive gets one line naming the file and what was expected, never
numpy's advice to load it with ``allow_pickle``.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnreid.errors import AttnReidError, wrong_file


class RefusedFile(Exception):
    """The file holds objects whose loading could run code; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotATorchFile(ValueError):
    """The file is neither a zip archive (``torch.save``) nor a pickle stream (the legacy
    format)."""


def refusal_reason(text: str) -> str:
    """The line of torch's ``weights_only`` refusal that names what was refused."""
    for line in text.splitlines():
        line = line.strip()
        if "GLOBAL" in line or line.lower().startswith("unsupported"):
            return line.rstrip(".")
    return "unsupported content"


def is_torch_file(path: str | Path) -> bool:
    """Whether ``path`` can be a file of ``torch.save``: a zip archive, or a pickle stream of
    protocol 2 or later (torch's legacy format), which starts with the PROTO opcode."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    return (len(head) == 2 and head[0] == 0x80 and head[1] >= 2) or zipfile.is_zipfile(path)


def load_tensors_only(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; :class:`RefusedFile` for pickles
    of code, :class:`NotATorchFile` for files that are not torch files. Other read errors
    (truncated file, a zip of something else) propagate unchanged."""
    if not is_torch_file(path):
        raise NotATorchFile(f"{path} is neither a zip archive nor a pickle stream")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on legacy (non-zip) files
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RefusedFile(refusal_reason(str(exc))) from None


def open_npz(path: str | Path, what: str, expected: str) -> np.lib.npyio.NpzFile:
    """``np.load(path, allow_pickle=False)`` of a ``.npz`` archive (a context manager).

    Raises:
        AttnReidError: ``path`` is not a ``.npz`` archive; the message is
            :func:`~attnreid.errors.wrong_file`'s, e.g. ``feature file F is not {expected}``.
    """
    try:
        if zipfile.is_zipfile(path):  # else numpy would try it as a pickle, and advise
            return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    raise AttnReidError(wrong_file(path, what, expected))
