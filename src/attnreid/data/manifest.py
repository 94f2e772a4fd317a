"""The files named by the rows of a CSV manifest, checked when the manifest is read.

A manifest may come from elsewhere (downloaded with a dataset, sent by a colleague); it must
not make the program read arbitrary files of this machine. So by default a row's path must be
relative and stay inside the manifest's base folder: absolute paths and paths that climb out
of it (``../../x.jpg``) are refused. The check is on the path as written (``..`` resolved
lexically), so symbolic links inside the folder are followed: they belong to the local folder,
not to the manifest. Who trusts a manifest can allow other paths (the ``custom`` dataset's
option ``allow_outside_paths: true``, ``attnreid index build --allow-outside-paths``).

Every named file must exist: a missing image is reported with the manifest's line when the
manifest is read, not later by a data-loader worker.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnreid.errors import DatasetError


def manifest_file(
    raw: str | None, folder: Path, where: str, *, allow_outside: bool, switch: str
) -> Path:
    """The file a manifest row names: ``raw`` (its ``path`` value) relative to ``folder``.

    ``where`` begins the error messages (e.g. ``"manifest m.csv line 3"``); ``switch`` is what
    allows paths outside ``folder`` (named in the refusal), ``allow_outside`` whether it is set.

    Raises:
        DatasetError: the path is empty, absolute or leaves ``folder`` (unless
            ``allow_outside``), or the file does not exist.
    """
    text = (raw or "").strip()
    if not text:
        raise DatasetError(f"{where}: the path is empty")
    path = Path(os.path.normpath(text))
    if not allow_outside:
        if path.is_absolute():
            raise DatasetError(
                f"{where}: path {text} is absolute, not relative to {folder} "
                f"(allow it with {switch})"
            )
        if path.parts[:1] == ("..",):
            raise DatasetError(
                f"{where}: path {text} leads outside {folder} (allow it with {switch})"
            )
    path = folder / path
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise DatasetError(f"{where}: image {path} {state}")
    return path
