"""Counting the unreadable training images replaced under ``data.skip_bad_images: true``.

The training datasets replace an unreadable image by another image of the same identity and
put the bad file's path in the sample's ``"replaced"`` field (see
:mod:`attnreid.data.loaders`); that field travels with the batch from any worker process, so
the count is exact however many workers load the data. Each file is named once, when first
met, and the total is reported at the end of training.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import lightning as L


class SkippedImages(L.Callback):
    """Collects ``batch["replaced"]``; :meth:`report` gives the end-of-training line."""

    def __init__(self, echo: bool = True) -> None:
        self.counts: Counter[str] = Counter()
        self.echo = echo

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        for path in batch.get("replaced", ()) if isinstance(batch, dict) else ():
            if not path:
                continue
            if path not in self.counts and self.echo:
                print(
                    f"warning: unreadable training image {path} replaced by another image of "
                    f"the same identity (data.skip_bad_images)",
                    file=sys.stderr,
                    flush=True,
                )
            self.counts[path] += 1

    def report(self) -> str | None:
        if not self.counts:
            return None
        total = sum(self.counts.values())
        return (
            f"[data] {total} time(s) an unreadable training image was replaced by another "
            f"image of its identity ({len(self.counts)} distinct file(s): "
            f"{', '.join(sorted(self.counts)[:5])}{' ...' if len(self.counts) > 5 else ''})"
        )
