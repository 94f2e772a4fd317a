"""The one feature-extraction path: a model with its test preprocessing.

>>> extractor = attnreid.load("runs/x/checkpoints/last.ckpt")  # doctest: +SKIP
>>> feats = extractor(crops_bgr, channels="BGR")  # in memory -> (N, D) # doctest: +SKIP
>>> fs = extractor.extract(dataset.query)  # files -> FeatureSet # doctest: +SKIP

:class:`FeatureExtractor` decides once, from the model and its config, everything a test
feature depends on: the input size and normalisation (``data.height`` / ``width``, the
normalisation the weights expect, :func:`~attnreid.data.transforms.input_stats`), flip
averaging (``eval.flip``: each image's feature averaged with its mirror image's, as SONA-Net,
Batch-DropBlock and most re-ID code do), the batch size (``data.test_batch_size``), the device
(CUDA with float16 autocast when present) and, for tracklets, the frame sampling
(``data.test_frames``, clips of ``data.test_seq_len`` frames). Evaluation, ``attnreid
extract``, index building, ``search``, the server and in-memory crops all extract through it,
so a crop gives the same feature whichever way it arrives.

**Crops in memory** (``extractor(crops)``): numpy arrays ``(H, W, 3)`` of ``uint8`` (RGB, or BGR
as OpenCV gives them: ``channels="BGR"``), PIL images, or tensors ``(3, H, W)`` (``uint8``, or
float in ``[0, 1]``), RGB; a list of crops, or one batch ``(N, H, W, 3)`` array /
``(N, 3, H, W)`` tensor.

**Video** (5-D batches ``(B, T, 3, H, W)`` of tracklet clips, :mod:`attnreid.data.video`): the
frames go through the model as ``(B*T, 3, H, W)`` and a tracklet's feature is the mean of its
frame features over all its clips (a batch ``"mask"`` excludes padding frames). A model with
``handles_video = True`` gets the clips themselves and returns one ``(B, D)`` feature per clip;
clips of one tracklet are averaged, weighted by their real frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader

from attnreid.config import load_config
from attnreid.data.base import ReIDItem
from attnreid.data.images import to_rgb
from attnreid.data.loaders import build_test_loader
from attnreid.data.transforms import build_transforms, input_stats
from attnreid.errors import ConfigError
from attnreid.evaluation.features import FeatureSet, per_tracklet
from attnreid.utils.checks import one_of
from attnreid.utils.device import eval_mode, model_device

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
    """A re-ID model with its test preprocessing (see the module docstring).

    Args:
        model: a trained model (an attnreid network, or an exported one run by onnxruntime).
        config: its config (default: the one the model carries, ``model.config``, else the
            library defaults).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` ... (default: the
            config's ``device``); an onnxruntime model runs on the CPU.
        batch_size: images per forward pass (default ``data.test_batch_size``).
        workers: data loading processes for files (default ``data.workers``).
        source: where the model came from (set by :func:`attnreid.load`: the file, model name,
            feature dimension and input size; an index records it).
    """

    def __init__(
        self,
        model: nn.Module,
        config: dict[str, Any] | None = None,
        *,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        source: dict[str, Any] | None = None,
    ) -> None:
        cfg = config or getattr(model, "config", None) or load_config(None)
        d = cfg["data"]
        self.config = cfg
        self.device = model_device(model, cfg["device"] if device is None else device)
        self.model = model.to(self.device)
        self.mean, self.std = input_stats(model, cfg)
        self.size = (int(d["height"]), int(d["width"]))
        self.transform = build_transforms(*self.size, train=False, mean=self.mean, std=self.std)
        # a graph that averages with the mirror image itself is not flipped again
        self.flip = bool(cfg["eval"]["flip"]) and not getattr(model, "flips_inside", False)
        self.amp = self.device.type == "cuda"
        self.batch_size = int(batch_size or d["test_batch_size"])
        self.workers = int(d["workers"] if workers is None else workers)
        self.source = dict(source or {})

    @property
    def model_name(self) -> str:
        return str(getattr(self.model, "model_name", "") or type(self.model).__name__)

    @property
    def feature_dim(self) -> int:
        return int(getattr(self.model, "feature_dim", 0))

    # ------------------------------------------------------------------ one batch

    @torch.no_grad()
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Features of one preprocessed batch: images ``(B, 3, H, W)`` -> ``(B, D)``, or clips
        ``(B, T, 3, H, W)`` -> their frame-averaged ``(B, D)`` (``mask`` ``(B, T)``: the real
        frames). Flip averaging and autocast as decided at construction; float32 on the CPU."""
        x = x.to(self.device, non_blocking=True)
        autocast = (
            torch.autocast(self.device.type, dtype=torch.float16)
            if self.amp
            else contextlib.nullcontext()
        )
        with eval_mode(self.model), autocast:
            if x.dim() == 5:
                return self._clips(x, mask).float().cpu()
            return self._flip_forward(x).float().cpu()

    def _flip_forward(self, x: Tensor) -> Tensor:
        f = self.model(x)
        return (f + self.model(torch.flip(x, dims=[-1]))) / 2 if self.flip else f

    def _clips(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, t = x.shape[:2]
        if getattr(self.model, "handles_video", False):  # the model consumes the sequence
            return self._flip_forward(x)
        f = self._flip_forward(x.flatten(0, 1)).float().view(b, t, -1)  # (B, T, D)
        w = (torch.ones(b, t) if mask is None else mask.float()).to(f.device)
        return (f * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)

    # ------------------------------------------------------------------ files

    def loader(self, items: Sequence[ReIDItem]) -> DataLoader:
        """The test-time loader of ``items`` (tracklets: clips as ``data.test_frames`` says)."""
        d = self.config["data"]
        return build_test_loader(
            items,
            self.transform,
            batch_size=self.batch_size,
            workers=self.workers,
            seq_len=d["test_seq_len"] or d["seq_len"],
            test_frames=d["test_frames"],
        )

    def extract(self, items: Sequence[ReIDItem] | Sequence[str]) -> FeatureSet:
        """Features of image files (``ReIDItem`` s, or paths: identity and camera unknown), in
        order; tracklets give one feature each."""
        items = [it if isinstance(it, ReIDItem) else ReIDItem(str(it), -1, -1) for it in items]
        if not items:
            empty = np.zeros(0, np.int64)
            return FeatureSet(torch.zeros((0, self.feature_dim)), empty, empty.copy(), [])
        feats, pids, camids, index, weights = [], [], [], [], []
        video = False
        for batch in self.loader(items):
            x, mask = batch["image"], batch.get("mask")
            video = video or x.dim() == 5
            feats.append(self.forward(x, mask))
            weights.append(torch.ones(len(x)) if mask is None else mask.float().sum(1))
            pids.append(batch["pid"])
            camids.append(batch["camid"])
            index.append(batch["index"])
        idx = torch.cat(index).numpy()
        out = FeatureSet(
            torch.cat(feats),
            torch.cat(pids).numpy().astype(np.int64),
            torch.cat(camids).numpy().astype(np.int64),
            [items[i].path for i in idx],
        )
        return per_tracklet(out, idx, torch.cat(weights)) if video else out

    # ------------------------------------------------------------------ crops in memory

    def preprocess(
        self, crops: Sequence[Crop] | np.ndarray | Tensor, channels: str = "RGB"
    ) -> Tensor:
        """The model's input batch ``(N, 3, H, W)`` for crops in memory."""
        one_of(channels, ("RGB", "BGR"), "channels")
        if isinstance(crops, (np.ndarray, Tensor)) and crops.ndim == 4:
            crops = list(crops)
        elif isinstance(crops, (np.ndarray, Tensor, Image.Image)):
            crops = [crops]
        if not len(crops):
            return torch.zeros((0, 3, *self.size))
        return torch.stack([self.transform(_as_pil(c, channels)) for c in crops])

    def __call__(
        self, crops: Sequence[Crop] | np.ndarray | Tensor, channels: str = "RGB"
    ) -> np.ndarray:
        """``(N, D)`` float32 features of crops in memory (``(0, D)`` for none)."""
        x = self.preprocess(crops, channels)
        out = [self.forward(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim), np.float32)
