"""Exports as other tools consume them (issue 25): BoxMOT's documented ONNX input pipeline,
torchreid's OSNet layout, OpenVINO, and attnreid's own consumers of every convention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import attnreid
from attnreid.cli.main import main
from tests.models.test_osnet import reference_forward
from tests.retrieval.helpers import fake_checkpoint

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def boxmot_input(crops_bgr: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """BoxMOT's re-ID preprocessing as its documentation and source describe it, written here
    from that description: each BGR crop resized with cv2 (INTER_LINEAR) to H x W, BGR -> RGB,
    / 255, ImageNet mean / std, float32 NCHW."""
    import cv2

    x = np.stack(
        [cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] for c in crops_bgr]
    )
    x = ((x.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def boxmot_features(onnx_file: Path, crops_bgr: list[np.ndarray]) -> np.ndarray:
    """BoxMOT's ONNX re-ID pipeline: :func:`boxmot_input` at the graph's H x W, with a dynamic
    batch; the first output, L2-normalised."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    _, _, h, w = session.get_inputs()[0].shape
    x = boxmot_input(crops_bgr, h, w)
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return (a * (b / np.linalg.norm(b, axis=1, keepdims=True))).sum(1)


@pytest.fixture
def crops(shared: Path) -> list[np.ndarray]:
    """Eight real CUHK01 crops as OpenCV reads them (BGR)."""
    import cv2

    files = sorted((shared / "data" / "cuhk01" / "campus").glob("*.png"))[::97][:8]
    assert len(files) == 8
    return [cv2.imread(str(f)) for f in files]


