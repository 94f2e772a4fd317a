"""Shared pieces of the reliability tests: the CLI's error line, tiny checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from attnreid.cli.main import main


def cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``attnreid ARGV``; assert it fails with exactly one ``error:`` line (exit 2) and
    no traceback; return the message after ``error: ``."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0].removeprefix("error: ")


def write_checkpoint(path: Path, num_classes: int, config: dict[str, Any]) -> Path:
    """An attnreid checkpoint as training writes it for ``config`` (a loaded config; its
    model with its options, untrained, with ``num_classes`` classes), without training."""
    from attnreid.engine.build import build_model_from_config
    from attnreid.engine.module import ReIDModule

    model = build_model_from_config(config, num_classes)
    module = ReIDModule(model, config)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"loss.{k}": v for k, v in module.loss.state_dict().items()})
    ckpt = {"state_dict": state, "hyper_parameters": dict(module.hparams), "epoch": 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path
