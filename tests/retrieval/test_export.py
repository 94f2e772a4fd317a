"""ONNX export: onnxruntime features equal PyTorch's for every registered model family."""

from __future__ import annotations

import inspect

import numpy as np
import onnx
import pytest
import torch

from attnreid.config import load_config
from attnreid.data.base import ReIDItem
from attnreid.errors import AttnReidError, ModelError
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.models import build_model
from attnreid.models.exported import OnnxModel, read_onnx_metadata
from attnreid.models.registry import _MODELS, model_factory
from attnreid.retrieval import export_onnx
from attnreid.utils.distance import ranks_sequences
from tests.conftest import write_image

HEIGHT, WIDTH = 64, 32  # the input size the preset smoke test trains every model at


def families() -> list[str]:
    """One registered name per model factory: the one with the fewest preset options (the
    family's plain name, e.g. ``baseline``, ``ccan``, ``sa_resnet``, ``sona_net``)."""
    best: dict[object, str] = {}
    for name, (fn, defaults) in sorted(_MODELS.items()):
        cur = best.get(fn)
        if cur is None or len(defaults) < len(_MODELS[cur][1]):
            best[fn] = name
    return sorted(best.values())


def small_model(name: str) -> torch.nn.Module:
    options = {}
    if "input_size" in inspect.signature(model_factory(name)).parameters:
        options["input_size"] = [HEIGHT, WIDTH]
    torch.manual_seed(0)
    return build_model(name, 7, "none", **options).eval()


IMAGENET = (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))


def graph_and_model_input(
    model, *shape: int, convention: str = "imagenet"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch as the exported graph takes it (``imagenet``: RGB / 255 normalised with
    ImageNet's mean and std; ``rgb255``: RGB in [0, 255]) and as the PyTorch model takes it
    (normalised with its own mean and std)."""
    x01 = torch.rand(*shape)
    mean = torch.tensor(model.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.input_std).view(1, 3, 1, 1)
    if convention == "rgb255":
        return x01 * 255, (x01 - mean) / std
    im, istd = (t.view(1, 3, 1, 1) for t in IMAGENET)
    return (x01 - im) / istd, (x01 - mean) / std


def close(got: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> float:
    """Largest difference relative to the feature scale (untrained features reach ~100s)."""
    ref = np.asarray(ref)
    return float(np.abs(np.asarray(got) - ref).max() / max(1.0, np.abs(ref).max()))


QUICK = ("baseline", "osnet_x0_25")  # the quick loop's two; every family in the full suite


@pytest.mark.parametrize(
    "name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in families()]
)
def test_onnxruntime_features_equal_pytorch(tmp_path, name):
    model = small_model(name)
    if ranks_sequences(model):  # DuATM: a graph gives its feature vector (load(vectors=True))
        with pytest.raises(ModelError, match="ranks with its own matching distance"):
            export_onnx(model, tmp_path / "m.onnx", height=HEIGHT, width=WIDTH)
        model.rank_with = "feature"
    convention = "rgb255" if name == "baseline" else "imagenet"  # both, in the quick loop
    diff = export_onnx(model, tmp_path / "m.onnx", height=HEIGHT, width=WIDTH, input=convention)
    assert diff is not None
    onnx_model = OnnxModel(tmp_path / "m.onnx")
    for batch in (1, 3):  # the batch dimension is dynamic (exported with 2)
        xg, x = graph_and_model_input(model, batch, 3, HEIGHT, WIDTH, convention=convention)
        with torch.no_grad():
            ref = model(x)
        got = onnx_model(xg)
        assert got.shape == ref.shape == (batch, model.feature_dim)  # one vector per image
        assert close(got, ref) <= 1e-4, f"{name}: onnxruntime differs by {close(got, ref):.2e}"
    assert onnx_model.model_name == name and onnx_model.feature_dim == model.feature_dim
    assert not model.training  # export leaves the model's mode alone


def test_metadata_and_extraction_through_onnxruntime(tmp_path):
    model = small_model("resnet18")
    cfg = {"data": {"height": HEIGHT, "width": WIDTH}, "eval": {"flip": True}, "_source": "x"}
    export_onnx(model, tmp_path / "m.onnx", height=HEIGHT, width=WIDTH, config=cfg)
    md = read_onnx_metadata(tmp_path / "m.onnx")
    assert md["model"] == "resnet18" and md["input_size"] == [HEIGHT, WIDTH]
    assert md["config"] == {"data": {"height": HEIGHT, "width": WIDTH}, "eval": {"flip": True}}
    # the graph takes ImageNet-normalised images, flip-averages them itself (eval.flip)
    assert (md["input"], md["flip"]) == ("imagenet", True)
    assert (md["mean"], md["std"]) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    # FeatureExtractor gives the same features with either model, each with the loader of its
    # own input statistics, flipping the PyTorch model's images and not the graph's
    items = [ReIDItem(str(write_image(tmp_path / f"{i}.jpg", seed=i)), i, 0) for i in range(5)]
    test = load_config(
        None,
        [f"data.height={HEIGHT}", f"data.width={WIDTH}", "data.test_batch_size=2",
         "data.workers=0", "eval.flip=true", "device=cpu"],
    )  # fmt: skip
    features, stats = [], []
    for m in (model, OnnxModel(tmp_path / "m.onnx")):
        extractor = FeatureExtractor(m, test)
        stats.append((tuple(extractor.mean), tuple(extractor.std), extractor.flip))
        features.append(extractor.extract(items))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert stats == [(model.input_mean, model.input_std, True), (*imagenet, False)]
    assert close(features[1].features, features[0].features) <= 1e-4


@pytest.mark.slow  # the fallback exporter, several seconds
def test_dynamo_exporter(tmp_path):
    model = small_model("resnet18")
    diff = export_onnx(model, tmp_path / "d.onnx", height=HEIGHT, width=WIDTH, exporter="dynamo")
    assert diff is not None and diff <= 1e-4 * 100
    xg, x = graph_and_model_input(model, 4, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        assert close(OnnxModel(tmp_path / "d.onnx")(xg), model(x)) <= 1e-4


def test_errors(tmp_path):
    model = small_model("resnet18")
    export_onnx(model, tmp_path / "m.onnx", height=HEIGHT, width=WIDTH, check=False)
    with pytest.raises(ModelError, match=r"takes \(B, 3, 64, 32\) images"):
        OnnxModel(tmp_path / "m.onnx")(torch.randn(1, 3, 32, 32))
    with pytest.raises(ModelError, match="ONNX exporter must be one of auto, torchscript, dynamo"):
        export_onnx(model, tmp_path / "x.onnx", height=HEIGHT, width=WIDTH, exporter="tf")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(AttnReidError, match="not exported by attnreid"):
        OnnxModel(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(AttnReidError, match="not a readable ONNX model"):
        read_onnx_metadata(tmp_path / "junk.onnx")

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("this forward cannot be traced")

    with pytest.raises(ModelError, match="could not be exported.*cannot be traced"):
        export_onnx(Broken(), tmp_path / "b.onnx", height=8, width=8)
