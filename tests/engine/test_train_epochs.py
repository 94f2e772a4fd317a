"""Training draws new P x K batches every epoch (Lightning does not move a batch sampler)."""

from __future__ import annotations

import shutil

from attnreid.config import load_config
from attnreid.data import PKBatchSampler
from attnreid.engine.train import train
from tests.conftest import tiny_train_overrides


def test_each_epoch_iterates_the_sampler_at_its_own_epoch(tiny_synth, tmp_path, monkeypatch):
    seen: list[tuple[int, tuple[int, ...]]] = []
    original = PKBatchSampler.__iter__

    def recording_iter(self):
        batches = list(original(self))
        seen.append((self.epoch, tuple(batches[0])))
        return iter(batches)

    monkeypatch.setattr(PKBatchSampler, "__iter__", recording_iter)
    ov = tiny_train_overrides(tiny_synth, tmp_path / "run", **{"train.max_epochs": 3})
    try:
        train(load_config("demo", [*ov, "~model.options", "train.eval_every=3"]))
    finally:  # three epochs of checkpoints: about 1.5 GB
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    assert len({batch for _, batch in seen}) == 3  # a new draw each epoch
