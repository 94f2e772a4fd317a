"""``attnreid.evaluate(model, ds)`` evaluates a network as its preset says: a model loaded from a
checkpoint (or built from a preset) carries its config, so the Python API gives exactly what
``attnreid eval`` gives for the same checkpoint (before, it used the library defaults: flip
averaging for CCAN and SA-ResNet, 256x128, 4-frame chunks for DuATM video)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attnreid
from attnreid.cli.main import main
from attnreid.config import load_config
from attnreid.engine.build import build_model_from_config, load_dataset
from attnreid.evaluation.evaluate import make_evaluator
from attnreid.utils.seed import seed_all
from tests.conftest import tiny_train_overrides
from tests.data.trees import MARS_QUERY, MARS_TEST, MARS_TRAIN, build_mars
from tests.reliability.helpers import write_checkpoint

pytestmark = pytest.mark.slow

FAMILIES = ["baseline_cuhk01_cpu", "sona2_net_cpu", "ccan_cpu", "duatm_cpu", "sa_resnet50_cpu"]


def _cli_metrics(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _config(preset: str, root, out, **extra) -> dict:
    return load_config(preset, tiny_train_overrides(root, out, **extra))


@pytest.mark.parametrize("preset", FAMILIES)
def test_python_api_equals_cli_for_a_checkpoint(preset, tiny_synth, tmp_path, capsys):
    cfg = _config(preset, tiny_synth, tmp_path / "run")
    dataset = load_dataset(cfg)
    seed_all(0)
    ckpt = write_checkpoint(tmp_path / "c.ckpt", dataset.num_train_pids, cfg)
    cli = _cli_metrics(capsys, "eval", "--checkpoint", str(ckpt))
    model = attnreid.load(ckpt).model
    assert model.config["eval"] == cfg["eval"] and model.config["data"] == cfg["data"]
    api = attnreid.evaluate(model, attnreid.data.build_dataset("synth", tiny_synth))
    np.testing.assert_equal(api.as_dict(), cli)  # NaN (R20 of a tiny gallery) equals NaN


def test_model_built_from_a_preset_equals_eval_untrained(tiny_synth, tmp_path, capsys):
    ov = tiny_train_overrides(tiny_synth, tmp_path / "run")
    cli = _cli_metrics(capsys, "eval", "-c", "ccan_cpu", *ov, "--untrained")
    cfg = load_config("ccan_cpu", ov)
    seed_all(cfg["seed"])
    model = build_model_from_config(cfg, load_dataset(cfg).num_train_pids)
    assert model.config is cfg and cfg["eval"]["flip"] is False  # CCAN: no flip averaging
    dataset = load_dataset(cfg)
    np.testing.assert_equal(attnreid.evaluate(model, dataset).as_dict(), cli)
    # a setting given to evaluate() overrides the model's config
    flipped = {**cfg, "eval": {**cfg["eval"], "flip": True}}
    np.testing.assert_equal(
        attnreid.evaluate(model, dataset, flip=True).as_dict(),
        make_evaluator(dataset, flipped, "cpu")(model).as_dict(),
    )


def test_duatm_video_scores_the_presets_clip(tmp_path, capsys):
    """DuATM video: the preset's test clip (``test_frames: first``, ``test_seq_len``), not the
    library's 4-frame chunks."""
    root = build_mars(tmp_path / "MARS", MARS_TRAIN, MARS_TEST, MARS_QUERY, size=(16, 32))
    cfg = _config("duatm_video_cpu", root, tmp_path / "run", **{"data.dataset": "mars"})
    assert (cfg["data"]["test_frames"], cfg["data"]["test_seq_len"]) == ("first", 16)
    dataset = load_dataset(cfg)
    seed_all(0)
    ckpt = write_checkpoint(tmp_path / "v.ckpt", dataset.num_train_pids, cfg)
    cli = _cli_metrics(capsys, "eval", "--checkpoint", str(ckpt))
    model = attnreid.load(ckpt).model
    np.testing.assert_equal(attnreid.evaluate(model, dataset).as_dict(), cli)
