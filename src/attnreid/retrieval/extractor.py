"""Features of person crops already in memory, for trackers and services.

>>> extractor = FeatureExtractor.load("runs/x/checkpoints/last.ckpt")  # doctest: +SKIP
>>> feats = extractor(crops_bgr, channels="BGR")   # OpenCV crops -> (N, D) float32 # doctest: +SKIP

A crop is a numpy array ``(H, W, 3)`` of ``uint8`` (RGB, or BGR as OpenCV gives it: say so with
``channels="BGR"``), a PIL image, or a tensor ``(3, H, W)`` (``uint8``, or float in ``[0, 1]``),
RGB; a list of crops, or one batch ``(N, H, W, 3)`` array / ``(N, 3, H, W)`` tensor. Every crop
goes through the model's own test preprocessing — the config's input size, the normalisation
its weights expect, flip averaging when its ``eval.flip`` says so — so a crop gives the same
feature as the same image read from a file by ``attnreid extract`` or ``index build``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from attnreid.data.images import to_rgb
from attnreid.data.transforms import build_transforms
from attnreid.errors import ConfigError
from attnreid.evaluation.evaluate import input_stats
from attnreid.evaluation.features import flip_forward
from attnreid.utils.checks import one_of
from attnreid.utils.device import model_device

__all__ = ["FeatureExtractor"]

Crop = Any  # np.ndarray | Image.Image | Tensor


def _as_pil(crop: Crop, channels: str) -> Image.Image:
    if isinstance(crop, Image.Image):
        return to_rgb(crop)
    if isinstance(crop, Tensor):
        t = crop.detach().cpu()
        if t.dim() != 3 or t.shape[0] != 3:
            raise ConfigError(f"a tensor crop must be (3, H, W), got {tuple(t.shape)}")
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round()
        crop = t.to(torch.uint8).permute(1, 2, 0).numpy()
        channels = "RGB"
    arr = np.asarray(crop)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ConfigError(
            f"a numpy crop must be (H, W, 3) uint8, got shape {arr.shape} dtype {arr.dtype}"
        )
    if channels == "BGR":
        arr = arr[:, :, ::-1]
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


class FeatureExtractor:
    """A re-ID model with its test preprocessing: crops in memory -> ``(N, D)`` features.

    Args:
        model: a trained model (an attnreid network or an :class:`~attnreid.retrieval.OnnxModel`).
        config: its config (default: the one the model carries, ``model.config``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` ...
        batch_size: crops per forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        config: dict[str, Any] | None = None,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 64,
    ) -> None:
        cfg = config or getattr(model, "config", None)
        if cfg is None:
            raise ConfigError("FeatureExtractor needs the model's config (model.config is None)")
        self.config = cfg
        self.device = model_device(model, device)
        self.model = model.to(self.device).eval()
        mean, std = input_stats(model, cfg)
        self.transform = build_transforms(
            cfg["data"]["height"], cfg["data"]["width"], train=False, mean=mean, std=std
        )
        self.flip = bool(cfg["eval"]["flip"])
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, checkpoint: str | Path | None = None, onnx: str | Path | None = None, **kwargs: Any
    ) -> FeatureExtractor:
        """The model of an attnreid ``checkpoint`` (``.ckpt`` or ``.safetensors``), or an
        ``onnx`` model of ``attnreid export onnx`` (run by onnxruntime, on the CPU)."""
        from attnreid.engine.build import load_model_and_config

        return cls(*load_model_and_config(checkpoint, onnx), **kwargs)

    @property
    def feature_dim(self) -> int:
        return int(getattr(self.model, "feature_dim", 0))

    def preprocess(
        self, crops: Sequence[Crop] | np.ndarray | Tensor, channels: str = "RGB"
    ) -> Tensor:
        """The model's input batch ``(N, 3, H, W)`` for ``crops``."""
        one_of(channels, ("RGB", "BGR"), "channels")
        if isinstance(crops, (np.ndarray, Tensor)) and crops.ndim == 4:
            crops = list(crops)
        elif isinstance(crops, (np.ndarray, Tensor, Image.Image)):
            crops = [crops]
        return torch.stack([self.transform(_as_pil(c, channels)) for c in crops])

    @torch.no_grad()
    def __call__(
        self, crops: Sequence[Crop] | np.ndarray | Tensor, channels: str = "RGB"
    ) -> np.ndarray:
        """``(N, D)`` float32 features of ``crops`` (see the module docstring)."""
        x = self.preprocess(crops, channels)
        out = []
        for start in range(0, x.shape[0], self.batch_size):
            batch = x[start : start + self.batch_size].to(self.device)
            out.append(flip_forward(self.model, batch, self.flip).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim), np.float32)
