"""Device selection: ``auto`` uses CUDA when present (with mixed precision), else the CPU; and
the eval-mode context of inference."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from attnreid.errors import ConfigError


def model_device(model: object, device: str | torch.device = "auto") -> torch.device:
    """Where ``model`` runs: the CPU for a model that says ``runs_on_cpu`` (an onnxruntime
    :class:`~attnreid.retrieval.export.OnnxModel`), else :func:`resolve_device` of ``device``."""
    return torch.device("cpu") if getattr(model, "runs_on_cpu", False) else resolve_device(device)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here")
    return dev


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """``modules`` in eval mode for the block; their previous modes are restored afterwards."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
