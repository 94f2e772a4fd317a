"""The embedded synthetic dataset: layout, determinism, reuse and the Market-1501 naming."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from attnreid.data.synth import SynthConfig, generate_synthetic_reid
from attnreid.errors import ConfigError, DatasetError

MARKET_RE = re.compile(r"([-\d]+)_c(\d)s(\d)_(\d+)_(\d+)\.jpg")
SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
TINY = SynthConfig(
    num_train_ids=6, num_test_ids=6, num_cameras=3, num_distractors=5, num_junk=3, seed=7
)


def _files(root: Path) -> dict[str, list[tuple[int, int, str]]]:
    """(pid, camera, name) per split, parsed with the real Market-1501 regex."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for split, folder in SPLITS.items():
        rows = []
        for path in sorted((root / folder).iterdir()):
            m = MARKET_RE.fullmatch(path.name)
            assert m is not None, f"{path.name} does not match the Market-1501 pattern"
            rows.append((int(m.group(1)), int(m.group(2)), path.name))
        out[split] = rows
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "ds"
    summary = generate_synthetic_reid(root, TINY, progress=False)
    return root, summary


def test_layout_and_summary(tiny: tuple[Path, dict]) -> None:
    root, summary = tiny
    files = _files(root)
    assert not summary["reused"]
    assert summary["config"]["num_train_ids"] == 6 and summary["config"]["seed"] == 7
    for split, rows in files.items():
        assert summary[split]["images"] == len(rows)
        assert summary[split]["cameras"] == len({c for _, c, _ in rows})
        assert summary[split]["identities"] == len({p for p, _, _ in rows if p > 0})
    assert summary["gallery"]["distractors"] == 5 and summary["gallery"]["junk"] == 3
    meta = json.loads((root / "synth.json").read_text())
    assert meta["config"] == summary["config"] and meta["format_version"] >= 1
    for rows in files.values():
        assert all(1 <= cam <= 3 for _, cam, _ in rows)
        assert all(1 <= int(MARKET_RE.fullmatch(n).group(3)) <= 6 for _, _, n in rows)


def test_identity_splits(tiny: tuple[Path, dict]) -> None:
    files = _files(tiny[0])
    train = {p for p, _, _ in files["train"]}
    query = {p for p, _, _ in files["query"]}
    gallery = {p for p, _, _ in files["gallery"] if p > 0}
    assert train == set(range(1, 7))
    assert query == gallery == set(range(7, 13))
    # the train and query splits hold no distractors or junk
    assert all(p > 0 for p, _, _ in files["train"] + files["query"])
    assert {p for p, _, _ in files["gallery"]} >= {0, -1}
    assert any(n.startswith("0000_") for _, _, n in files["gallery"])
    assert any(n.startswith("-1_") for _, _, n in files["gallery"])

    cams_of: dict[int, set[int]] = defaultdict(set)
    for p, c, _ in files["query"] + files["gallery"]:
        cams_of[p].add(c)
    per_query_cam: dict[int, list[int]] = defaultdict(list)
    for p, c, _ in files["query"]:
        per_query_cam[p].append(c)
    for p, cams in per_query_cam.items():
        assert sorted(cams) == sorted(cams_of[p]), "one query per camera the identity is in"
        assert len(cams) >= 2
    gallery_cams: dict[int, set[int]] = defaultdict(set)
    for p, c, _ in files["gallery"]:
        gallery_cams[p].add(c)
    for p, c, _ in files["query"]:
        assert gallery_cams[p] - {c}, f"query {p} in camera {c} has no cross-camera match"


def test_images_decode_at_configured_size(tiny: tuple[Path, dict]) -> None:
    root = tiny[0]
    for folder in SPLITS.values():
        for path in sorted((root / folder).iterdir())[:8]:
            with Image.open(path) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                assert im.size == (TINY.width, TINY.height)


def test_deterministic_and_no_leftovers(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    root = tiny[0]
    other = tmp_path / "again"
    generate_synthetic_reid(other, TINY, progress=False)
    names = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    for rel in names:
        assert (root / rel).read_bytes() == (other / rel).read_bytes(), rel
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]
    assert sorted(p.name for p in root.parent.iterdir()) == ["ds"]


def test_other_seed_differs(tmp_path: Path) -> None:
    cfg = SynthConfig(
        num_train_ids=2, num_test_ids=2, num_cameras=2, num_distractors=0, num_junk=0, seed=1
    )
    a = generate_synthetic_reid(tmp_path / "a", cfg, progress=False)
    cfg.seed = 2
    b = generate_synthetic_reid(tmp_path / "b", cfg, progress=False)
    assert a["config"]["seed"] == 1 and b["config"]["seed"] == 2
    first = sorted((tmp_path / "a" / "query").iterdir())[0]
    assert not (tmp_path / "b" / "query" / first.name).exists() or (
        first.read_bytes() != (tmp_path / "b" / "query" / first.name).read_bytes()
    )


def test_reuse_mismatch_and_overwrite(tmp_path: Path) -> None:
    cfg = SynthConfig(
        num_train_ids=2, num_test_ids=2, num_cameras=2, num_distractors=1, num_junk=1, seed=3
    )
    root = tmp_path / "ds"
    first = generate_synthetic_reid(root, cfg, progress=False)
    marker = root / "query" / sorted(p.name for p in (root / "query").iterdir())[0]
    stamp = marker.stat().st_mtime_ns

    again = generate_synthetic_reid(root, cfg, progress=False)
    assert again["reused"] and marker.stat().st_mtime_ns == stamp
    assert {k: again[k] for k in ("train", "query", "gallery", "config")} == {
        k: first[k] for k in ("train", "query", "gallery", "config")
    }

    other = SynthConfig(
        num_train_ids=3, num_test_ids=2, num_cameras=2, num_distractors=1, num_junk=1, seed=3
    )
    with pytest.raises(DatasetError, match="num_train_ids"):
        generate_synthetic_reid(root, other, progress=False)
    assert marker.exists()  # untouched

    redone = generate_synthetic_reid(root, other, overwrite=True, progress=False)
    assert not redone["reused"] and redone["train"]["identities"] == 3
    assert json.loads((root / "synth.json").read_text())["config"]["num_train_ids"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    cfg = SynthConfig(num_train_ids=2, num_test_ids=2, num_cameras=2, seed=0)
    with pytest.raises(DatasetError, match=r"synth\.json"):
        generate_synthetic_reid(root, cfg, overwrite=True, progress=False)
    assert (root / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_cameras": 1},
        {"num_cameras": 10},
        {"cameras_per_id": (1, 3)},
        {"images_per_camera": (3, 2)},
        {"num_train_ids": 0},
        {"jpeg_quality": 0},
        {"height": "128"},
    ],
)
def test_invalid_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SynthConfig(**kwargs)
