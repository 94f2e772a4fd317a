"""Exports as other tools consume them (issue 25): BoxMOT's documented ONNX input pipeline and
BoxMOT itself, torchreid's OSNet layout, OpenVINO, and attnreid's own consumers of every
convention."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import attnreid
from attnreid.cli.main import main
from tests.conftest import REPO
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


#: BoxMOT's interpreter: ``make boxmot`` installs BoxMOT 25.0.0 in a throw-away venv of its own.
BOXMOT_PYTHON = Path(os.environ.get("ATTNREID_BOXMOT_PYTHON", REPO / ".venv-boxmot/bin/python"))
#: Run by BoxMOT's interpreter; argv = folder, model files: ``boxmot_<file>.npy`` per file, the
#: features its trackers get (``ReID(weights=...).model.get_features(boxes, frame)``).
BOXMOT_SCRIPT = """
import sys
from pathlib import Path
import cv2, numpy as np
import boxmot
from boxmot.reid.core import ReID
folder = Path(sys.argv[1])
frame, boxes = cv2.imread(str(folder / "frame.png")), np.load(folder / "boxes.npy")
for name in sys.argv[2:]:
    model = ReID(weights=folder / name, device="cpu").model
    np.save(folder / f"boxmot_{name}.npy", model.get_features(boxes, frame))
    print(boxmot.__version__, name, type(model).__name__, *model.input_shape)
