from __future__ import annotations

import pytest

from attnreid.config import load_config, parse_overrides
from attnreid.errors import ConfigError


def test_overrides_and_types(tmp_path):
    cfg = load_config(
        None,
        [
            "optim.lr=1e-3",
            "data.height=128",
            "model.options.backbone=resnet18",
            "train.max_steps_per_epoch=3",
            "name=x",
        ],
    )
    assert cfg["optim"]["lr"] == 1e-3 and cfg["data"]["height"] == 128
    assert cfg["model"]["options"] == {"backbone": "resnet18"}
    assert cfg["output_dir"] == "runs/x"
    assert parse_overrides(["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}


def test_unknown_key_suggests():
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        load_config(None, ["optim.lrr=1"])


def test_wrong_type():
    with pytest.raises(ConfigError, match="'data.height' must be of type int"):
        load_config(None, ["data.height=tall"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(None, ["optim.lr"])


def test_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.1\ndata:\n  width: 64\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\noptim:\n  name: sgd\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg["optim"] == {**cfg["optim"], "lr": 0.1, "name": "sgd"}
    assert cfg["data"]["width"] == 64
    (tmp_path / "bad.yaml").write_text("optim: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_presets_load():
    from attnreid.config import CONFIG_DIR

    presets = sorted(CONFIG_DIR.glob("*.yaml"))
    assert presets
    for p in presets:
        load_config(p)
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        load_config("no_such_preset")


def test_override_of_one_option_keeps_the_others():
    """``model.options.backbone=...`` swaps the backbone and keeps the preset's other options
    (before the deep merge, ``model.options`` was replaced and lost last_stride / block_size)."""
    preset = load_config("sona2_net_cpu")["model"]["options"]
    cfg = load_config("sona2_net_cpu", ["model.options.backbone=resnet18"])
    assert cfg["model"]["options"] == {**preset, "backbone": "resnet18"}
    assert {"last_stride", "block_size"} <= set(cfg["model"]["options"])


def test_inheriting_preset_keeps_parent_options(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model:\n  name: baseline\n  options: {backbone: resnet18, last_stride: 1}\n"
        "data:\n  options: {split_seed: 3, num_train_ids: 10}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "_base_: base.yaml\nmodel:\n  options: {pooling: max}\ndata:\n  options: {split_seed: 4}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg["model"]["options"] == {"backbone": "resnet18", "last_stride": 1, "pooling": "max"}
    assert cfg["data"]["options"] == {"split_seed": 4, "num_train_ids": 10}


def test_removing_keys(tmp_path):
    cfg = load_config("sona2_net_cpu", ["~model.options.block_size"])
    assert "block_size" not in cfg["model"]["options"]
    assert cfg["model"]["options"]["last_stride"] == 1
    (tmp_path / "base.yaml").write_text("model:\n  options: {backbone: resnet18, last_stride: 1}\n")
    (tmp_path / "drop.yaml").write_text(
        "_base_: base.yaml\nmodel:\n  options: {_delete_: [last_stride]}\n"
    )
    assert load_config(tmp_path / "drop.yaml")["model"]["options"] == {"backbone": "resnet18"}
    (tmp_path / "replace.yaml").write_text(
        "_base_: base.yaml\nmodel:\n  options: {_delete_: true, pooling: max}\n"
    )
    assert load_config(tmp_path / "replace.yaml")["model"]["options"] == {"pooling": "max"}
    with pytest.raises(ConfigError, match="did you mean 'model.options.block_size'"):
        load_config("sona2_net_cpu", ["~model.options.blok_size"])
    with pytest.raises(ConfigError, match="keys of 'optim' cannot be removed"):
        load_config(None, ["~optim.lr"])


def test_clearing_a_free_form_mapping():
    assert load_config("demo", ["~model.options"])["model"]["options"] == {}
    assert load_config("demo", ["model.options={}"]) == load_config("demo")  # merges nothing
