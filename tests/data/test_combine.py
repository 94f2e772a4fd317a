"""Several datasets: training on their union with identities and cameras kept apart, and
``eval.targets`` scoring one model on several test sets, one row each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnreid.cli.main import main
from attnreid.config import load_config
from attnreid.data import build_dataset
from attnreid.data.combine import combine_datasets, dataset_specs
from attnreid.engine.build import load_dataset
from attnreid.errors import ConfigError
from tests.conftest import MARKET, tiny_train_overrides
from tests.reliability.helpers import write_checkpoint


def test_union_keeps_identities_and_cameras_apart(tiny_synth, make_market):
    synth = build_dataset("synth", tiny_synth)
    market = build_dataset("market1501", make_market(MARKET))
    both = combine_datasets([synth, market])
    assert both.name == "synth+market1501"
    assert both.num_train_pids == synth.num_train_pids + market.num_train_pids
    assert len(both.train) == len(synth.train) + len(market.train)
    assert both.train[: len(synth.train)] == synth.train
    tail = both.train[len(synth.train) :]
    assert [it.pid for it in tail] == [it.pid + synth.num_train_pids for it in market.train]
    assert min(it.camid for it in tail) > max(it.camid for it in synth.train)
    assert (both.query, both.gallery) == (synth.query, synth.gallery)
    assert combine_datasets([market]) is market


def test_specs_from_names_and_mappings():
    opts = {"split_seed": 3}
    assert dataset_specs("cuhk01", "/d", opts, "data.dataset") == [("cuhk01", "/d", opts)]
    got = dataset_specs(["a", {"name": "b", "root": "/b"}], "/d", opts, "data.dataset")
    assert got == [("a", "/d", opts), ("b", "/b", opts)]
    with pytest.raises(ConfigError, match=r"data.dataset: dataset 'b' has unknown key\(s\) rot"):
        dataset_specs([{"name": "b", "rot": "/b"}], "/d", {}, "data.dataset")
    with pytest.raises(ConfigError, match="eval.targets: 3 is not a dataset"):
        dataset_specs([3], "/d", {}, "eval.targets")


def test_config_takes_a_list_of_datasets(tiny_synth, make_market):
    market = make_market(MARKET)
    cfg = load_config(
        None,
        [f"data.root={tiny_synth}", f"data.dataset=[synth, {{name: market1501, root: {market}}}]"],
    )
    assert load_dataset(cfg).num_train_pids == 6 + 2


@pytest.mark.slow
def test_eval_targets_give_one_row_per_test_set(tiny_synth, make_market, tmp_path, capsys):
    market = make_market(MARKET)
    ov = ["~model.options", *tiny_train_overrides(tiny_synth, tmp_path / "run")]
    ckpt = write_checkpoint(tmp_path / "c.ckpt", 6, load_config("demo", ov))
    single = {}
    for name, root in (("synth", tiny_synth), ("market1501", market)):
        capsys.readouterr()
        argv = ["eval", "--checkpoint", str(ckpt), f"data.dataset={name}", f"data.root={root}"]
        assert main([*argv, "--json"]) == 0
        single[name] = json.loads(capsys.readouterr().out)
    targets = f"eval.targets=[synth, {{name: market1501, root: {market}}}]"
    assert main(["eval", "--checkpoint", str(ckpt), targets, "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    np.testing.assert_equal(both, single)  # NaN (R20 of a tiny gallery) equals NaN
    assert main(["eval", "--checkpoint", str(ckpt), targets]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith(("| synth ", "| market1501 "))]
    # the ranking table, then the verification table: one row per target in each
    assert [r.split()[1] for r in rows] == ["synth", "market1501"] * 2
    assert f"{100 * both['market1501']['rank1']:5.1f}" in rows[1]
