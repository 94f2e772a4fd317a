"""Match thresholds: ``attnreid calibrate`` against a brute-force count, carried into an index,
and turned into verdicts by ``search``; the verification view of ``attnreid eval``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import attnreid
from attnreid.cli.main import main
from attnreid.engine.build import load_dataset
from attnreid.evaluation.features import FeatureSet
from attnreid.retrieval import GalleryIndex
from attnreid.retrieval.calibration import Verdicts, load_thresholds
from attnreid.utils.distance import compute_distance
from attnreid.viz.verification import verification_figure
from tests.evaluation.test_verification import brute_verification
from tests.retrieval.helpers import build_index, fake_checkpoint

pytestmark = pytest.mark.slow


def _query_gallery(extractor) -> tuple[FeatureSet, FeatureSet]:
    """The test features of a model on its config's dataset."""
    dataset = load_dataset(extractor.config)
    q, g = (extractor.extract(dataset.split(s)) for s in ("query", "gallery"))
    return q, g


def test_calibrate_index_search(tiny_synth, tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth, **{"eval.metric": "cosine"})
    assert main(["calibrate", "--checkpoint", str(ckpt), "--fmr", "0.1", "0.01"]) == 0
    cal = json.loads((tmp_path / "m.ckpt.calibration.json").read_text())
    q, g = _query_gallery(attnreid.load(ckpt, device="cpu"))
    d = compute_distance(q.features, g.features, metric="cosine").numpy().astype(np.float64)
    for fmr in ("0.1", "0.01"):
        t, tpr, _, _ = brute_verification(d, q.pids, q.camids, g.pids, g.camids, float(fmr))
        assert cal["tpr"][fmr] == tpr
        assert cal["thresholds"].get(fmr, -math.inf) == t
    assert cal["metric"] == "cosine" and cal["num_impostor"] > 0

    # index build copies it; search turns distances into verdicts with it
    index_file = build_index(ckpt, tiny_synth / "bounding_box_test", tmp_path / "g.index")
    index = GalleryIndex.load(index_file)
    assert load_thresholds(None, index) == cal["thresholds"]
    query = sorted((tiny_synth / "query").iterdir())[0]
    capsys.readouterr()
    search = ["search", "--index", str(index_file), "--image", str(query)]
    assert main([*search, "--top", "20", "--fmr", "0.1", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    strict, loose = cal["thresholds"]["0.1"], None
    judge = Verdicts(cal["thresholds"], fmr=0.1)
    assert (judge.strict, judge.loose) == (strict, loose)
    assert [h["verdict"] for h in hits] == [
        "match" if h["distance"] <= strict else "no match" for h in hits
    ]
    # a calibration of other distances is refused
    (tmp_path / "other.json").write_text(json.dumps({"metric": "euclidean", "thresholds": {}}))
    assert main([*search, "--calibration", str(tmp_path / "other.json")]) == 2
    assert "is for euclidean distances, the index's are cosine" in capsys.readouterr().err


def test_eval_reports_the_verification_view(tiny_synth, tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth, **{"eval.fmrs": "[0.2, 0.05]"})
    assert (
        main(["eval", "--checkpoint", str(ckpt), "--json", "--png", str(tmp_path / "v.png")]) == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    extractor = attnreid.load(ckpt, device="cpu")
    model, cfg = extractor.model, extractor.config
    q, g = _query_gallery(extractor)
    d = compute_distance(q.features, g.features, metric="euclidean").numpy().astype(np.float64)
    for fmr in (0.2, 0.05):
        _, tpr, _, _ = brute_verification(d, q.pids, q.camids, g.pids, g.camids, fmr)
        assert metrics[f"tpr@fpr={fmr:g}"] == tpr
    assert (tmp_path / "v.png").is_file()
    from attnreid.evaluation.scoring import Scorer

    result = Scorer.from_config(model, cfg["eval"]).score(q, g).verification
    fig = verification_figure(result)
    lines = [ln.get_xdata()[0] for ln in fig.axes[0].lines]
    assert lines == [t for t in result.thresholds if math.isfinite(t)]
