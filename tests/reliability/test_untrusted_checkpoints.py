"""Untrusted checkpoints: loading never executes code.

A crafted pickle whose unpickling would call ``os.system`` is refused, with an error naming
the file, by every path that reads checkpoints (the library, ``attnreid eval``, ``train
--resume`` and Lightning's own restore through our checkpoint IO), and its payload never runs.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

import attnreid
from attnreid.engine.checkpoint import AtomicCheckpointIO, read_checkpoint
from attnreid.errors import CheckpointError
from tests.conftest import tiny_train_overrides
from tests.reliability.helpers import cli_error


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    marker = tmp_path / f"PAYLOAD-RAN-{kind}"
    path = tmp_path / f"evil-{kind}.ckpt"
    obj = {"state_dict": {}, "hyper_parameters": {"x": Payload(marker)}, "epoch": 0}
    if kind == "zip":  # torch.save's format, as a real checkpoint
        torch.save(obj, path)
    else:  # a bare pickle stream (torch's legacy format)
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return path, marker


def _refused(path: Path, reason: str) -> str:
    return (
        f"checkpoint {path} was refused: it holds objects other than tensors and plain data, "
        f"and loading it could run code ({reason})"
    )


_OS = os.system.__module__  # posix (nt on Windows)
REASON = f"Trying to load unsupported GLOBAL {_OS}.system whose module {_OS} is blocked"


@pytest.mark.parametrize("kind", ["zip", "pickle"])
def test_crafted_pickle_is_refused_and_never_runs(kind, tmp_path, capsys, tiny_synth):
    path, marker = _crafted(tmp_path, kind)
    # the payload is real: an unrestricted load would run it
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    assert str(exc.value) == _refused(path, REASON)
    with pytest.raises(CheckpointError, match="was refused"):
        attnreid.load(path)
    with pytest.raises(CheckpointError, match="was refused"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)  # Lightning's restore
    assert cli_error(capsys, "eval", "--checkpoint", path) == _refused(path, REASON)
    ov = tiny_train_overrides(tiny_synth, tmp_path / "run", **{"model.name": "resnet18"})
    msg = cli_error(capsys, "train", "-c", "demo", *ov, "~model.options", "--resume", path)
    assert msg == _refused(path, REASON)
    assert not marker.exists()


def test_the_payload_would_run_without_the_guard(tmp_path):
    """The control: the crafted file does execute code when unpickled without restriction."""
    path, marker = _crafted(tmp_path, "pickle")
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_pretrained_weights_file_with_a_payload_is_refused(tmp_path):
    from attnreid.errors import ModelError
    from attnreid.models.backbones.weights import load_weights_file

    path, marker = _crafted(tmp_path, "zip")
    weights = path.rename(tmp_path / "weights.pth")
    with pytest.raises(ModelError) as exc:
        load_weights_file(weights)
    assert str(exc.value) == (
        f"weights file {weights} was refused: it holds objects other than tensors and plain "
        f"data, and loading it could run code ({REASON})"
    )
    assert "weights_only=False" not in str(exc.value)
    assert not marker.exists()


def test_feature_file_with_pickled_objects_is_refused(tmp_path):
    import numpy as np

    from attnreid.errors import AttnReidError
    from attnreid.evaluation.features import load_features

    marker = tmp_path / "PAYLOAD-RAN-npz"
    path = tmp_path / "features.npz"
    paths = np.empty(1, dtype=object)
    paths[0] = Payload(marker)
    np.savez(
        path,
        query_features=np.zeros((1, 4), np.float32),
        query_pids=np.zeros(1, np.int64),
        query_camids=np.zeros(1, np.int64),
        query_paths=paths,  # an object array: a pickle inside the archive
    )
    with pytest.raises(AttnReidError) as exc:
        load_features(path)
    assert str(exc.value) == (
        f"feature file {path} was refused: its query arrays hold pickled objects, and loading "
        f"them could run code"
    )
    assert not marker.exists()
