"""``attnreid index build``, ``search``, ``export onnx``, ``extract --onnx``, ``eval --rerank``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attnreid.cli.main import main
from attnreid.evaluation.features import load_features
from attnreid.evaluation.metrics import evaluate_rank
from tests.evaluation.rerank_reference import re_ranking_reference
from tests.retrieval.helpers import fake_checkpoint
from tests.viz.expected import assert_ranks_picture


@pytest.fixture(scope="module")
def setup(tiny_synth, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrieval_cli")
    files = sorted((tiny_synth / "bounding_box_test").iterdir())
    for name, chunk in (("g1", files[:10]), ("g2", files[10:18])):
        (tmp / name).mkdir()
        for f in chunk:
            shutil.copy(f, tmp / name / f.name)
    return tmp, fake_checkpoint(tmp / "m.ckpt", tiny_synth)


def test_help(capsys):
    for argv in (["index", "build", "--help"], ["search", "--help"], ["export", "onnx", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "--checkpoint" in capsys.readouterr().out


def test_build_add_search(setup, capsys, tmp_path):
    tmp, ckpt = setup
    index = tmp_path / "g.index"
    assert main(["index", "build", "--checkpoint", str(ckpt), "--folder", str(tmp / "g1"),
                 "-o", str(index)]) == 0  # fmt: skip
    assert "10 images (10 added)" in capsys.readouterr().out
    assert main(["index", "build", "--checkpoint", str(ckpt), "--folder", str(tmp / "g2"),
                 "-o", str(index), "--add"]) == 0  # fmt: skip
    assert "18 images (8 added)" in capsys.readouterr().out
    assert main(["index", "build", "--checkpoint", str(ckpt), "--folder", str(tmp / "g2"),
                 "-o", str(index), "--add"]) == 0  # fmt: skip
    assert "already indexed" in capsys.readouterr().out

    query = sorted((tmp / "g2").iterdir())[2]
    assert main(["search", "--index", str(index), "--image", str(query), "--top", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"query {query}") and len(lines) == 2 + 5
    assert lines[2].split()[0] == "1" and lines[2].endswith(str(query.resolve()))

    strip = tmp_path / "strip.png"
    other = str(sorted((tmp / "g1").iterdir())[0])
    argv = ["search", "--index", str(index), "--image", str(query), "--image", other,
            "--top", "3", "--json", "--png", str(strip)]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [len(r["hits"]) for r in out] == [3, 3]
    assert out[0]["hits"][0]["path"] == str(query.resolve()) and out[0]["hits"][0]["rank"] == 1
    assert out[0]["hits"][0]["pid"] == int(query.name.split("_")[0])
    # each hit as SearchHit.as_dict: its row id, camera 1-based as in the file name
    top = out[0]["hits"][0]
    keys = {"id", "rank", "distance", "name", "pid", "camera", "time", "verdict", "path"}
    assert set(top) == keys and top["name"] == query.name
    assert top["camera"] == int(query.name.split("_")[1][1])  # 0001_c2s1_... -> camera 2
    assert top["id"] == 10 + sorted((tmp / "g2").iterdir()).index(query)  # g1's 10 rows first
    # the strip: each query, then its hits in rank order, framed green / red by identity
    rows = [
        ((q, int(Path(q).name.split("_")[0])), [(h["path"], h["pid"]) for h in r["hits"]])
        for q, r in zip([str(query), other], out)
    ]
    assert_ranks_picture(strip, rows, height=128, width=64, border=4)  # draw_ranks' defaults

    assert main(["index", "info", str(index)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == 18 and info["info"]["model"] == "resnet18"
    assert info["info"]["model_file"] == str(ckpt.resolve())  # the index records its model


def test_index_of_another_model_is_refused(setup, capsys, tmp_path, tiny_synth):
    tmp, ckpt = setup
    index = tmp_path / "g.index"
    assert main(["index", "build", "--checkpoint", str(ckpt), "--folder", str(tmp / "g1"),
                 "-o", str(index)]) == 0  # fmt: skip
    other = fake_checkpoint(tmp_path / "o.ckpt", tiny_synth, name="mobilenet_v2")
    capsys.readouterr()
    assert main(["index", "build", "--checkpoint", str(other), "--folder", str(tmp / "g2"),
                 "-o", str(index), "--add"]) == 2  # fmt: skip
    refused = (
        f"error: {other.resolve()} is model 'mobilenet_v2' (dimension 1280) but index {index} "
        "holds features of 'resnet18' (dimension 512)\n"
    )
    assert capsys.readouterr().err == refused  # one line
    query = str(sorted((tmp / "g1").iterdir())[0])
    assert (
        main(["search", "--index", str(index), "--image", query, "--checkpoint", str(other)]) == 2
    )
    assert capsys.readouterr().err == refused
    assert main(["search", "--index", str(tmp_path / "none"), "--image", query]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["search", "--index", str(index), "--image", query, "--top", "0"]) == 2


def test_export_onnx_then_extract_and_index_with_it(setup, capsys, tmp_path):
    tmp, ckpt = setup
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--checkpoint", str(ckpt), "-o", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    assert "input (batch, 3, 64x32)" in out and "max |difference|" in out
    assert main(["extract", "--onnx", str(onnx_path), "-o", str(tmp_path / "o.npz")]) == 0
    assert main(["extract", "--checkpoint", str(ckpt), "-o", str(tmp_path / "t.npz")]) == 0
    a, b = load_features(tmp_path / "o.npz"), load_features(tmp_path / "t.npz")
    for split in ("query", "gallery"):
        assert a[split].paths == b[split].paths
        ref = b[split].features
        assert float((a[split].features - ref).abs().max()) <= 1e-4 * float(ref.abs().max())
    evals = []
    for source in (["--onnx", str(onnx_path)], ["--checkpoint", str(ckpt)]):
        capsys.readouterr()
        assert main(["eval", *source, "--json"]) == 0
        evals.append(json.loads(capsys.readouterr().out))
    assert evals[0] == pytest.approx(evals[1], abs=1e-6)  # the same ranking, from onnxruntime
    index = tmp_path / "o.index"
    assert main(["index", "build", "--onnx", str(onnx_path), "--folder", str(tmp / "g1"),
                 "-o", str(index)]) == 0  # fmt: skip
    query = sorted((tmp / "g1").iterdir())[4]
    capsys.readouterr()
    assert main(["search", "--index", str(index), "--image", str(query), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["hits"][0]["path"] == str(query.resolve())


def test_eval_rerank_equals_the_oracle(setup, capsys, tmp_path):
    _, ckpt = setup
    assert main(["eval", "--checkpoint", str(ckpt), "--json", "--rerank"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert main(["extract", "--checkpoint", str(ckpt), "-o", str(tmp_path / "f.npz")]) == 0
    capsys.readouterr()
    f = load_features(tmp_path / "f.npz")
    q, g = f["query"].features.numpy(), f["gallery"].features.numpy()
    sq = lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1).astype(np.float32)  # noqa: E731
    final = re_ranking_reference(sq(q, g), sq(q, q), sq(g, g))
    ref = evaluate_rank(final, f["query"].pids, f["gallery"].pids, f["query"].camids,
                        f["gallery"].camids)  # fmt: skip
    assert got["mAP"] == pytest.approx(ref.mAP, abs=1e-6)
    assert got["rank1"] == pytest.approx(ref.rank(1))
    assert main(["eval", "--checkpoint", str(ckpt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] != got["mAP"]


def test_export_int8(setup, tiny_synth, capsys, tmp_path, monkeypatch):
    """INT8: QDQ nodes in the graph, its activation ranges measured on --quantisation-crops
    training crops as the graph takes them (its input size and ImageNet-normalised input, the
    default convention), metadata kept, and features that still point where the float
    model's do."""
    import onnx
    from PIL import Image

    from attnreid.models.exported import OnnxModel
    from attnreid.retrieval import export

    seen = []
    real = export.quantize_onnx

    def spy(src, dst, batches, **kw):  # what the ranges were measured on
        batches = list(batches)
        seen.extend(b for batch in batches for b in batch)
        return real(src, dst, batches, **kw)

    monkeypatch.setattr(export, "quantize_onnx", spy)
    _tmp, ckpt = setup
    fp32, int8 = tmp_path / "f.onnx", tmp_path / "q.onnx"
    assert main(["export", "onnx", "--checkpoint", str(ckpt), "-o", str(fp32)]) == 0
    argv = ["export", "onnx", "--checkpoint", str(ckpt), "-o", str(int8), "--int8"]
    assert main([*argv, "--quantisation-crops", "16"]) == 0
    assert "INT8 model resnet18" in capsys.readouterr().out
    # 16 crops at 64x32, ImageNet-normalised, each one of the training images (not the test's)
    assert len(seen) == 16 and all(c.shape == (3, 64, 32) for c in seen)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]

    def normalised(folder):
        images = (Image.open(f).convert("RGB") for f in sorted(folder.iterdir()))
        arrays = (np.asarray(im.resize((32, 64)), np.float32).transpose(2, 0, 1) for im in images)
        return [(a / 255 - mean) / std for a in arrays]

    train, test = normalised(tiny_synth / "bounding_box_train"), normalised(tiny_synth / "query")
    for crop in seen:
        assert crop.min() < -1 and crop.max() < 3  # normalised, not 0-255
        to_train = min(np.abs(crop - t).mean() for t in train)
        to_test = min(np.abs(crop - t).mean() for t in test)
        assert to_train < to_test / 5, (to_train, to_test)  # resizers differ a little
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    q, f = OnnxModel(int8), OnnxModel(fp32)
    assert q.metadata["precision"] == "int8" and q.model_name == f.model_name
    x = torch.rand(6, 3, 64, 32) * 255
    a, b = f(x), q(x)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert float(cos.min()) > 0.95, cos  # a broken quantisation gives unrelated features
