"""Errors that are shown to the user as one clear line.

Every problem a user can cause (a wrong path, a bad file, an unknown option) is raised as an
:class:`AttnReidError` subclass whose message names the file or key and says what is wrong.
The CLI prints ``error: <message>`` and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class AttnReidError(Exception):
    """Base class of all user-facing errors."""


class DatasetError(AttnReidError):
    """A dataset folder, split file, file name or image is missing or malformed."""


class ConfigError(AttnReidError):
    """A configuration key or value is unknown or of the wrong type."""


class ModelError(AttnReidError):
    """An unknown model name, a bad option, or weights that do not fit the model."""


class CheckpointError(AttnReidError):
    """A checkpoint that cannot be read, or that belongs to another model / class count."""


class TrainingError(AttnReidError):
    """Training cannot go on (e.g. the loss became NaN); the message names the last good
    checkpoint to resume from."""


def wrong_file(path: str | Path, what: str, expected: str) -> str:
    """The line for a file that is not what an option expects: ``{what} {path} is not
    {expected}`` (``is empty, not ...`` for an empty file).

    The reader's own error text is left out on purpose: it is rarely one line, and numpy's and
    torch's advise loading the file unsafely (``allow_pickle``, ``weights_only=False``).
    """
    path = Path(path)
    empty = path.is_file() and path.stat().st_size == 0
    return f"{what} {path} is {'empty, ' if empty else ''}not {expected}"