"""


def boxmot_frame(crops_bgr: list[np.ndarray], folder: Path) -> None:
    """``folder/frame.png``: the crops pasted on a grey frame, 20 to a row, and
    ``folder/boxes.npy``: their boxes (x1, y1, x2, y2, conf, class) as a detector gives them."""
    import cv2

    h = max(c.shape[0] for c in crops_bgr) + 10
    w = max(c.shape[1] for c in crops_bgr) + 10
    cols = min(20, len(crops_bgr))
    frame = np.full((h * -(-len(crops_bgr) // cols) + 10, w * cols + 10, 3), 90, np.uint8)
    boxes = []
    for i, c in enumerate(crops_bgr):
        y, x = 10 + (i // cols) * h, 10 + (i % cols) * w
        frame[y : y + c.shape[0], x : x + c.shape[1]] = c
        boxes.append([x, y, x + c.shape[1], y + c.shape[0], 0.9, 0])
    cv2.imwrite(str(folder / "frame.png"), frame)
    np.save(folder / "boxes.npy", np.asarray(boxes, np.float32))


def run_boxmot(python: Path, folder: Path, files: list[str]) -> tuple[list[np.ndarray], str]:
    """BoxMOT's own features for each model file in ``folder`` (after :func:`boxmot_frame`),
    and what it printed (version, backend, input size per file)."""
    done = subprocess.run([str(python), "-c", BOXMOT_SCRIPT, str(folder), *files],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [np.load(folder / f"boxmot_{f}.npy") for f in files], done.stdout


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
    "osnet_x0_25_duatm_plugin": ({}, (256, 128)),  # ranks with DuATM's matching (sequences)
    "sa_resnet50": ({"backbone": "resnet18"}, (160, 64)),
}


def _family_checkpoint(name: str, shared: Path, folder: Path) -> Path:
    """A checkpoint of family ``name`` at its CPU input size (the plain OSNet with its real
    MSMT17 weights, the others random), evaluated with flip."""
    options, (h, w) = FAMILIES[name]
    ckpt = fake_checkpoint(folder / f"{name}.ckpt", shared / "data" / "cuhk01", name, options,
                           **{"data.height": h, "data.width": w, "eval.flip": True})  # fmt: skip
    if name == "osnet_x0_25":  # the real MSMT17 network
        weights = shared / "weights" / "osnet_x0_25" / "osnet_x0_25_msmt17.pth"
        model = attnreid.load(ckpt).model
        model.load_state_dict(
            attnreid.models.build_model("osnet_x0_25", 6, str(weights)).state_dict()
        )
        torch.save({**torch.load(ckpt, weights_only=True), "state_dict": {
            f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)  # fmt: skip
    return ckpt


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_exported_graph_drops_into_boxmot_unchanged(name, crops, shared, tmp_path):
    ckpt = _family_checkpoint(name, shared, tmp_path)
    h, w = FAMILIES[name][1]
    assert main(["export", "onnx", "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 0
    side = json.loads((tmp_path / "m.onnx.metadata.json").read_text())
    assert side["model_kwargs"] == {"img_size": [h, w]} and side["model_kwargs_schema_version"] == 1
    # what attnreid eval scores (with flip), as one vector per image (DuATM's: its feature)
    want = attnreid.load(ckpt, vectors=True)(crops, channels="BGR")
    got = boxmot_features(tmp_path / "m.onnx", crops)
    assert got.shape == want.shape == (len(crops), attnreid.load(ckpt).feature_dim)
    assert _cosine(want, got).min() >= 0.999, _cosine(want, got)
    # attnreid's own consumers read the convention from the file: the same features
    ours = attnreid.load(tmp_path / "m.onnx")
    assert not ours.flip  # the graph flips; the extractor does not flip again
    assert np.abs(ours(crops, channels="BGR") - want).max() < 1e-4


@pytest.mark.shared
@pytest.mark.slow
def test_boxmot_itself_gets_attnreid_features(crops, shared, tmp_path):
    """BoxMOT 25.0.0's own runtime, given a frame and boxes as its trackers are, on each
    family's ONNX export (input sizes other than 256x128 among them) and on the torchreid
    export of the plain OSNet, named without ``osnet`` (BoxMOT reads the name from the file)."""
    if not BOXMOT_PYTHON.is_file():
        pytest.skip(f"no BoxMOT interpreter at {BOXMOT_PYTHON} (make boxmot installs one)")
    files, want, emulated = [], [], []
    for name in sorted(FAMILIES):
        ckpt = _family_checkpoint(name, shared, tmp_path)
        onnx = tmp_path / f"{name}.onnx"
        assert main(["export", "onnx", "--checkpoint", str(ckpt), "-o", str(onnx)]) == 0
        files.append(onnx.name)
        want.append(attnreid.load(ckpt, vectors=True)(crops, channels="BGR"))  # (N, D)
        emulated.append(boxmot_features(onnx, crops))
        if name == "osnet_x0_25":
            pt = tmp_path / "mine.pt"
            assert main(["export", "torchreid", "--checkpoint", str(ckpt), "-o", str(pt)]) == 0
            extractor = attnreid.load(ckpt)
            extractor.flip = False  # BoxMOT's PyTorch backend does not flip
            files.append(pt.name)
            want.append(extractor(crops, channels="BGR"))
            emulated.append(extractor.forward(torch.from_numpy(boxmot_input(crops, 256, 128))))
    boxmot_frame(crops, tmp_path)
    got, printed = run_boxmot(BOXMOT_PYTHON, tmp_path, files)
    sizes = {name: size for name, (_, size) in FAMILIES.items()} | {"mine": (256, 128)}
    for line, f in zip(printed.splitlines(), files):  # BoxMOT read each file's input size
        version, file, backend, h, w = line.split()
        assert (version, file, (int(h), int(w))) == ("25.0.0", f, sizes[f.split(".")[0]])
        assert backend == ("PyTorchBackend" if f.endswith(".pt") else "ONNXBackend")
    for f, a, b, e in zip(files, got, want, emulated):
        assert b.ndim == 2 and a.shape == b.shape, (f, a.shape, b.shape)
        assert _cosine(a, b).min() >= 0.999, (f, _cosine(a, b))
        assert _cosine(a, np.asarray(e)).min() >= 0.9999, (f, _cosine(a, np.asarray(e)))


@pytest.mark.parametrize("name", ["duatm", "osnet_x0_25_duatm_plugin"])
def test_a_sequence_ranker_is_exported_and_indexed_as_its_feature_vector(
    name, capsys, tiny_synth, tmp_path
):
    """DuATM's matching compares sequences pair by pair, which a tracker, an index or a graph
    cannot run: those consumers get the model's feature vector (``rank_with: feature``), said
    once, and a graph of the sequences themselves is refused."""
    from attnreid.errors import ModelError
    from attnreid.retrieval.export import export_onnx

    options = {"backbone": "resnet18"} if name == "duatm" else {}
    ckpt = fake_checkpoint(tmp_path / "d.ckpt", tiny_synth, name, options)
    files = sorted((tiny_synth / "query").iterdir())[:6]
    matching = attnreid.load(ckpt)
    seqs = matching.extract(files).features
    capsys.readouterr()
    vectors = attnreid.load(ckpt, vectors=True)
    assert "its feature vector is used (rank_with: feature)" in capsys.readouterr().err
    got = vectors.extract(files).features
    if name == "duatm":  # the mean of the sequence (unit rows), the paper's avgpool feature
        assert seqs.shape == (6, 2, 256)  # 64x32 input: a 2x1 map
        want = seqs.mean(1)
    else:  # the plug-in's 512-d feature, the plain OSNet's
        assert seqs.shape == (6, 2 * 256)  # flattened sequences: 2-D, but not a feature
        matching.model.rank_with = "feature"
        want = matching.extract(files).features
    assert got.shape == (6, vectors.feature_dim) and (got - want).abs().max() < 1e-5
    assert vectors.config["model"]["options"]["rank_with"] == "feature"
    with pytest.raises(ModelError, match="ranks with its own matching distance"):
        export_onnx(attnreid.load(ckpt).model, tmp_path / "x.onnx", height=64, width=32)
    assert not (tmp_path / "x.onnx").exists()
    # the index holds the vectors and ranks as eval with rank_with: feature does
    gallery = str(tiny_synth / "bounding_box_test")
    argv = ["index", "build", "--folder", gallery, "-o", str(tmp_path / "g.index")]
    assert main([*argv, "--checkpoint", str(ckpt)]) == 0
    index = attnreid.retrieval.GalleryIndex.load(tmp_path / "g.index")
    stored = np.stack([index.vector(i) for i in range(3)])
    feats = vectors.extract([index.resolve(p) for p in index.paths[:3]]).features
    if index.metric == "cosine":
        feats = torch.nn.functional.normalize(feats, dim=1)
    assert stored.shape == (3, vectors.feature_dim)
    assert np.abs(stored - feats.numpy()).max() < 1e-5
    # search ranks with the same vectors: a query that is an indexed crop finds itself first
    capsys.readouterr()
    crop = str(index.resolve(index.paths[5]))
    assert main(["search", "--index", str(tmp_path / "g.index"), "--image", crop, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)[0]["hits"][0]
    assert first["path"] == crop and first["distance"] < 1e-4, first


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
