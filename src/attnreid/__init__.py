"""attnreid: attention-based person re-identification.

>>> import attnreid
>>> cfg = attnreid.load_config("sona2_net_cpu")                              # doctest: +SKIP
>>> ds = attnreid.data.build_dataset("cuhk01", "../shared/data/cuhk01")        # doctest: +SKIP
>>> model = attnreid.build_model_from_config(cfg, ds.num_train_pids)          # doctest: +SKIP
>>> print(attnreid.evaluate(model, ds).as_dict())  # the preset's test settings # doctest: +SKIP
>>> extractor = attnreid.load("runs/x/last.ckpt")  # or .safetensors, .onnx   # doctest: +SKIP
>>> feats = extractor(crops)  # (N, D) features of crops in memory             # doctest: +SKIP

Sub-packages and the functions below are imported on first use, so ``attnreid --version``
and ``import attnreid`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_model": "attnreid.models",
    "build_model_from_config": "attnreid.engine.build",
    "load": "attnreid.engine.load",
    "list_models": "attnreid.models",
    "evaluate": "attnreid.evaluation",
    "FeatureExtractor": "attnreid.evaluation.extractor",
    "evaluate_rank": "attnreid.evaluation",
    "load_config": "attnreid.config",
    "train": "attnreid.engine.train",
}
_SUBPACKAGES = (
    "data",
    "models",
    "losses",
    "evaluation",
    "engine",
    "retrieval",
    "viz",
    "config",
)

__all__ = ["__version__", *_LAZY, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"attnreid.{name}")
    raise AttributeError(f"module 'attnreid' has no attribute {name!r}")