FAMILIES = {  # a network of each family, at its CPU preset's input size (random weights)
    "osnet_x0_25": ({}, (256, 128)),
    "sona2_net": ({"backbone": "resnet18"}, (160, 64)),
    "ccan": ({"backbone": "resnet18", "input_size": [160, 64]}, (160, 64)),
    "duatm": ({"backbone": "resnet18"}, (160, 64)),
    "sa_resnet50": ({"backbone": "resnet18"}, (160, 64)),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_exported_graph_drops_into_boxmot_unchanged(name, crops, shared, tmp_path):
    options, (h, w) = FAMILIES[name]
    weights = shared / "weights" / "osnet_x0_25" / "osnet_x0_25_msmt17.pth"
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", shared / "data" / "cuhk01", name, options,
                           **{"data.height": h, "data.width": w, "eval.flip": True})  # fmt: skip
    if name == "osnet_x0_25":  # the real MSMT17 network
        model = attnreid.load(ckpt).model
        model.load_state_dict(
            attnreid.models.build_model("osnet_x0_25", 6, str(weights)).state_dict()
        )
        torch.save({**torch.load(ckpt, weights_only=True), "state_dict": {
            f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)  # fmt: skip
    assert main(["export", "onnx", "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 0
    side = json.loads((tmp_path / "m.onnx.metadata.json").read_text())
    assert side["model_kwargs"] == {"img_size": [h, w]} and side["model_kwargs_schema_version"] == 1
    want = attnreid.load(ckpt)(crops, channels="BGR")  # what attnreid eval scores (with flip)
    got = boxmot_features(tmp_path / "m.onnx", crops)
    assert _cosine(want, got).min() >= 0.999, _cosine(want, got)
    # attnreid's own consumers read the convention from the file: the same features
    ours = attnreid.load(tmp_path / "m.onnx")
    assert not ours.flip  # the graph flips; the extractor does not flip again
    assert np.abs(ours(crops, channels="BGR") - want).max() < 1e-4


def test_rgb255_and_no_flip_through_our_consumers(capsys, tiny_synth, tmp_path):
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth, **{"eval.flip": True})
    onnx = tmp_path / "m.onnx"
    argv = ["export", "onnx", "--checkpoint", str(ckpt), "-o", str(onnx), "--input", "rgb255"]
    assert main([*argv, "--no-flip"]) == 0
    files = sorted((tiny_synth / "query").iterdir())[:6]
    graph = attnreid.load(onnx)
    assert graph.flip  # no flip inside: the extractor averages with the mirror itself
    assert graph.model.input_mean == (0.0, 0.0, 0.0)
    want = attnreid.load(ckpt).extract(files).features
    assert (graph.extract(files).features - want).abs().max() < 1e-4
    # eval --onnx gives eval --checkpoint's numbers
    capsys.readouterr()
    scores = []
    for flag, path in (("--checkpoint", ckpt), ("--onnx", onnx)):
        assert main(["eval", flag, str(path), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0]["mAP"] == pytest.approx(scores[1]["mAP"], abs=1e-6)
    assert scores[0]["rank1"] == scores[1]["rank1"]


def test_torchreid_export_loads_key_for_key_into_torchreid_forward(tiny_synth, tmp_path):
    torch.manual_seed(1)
    ckpt = fake_checkpoint(tmp_path / "o.ckpt", tiny_synth, "osnet_x0_25",
                           **{"data.height": 128, "data.width": 64})  # fmt: skip
    data = torch.load(ckpt, weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for key, value in data["state_dict"].items():  # non-trivial BatchNorm statistics
        if key.endswith(("running_mean", "bias")):
            value.copy_(torch.randn(value.shape, generator=gen) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
    torch.save(data, ckpt)
    out = tmp_path / "osnet_x0_25_tiny.pt"
    assert main(["export", "torchreid", "--checkpoint", str(ckpt), "-o", str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    assert (saved["model_name"], saved["num_classes"], saved["img_size"]) == (
        "osnet_x0_25", 6, [128, 64]
    )
    sd = saved["state_dict"]
    assert {k.split(".")[0] for k in sd} == {f"conv{i}" for i in range(1, 6)} | {"fc", "classifier"}
    extractor = attnreid.load(ckpt)
    files = sorted((tiny_synth / "query").iterdir())[:4]
    extractor.flip = False  # torchreid and BoxMOT never flip
    x = torch.stack([extractor.transform(attnreid.data.read_image(f)) for f in files])
    _, feat = reference_forward(sd, x)
    assert (extractor.forward(x) - feat).abs().max() <= 1e-5


def test_torchreid_export_refuses_networks_torchreid_lacks(capsys, tiny_synth, tmp_path):
    ckpt = fake_checkpoint(tmp_path / "r.ckpt", tiny_synth)  # a ResNet-18 baseline
    out = tmp_path / "r.pt"
    assert main(["export", "torchreid", "--checkpoint", str(ckpt), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: torchreid has no network for model 'resnet18' (only the plain OSNet re-ID models "
        "export to torchreid's layout): export it with attnreid export onnx\n"
    )
    assert not out.exists()


def test_openvino_export_runs_as_pytorch_and_int8_keeps_the_features(tiny_synth, tmp_path):
    pytest.importorskip("openvino")
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth, **{"eval.flip": True})
    out = tmp_path / "m_openvino_model"
    assert main(["export", "openvino", "--checkpoint", str(ckpt), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["m.bin", "m.xml", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_kwargs"] == {"img_size": [64, 32]}
    files = sorted((tiny_synth / "query").iterdir())[:6]
    want = attnreid.load(ckpt).extract(files).features
    for source in (out, out / "m.xml"):
        got = attnreid.load(source)
        assert got.model.kind == "OpenVINO" and not got.flip  # flip inside the graph
        assert (got.extract(files).features - want).abs().max() < 1e-4
    q = tmp_path / "q_openvino_model"
    argv = ["export", "openvino", "--checkpoint", str(ckpt), "-o", str(q), "--int8"]
    assert main([*argv, "--quantisation-crops", "16"]) == 0
    int8 = attnreid.load(q)
    assert int8.model.metadata["precision"] == "int8"
    cos = torch.nn.functional.cosine_similarity(int8.extract(files).features, want, dim=1)
    assert float(cos.min()) > 0.95, cos


def test_empty_batch_gives_zero_rows(tiny_synth, tmp_path):
    extractor = attnreid.load(fake_checkpoint(tmp_path / "m.ckpt", tiny_synth))
    assert extractor([]).shape == (0, extractor.feature_dim)
    assert extractor(np.zeros((0, 64, 32, 3), np.uint8)).shape == (0, extractor.feature_dim)
