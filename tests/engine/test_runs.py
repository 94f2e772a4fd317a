from __future__ import annotations

import json

import pytest
import torch

from attnreid.cli.main import main
from attnreid.engine.latency import measure_latencies, measure_latency
from attnreid.engine.runs import format_summary, summarize
from tests.conftest import tiny_train_overrides


def test_summarize_mean_and_sample_std():
    runs = [
        {"rank1": 0.5, "rank5": 0.7, "rank10": 0.8, "mAP": 0.4, "mINP": 0.2},
        {"rank1": 0.7, "rank5": 0.9, "rank10": 1.0, "mAP": 0.6, "mINP": 0.4},
    ]
    s = summarize(runs)
    assert s["rank1"]["mean"] == pytest.approx(0.6)
    assert s["rank1"]["std"] == pytest.approx(0.1414213, abs=1e-6)  # ddof = 1
    assert "60.0 ± 14.1" in format_summary("x", s, 2)
    assert summarize(runs[:1])["mAP"]["std"] == 0.0


def test_measure_latency_reports_positive_times():
    lat = measure_latency(torch.nn.Conv2d(3, 4, 3), 32, 16, repeats=3, warmup=1)
    assert lat.median_ms > 0 and lat.q1_ms <= lat.median_ms <= lat.q3_ms
    assert (lat.height, lat.width, lat.batch) == (32, 16, 1) and lat.peak_mem_mb > 0


def test_params_and_flops_equal_the_hand_count():
    """A 3x3 convolution 3 -> 4 channels on 32x16 (no padding): 4 x 30 x 14 outputs, each
    27 multiply-adds, 2 FLOPs each; the count is per image whatever the batch."""
    for batch in (1, 3):
        lat = measure_latency(torch.nn.Conv2d(3, 4, 3), 32, 16, batch=batch, repeats=1, warmup=0)
        assert lat.gflops * 1e9 == pytest.approx(2 * 4 * 30 * 14 * 27)
        assert lat.params_m * 1e6 == pytest.approx(4 * 27 + 4)



def test_measure_latencies_interleaves_models_and_uses_each_size():
    calls: list[tuple[str, tuple[int, ...]]] = []

    class Probe(torch.nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append((self.name, tuple(x.shape)))
            return x

    lats = measure_latencies(
        [Probe("a"), Probe("b")], [(32, 16), (64, 32)], repeats=4, warmup=2, batch=3
    )
    timed = calls[4:-2]  # 2 warm-up forwards of each model first, 1 counting FLOPs last
    assert [name for name, _ in timed] == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert [name for name, _ in calls[-2:]] == ["a", "b"]
    assert {shape for name, shape in calls if name == "b"} == {(3, 3, 64, 32)}
    assert [(lat.height, lat.width, lat.repeats) for lat in lats] == [(32, 16, 4), (64, 32, 4)]
    with pytest.raises(ValueError, match="2 models but 1 input sizes"):
        measure_latencies([Probe("a"), Probe("b")], [(32, 16)])

@pytest.mark.slow
def test_train_seeds_cli(tiny_synth, tmp_path, capsys):
    out = tmp_path / "multi"
    ov = tiny_train_overrides(tiny_synth, out, **{"model.name": "resnet18", "train.max_epochs": 1})
    assert main(["train", "-c", "demo", *ov, "~model.options", "--seeds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "(2 runs)" in printed and "±" in printed
    report = json.loads((out / "runs.json").read_text())
    assert [r["seed"] for r in report["runs"]] == [0, 1]
    assert (out / "seed1" / "checkpoints" / "last.ckpt").is_file()


def test_bench_latency_cli(capsys):
    args = [
        "bench",
        "latency",
        "-c",
        "demo",
        "data.height=64",
        "data.width=32",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--compare",
        "r18:model.options.backbone=resnet18",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| demo | 64x32 | 1 |" in out and "| r18 | 64x32 |" in out
    assert main(["bench", "latency", "-c", "demo", "--compare", "bad=1"]) == 2
