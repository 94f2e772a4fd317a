"""Dynamic batching: the forwards of concurrent requests share one batch.

:class:`Batcher` runs the model in one thread. A request hands it its preprocessed image and
waits; the thread takes every image already waiting, then waits up to ``wait_ms`` for more,
up to ``max_batch`` in all, and runs them as one batch through the
:class:`~attnreid.evaluation.extractor.FeatureExtractor` (a batch of eight costs much less than
eight batches of one on a CPU). A lone request pays at most ``wait_ms``; ``max_batch=1`` turns
batching off (requests still run one forward at a time). The features do not depend on the
batching (BatchNorm in eval mode: each image's features are its own).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from attnreid.utils.checks import positive_int

__all__ = ["Batcher"]


class Batcher:
    """Batches concurrent forwards (see the module docstring); ``batcher(x)``: ``x`` one
    preprocessed image ``(3, H, W)`` -> its ``(D,)`` feature."""

    def __init__(self, extractor: Any, *, max_batch: int = 8, wait_ms: float = 2.0) -> None:
        positive_int(max_batch, "--max-batch")
        if not wait_ms >= 0:
            raise ValueError(f"the batching wait must be >= 0 ms, got {wait_ms}")
        self.extractor, self.max_batch, self.wait = extractor, max_batch, wait_ms / 1e3
        self.queue: queue.Queue[tuple[torch.Tensor, Future]] = queue.Queue()
        self.batches = 0  # forwards run, for the benchmark
        threading.Thread(target=self._loop, name="attnreid-batcher", daemon=True).start()

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        done: Future = Future()
        self.queue.put((x, done))
        return done.result()

    def _loop(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.wait
            while len(batch) < self.max_batch:
                try:
                    remaining = deadline - time.monotonic()
                    batch.append(self.queue.get(timeout=remaining) if remaining > 0 else
                                 self.queue.get_nowait())  # fmt: skip
                except queue.Empty:
                    break
            try:
                feats = self.extractor.forward(torch.stack([x for x, _ in batch])).numpy()
            except BaseException as exc:  # handed to every waiting request
                for _, done in batch:
                    done.set_exception(exc)
                continue
            self.batches += 1
            for (_, done), f in zip(batch, feats):
                done.set_result(f)
