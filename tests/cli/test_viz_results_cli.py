"""``attnreid viz ranks`` and ``attnreid viz cmc``: from features or checkpoints to PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnreid.cli.main import main
from tests.retrieval.helpers import fake_checkpoint


@pytest.fixture(scope="module")
def setup(tiny_synth, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viz_cli")
    ckpt = fake_checkpoint(tmp / "m.ckpt", tiny_synth)
    assert main(["extract", "--checkpoint", str(ckpt), "-o", str(tmp / "f.npz")]) == 0
    return tmp, ckpt


def png(path, min_size=(100, 100)):
    img = Image.open(path)
    assert img.format == "PNG" and img.size[0] >= min_size[0] and img.size[1] >= min_size[1]
    arr = np.asarray(img.convert("RGB")).astype(int)
    assert arr.std() > 10 and len(np.unique(arr.reshape(-1, 3), axis=0)) > 50  # not blank
    return img.size


def test_viz_ranks(setup, tmp_path, capsys):
    tmp, ckpt = setup
    out = tmp_path / "ranks.png"
    argv = ["viz", "ranks", "--features", str(tmp / "f.npz"), "--queries", "0,3,5", "--top", "4"]
    assert main([*argv, "--cell", "64x32", "-o", str(out)]) == 0
    assert "3 queries x top 4" in capsys.readouterr().out
    w, h = png(out)
    assert h > 3 * 64 and w > 5 * 32
    out2 = tmp_path / "ranks_rerank.png"
    assert main(["viz", "ranks", "--checkpoint", str(ckpt), "--rerank", "--num-queries", "2",
                 "-o", str(out2)]) == 0  # fmt: skip
    png(out2)
    assert main([*argv[:4], "--queries", "99", "-o", str(out)]) == 2
    assert "--queries: indices must lie in [0, 15]" in capsys.readouterr().err


def test_viz_cmc(setup, tmp_path, capsys):
    tmp, ckpt = setup
    out = tmp_path / "cmc.png"
    f = str(tmp / "f.npz")
    argv = ["viz", "cmc", "--features", f, "--features", f, "--label", "A", "--label", "B"]
    assert main([*argv, "--metric", "cosine", "-o", str(out)]) == 0
    assert "A: R1" in capsys.readouterr().out
    png(out, (600, 400))
    out2 = tmp_path / "cmc_ckpt.png"
    argv2 = ["viz", "cmc", "--features", f, "--checkpoint", str(ckpt), "--rerank"]  # a mix
    assert main([*argv2, "-o", str(out2)]) == 0
    assert capsys.readouterr().out.count("(re-ranked): R1") == 2
    png(out2, (600, 400))
    assert main([*argv[:4], "--label", "A", "--label", "B", "-o", str(out)]) == 2
    assert "2 --label for 1 curves" in capsys.readouterr().err
