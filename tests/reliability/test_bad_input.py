"""Bad input: each case is what a user can feed in, and the one line they see.

Every case here is a row of the table in ``docs/errors.md`` (input -> message); the messages
asserted below are the ones listed there. Cases that must load (JPEG data in a ``.png``,
grayscale and RGBA images) are checked to load as RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnreid.cli.main import main, one_line
from attnreid.config import load_config
from attnreid.data import build_test_loader, build_transforms, read_image
from attnreid.data.base import ReIDItem
from attnreid.errors import DatasetError
from tests.conftest import MARKET, tiny_train_overrides, write_image
from tests.data.cuhk03_mat import write_split_mat
from tests.reliability.helpers import cli_error, write_checkpoint


def _stats(capsys, root, name: str = "market1501", *options: str) -> str:
    opts = [a for o in options for a in ("--option", o)]
    return cli_error(capsys, "data", "stats", name, "--root", root, *opts)


def _worker_error(path) -> str:
    """The line the CLI prints for an image that fails in a DataLoader worker."""
    tf = build_transforms(32, 16, train=False)
    loader = build_test_loader([ReIDItem(str(path), 1, 0)], tf, batch_size=1, workers=1)
    with pytest.raises(DatasetError) as exc:
        next(iter(loader))
    return one_line(exc.value)


# ------------------------------------------------------------------ dataset folders


def test_dataset_root_missing(capsys, tmp_path):
    root = tmp_path / "nowhere"
    assert _stats(capsys, root) == f"market1501: dataset folder {root} does not exist"


def test_dataset_root_one_level_too_high(capsys, make_market, tmp_path):
    make_market(MARKET, tmp_path / "data" / "my-market")
    top = tmp_path / "data"
    assert _stats(capsys, top) == (
        f"market1501: {top} holds the dataset one level down, in my-market/: point the dataset "
        f"root (data.root) at {top / 'my-market'}"
    )


def test_dataset_root_one_level_too_low(capsys, make_market):
    root = make_market(MARKET)
    low = root / "bounding_box_train"
    assert _stats(capsys, low) == (
        f"market1501: {low} is the bounding_box_train folder of a market1501 dataset, one "
        f"level too low: point the dataset root (data.root) at {root}"
    )


def test_split_folder_empty(capsys, make_market):
    root = make_market({**MARKET, "query": []})
    assert _stats(capsys, root) == (
        f"market1501: the query split is empty (no images found in {root / 'query'})"
    )


def test_file_name_that_does_not_parse(capsys, make_market):
    root = make_market({**MARKET, "query": ["person1.jpg"]})
    assert _stats(capsys, root) == (
        f"market1501: file name {root / 'query' / 'person1.jpg'} does not match the layout "
        f"(expected PPPP_cC..., e.g. 0002_c1s1_000451_03.jpg)"
    )


# ------------------------------------------------------------------ image files


def test_truncated_jpeg(tmp_path):
    full = write_image(tmp_path / "full.jpg", size=(32, 64)).read_bytes()
    cut = tmp_path / "0001_c1s1_000001_01.jpg"
    cut.write_bytes(full[: len(full) // 2])
    assert _worker_error(cut).startswith(f"unreadable or truncated image {cut}: ")


def test_png_holding_jpeg_data_loads(tmp_path):
    path = write_image(tmp_path / "0001_c1s1_000001_01.png", size=(16, 32), fmt="JPEG")
    assert path.read_bytes()[:2] == b"\xff\xd8"  # JPEG data under a .png name
    img = read_image(path)
    assert img.mode == "RGB" and img.size == (16, 32)


def test_file_that_is_not_an_image(tmp_path):
    path = tmp_path / "0001_c1s1_000001_01.jpg"
    path.write_text("<html>404 not found</html>")
    assert _worker_error(path) == f"not an image (cannot identify its format): {path}"


def test_grayscale_and_rgba_images_load_as_rgb(tmp_path):
    Image.new("L", (8, 16), 200).save(tmp_path / "gray.png")
    Image.new("RGBA", (8, 16), (10, 20, 30, 255)).save(tmp_path / "rgba.png")
    Image.new("LA", (8, 16), (50, 0)).save(tmp_path / "la.png")
    for name, pixel in (("gray", (200,) * 3), ("rgba", (10, 20, 30)), ("la", (0, 0, 0))):
        img = read_image(tmp_path / f"{name}.png")
        assert img.mode == "RGB" and img.getpixel((0, 0)) == pixel
    tf = build_transforms(32, 16, train=False)
    assert tf(read_image(tmp_path / "gray.png")).shape == (3, 32, 16)


# ------------------------------------------------------------------ split files, manifests


def test_split_mat_with_missing_fields(capsys, tmp_path):
    from scipy.io import savemat

    (tmp_path / "images_labeled").mkdir()
    split = tmp_path / "split.mat"
    savemat(split, {"filelist": np.array(["1_001_1_01.png"], dtype=object), "labels": [[1]]})
    assert _stats(capsys, tmp_path, "cuhk03", f"split_file={split}") == (
        f"cuhk03: split file {split} lacks the field(s) camId, train_idx, query_idx, gallery_idx"
    )
    names = ["1_001_1_01.png", "1_001_2_06.png"]
    for i, name in enumerate(names):
        write_image(tmp_path / "images_labeled" / name, seed=i, fmt="PNG")
    write_split_mat(split, names, [1, 1], [1, 2], [1, 2], [1], [2])  # complete: it loads
    argv = ["data", "stats", "cuhk03", "--root", str(tmp_path), "--option", f"split_file={split}"]
    assert main(argv) == 0


def _manifest(tmp_path, text: str):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(tmp_path / "img" / name)
    csv = tmp_path / "list.csv"
    csv.write_text(text)
    return csv


def test_manifest_with_unknown_columns(capsys, tmp_path):
    csv = _manifest(tmp_path, "path,pid,camid,split,colour\nimg/a.jpg,4,0,train,red\n")
    assert _stats(capsys, csv, "custom") == (
        f"custom: manifest {csv} has unknown column(s) colour "
        f"(expected path, pid, camid, split[, trackid])"
    )


def test_manifest_pid_that_is_not_an_integer(capsys, tmp_path):
    csv = _manifest(tmp_path, "path,pid,camid,split\nimg/a.jpg,4,0,train\nimg/b.jpg,7b,1,query\n")
    assert _stats(capsys, csv, "custom") == (
        f"custom: manifest {csv} line 3: pid '7b' is not an integer"
    )


def test_manifest_without_gallery(capsys, tmp_path):
    csv = _manifest(tmp_path, "path,pid,camid,split\nimg/a.jpg,4,0,train\nimg/b.jpg,7,1,query\n")
    assert _stats(capsys, csv, "custom") == (
        f"custom: manifest {csv} lists query images but no gallery images (split column value "
        f"'gallery'): there is nothing to evaluate against"
    )


# ------------------------------------------------------------------ configs


def test_config_key_that_does_not_exist(capsys):
    assert cli_error(capsys, "train", "-c", "demo", "--print-config", "train.max_epoch=3") == (
        "unknown config key 'train.max_epoch'; did you mean 'train.max_epochs'?"
    )


def test_config_value_of_the_wrong_type(capsys):
    assert cli_error(capsys, "train", "-c", "demo", "--print-config", "optim.lr=fast") == (
        "config key 'optim.lr' must be of type float, got 'fast' (str)"
    )


# ------------------------------------------------------------------ checkpoints


def _tiny(root, out, **extra):
    ov = tiny_train_overrides(
        root, out, **{"model.name": "resnet18", "data.height": 32, "data.width": 16, **extra}
    )
    return [*ov, "~model.options"]


def test_checkpoint_of_another_architecture(capsys, tiny_synth, tmp_path):
    cfg = load_config("demo", _tiny(tiny_synth, tmp_path / "run"))
    ckpt = write_checkpoint(tmp_path / "resnet18.ckpt", 6, cfg)
    other = _tiny(tiny_synth, tmp_path / "run", **{"model.name": "resnet34"})
    assert cli_error(capsys, "train", "-c", "demo", *other, "--resume", ckpt) == (
        f"cannot resume from checkpoint {ckpt}: it holds model 'resnet18' but the config asks "
        f"for 'resnet34'"
    )
    assert cli_error(capsys, "eval", "-c", "demo", "--checkpoint", ckpt) == (
        f"checkpoint {ckpt} holds model 'resnet18' but config demo is for 'baseline'"
    )


def test_checkpoint_whose_weights_do_not_fit(capsys, tiny_synth, tmp_path):
    cfg = load_config("demo", _tiny(tiny_synth, tmp_path / "run"))
    ckpt = write_checkpoint(tmp_path / "edited.ckpt", 6, cfg)
    data = torch.load(ckpt, weights_only=True)
    first = next(iter(data["state_dict"]))
    data["state_dict"]["model.extra.weight"] = data["state_dict"].pop(first)
    torch.save(data, ckpt)
    msg = cli_error(
        capsys, "train", "-c", "demo", *_tiny(tiny_synth, tmp_path / "run"), "--resume", ckpt
    )
    assert msg == (
        f"cannot resume from checkpoint {ckpt}: its weights do not fit the configured "
        f"'resnet18' model (1 missing, 1 unexpected, 0 of another shape; first: {first}); "
        f"were model.options changed?"
    )


@pytest.mark.slow
def test_checkpoint_with_another_class_count(capsys, tiny_synth, tmp_path):
    cfg = load_config("demo", _tiny(tiny_synth, tmp_path / "run"))
    ckpt = write_checkpoint(tmp_path / "other-dataset.ckpt", 4, cfg)  # tiny_synth has 6 ids
    args = _tiny(tiny_synth, tmp_path / "run")
    assert cli_error(capsys, "train", "-c", "demo", *args, "--resume", ckpt) == (
        f"cannot resume from checkpoint {ckpt}: it has a 4-class classifier but the dataset "
        f"has 6 training identities (evaluation does not need the classifier: attnreid eval "
        f"--checkpoint {ckpt} drops it)"
    )
    # what the message offers works: evaluation without the classifier
    assert main(["eval", "--checkpoint", str(ckpt), "--json"]) == 0
    assert '"mAP"' in capsys.readouterr().out


def test_feature_file_whose_rows_do_not_match_its_metadata(capsys, tmp_path):
    path = tmp_path / "features.npz"
    np.savez(
        path,
        query_features=np.zeros((3, 8), np.float32),
        query_pids=np.array([1, 2]),
        query_camids=np.array([0, 1, 0]),
        query_paths=np.array(["a.jpg", "b.jpg", "c.jpg"]),
        gallery_features=np.zeros((2, 8), np.float32),
        gallery_pids=np.array([1, 2]),
        gallery_camids=np.array([1, 0]),
        gallery_paths=np.array(["d.jpg", "e.jpg"]),
    )
    argv = ("viz", "cmc", "--features", path, "-o", tmp_path / "cmc.png")
    assert cli_error(capsys, *argv) == (
        f"feature file {path}: query has 3 feature rows but 2 pids, 3 camids and 3 paths"
    )
    assert not (tmp_path / "cmc.png").exists()


# ------------------------------------------------------------------ training


@pytest.mark.slow
def test_loss_that_becomes_nan(capsys, tiny_synth, tmp_path, monkeypatch):
    from attnreid.engine.checkpoint import read_checkpoint
    from attnreid.losses.composite import CompositeLoss

    forward, calls = CompositeLoss.forward, []

    def nan_from_the_second_epoch(self, outputs, targets):  # the 2nd step: epoch 2, batch 1
        total, parts = forward(self, outputs, targets)
        calls.append(sorted(set(targets.tolist())))
        return (total * torch.nan if len(calls) == 2 else total), parts

    monkeypatch.setattr(CompositeLoss, "forward", nan_from_the_second_epoch)
    out = tmp_path / "run"
    ov = _tiny(tiny_synth, out, **{"train.max_steps_per_epoch": 1, "train.eval_every": 0})
    msg = cli_error(capsys, "train", "-c", "demo", *ov)
    last = out / "checkpoints" / "last.ckpt"
    ids = ", ".join(map(str, calls[1]))
    assert msg == (
        f"the loss became nan at epoch 2, step 2 (batch 1 of the epoch); batch identities "
        f"(training labels): {ids}; last good checkpoint: {last} (end of epoch 1; continue "
        f"with --resume); try a lower optim.lr or set train.grad_clip"
    )
    assert read_checkpoint(last)["epoch"] == 0  # still epoch 1's (0-based 0), intact
    state = read_checkpoint(last)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_weights_that_became_non_finite_are_never_checkpointed(tmp_path):
    from attnreid.engine.callbacks import EpochCheckpoint
    from attnreid.errors import TrainingError

    class Trainer:
        current_epoch = 4

        def save_checkpoint(self, path):  # pragma: no cover - must not be reached
            raise AssertionError("a checkpoint with NaN weights was written")

    module = torch.nn.Linear(2, 2)
    module.last_good_checkpoint = (tmp_path / "last.ckpt", 4)
    with torch.no_grad():
        module.weight[0, 0] = torch.inf
    with pytest.raises(TrainingError) as exc:
        EpochCheckpoint(tmp_path, 1).on_train_epoch_end(Trainer(), module)
    assert str(exc.value) == (
        f"the weights stopped being finite in epoch 5 (first: weight), so no checkpoint was "
        f"written; last good checkpoint: {tmp_path / 'last.ckpt'} (end of epoch 4); try a "
        f"lower optim.lr or set train.grad_clip"
    )


# ------------------------------------------------------------------ files of the wrong kind

#: What each file option expects, as its message says after "is not".
CHECKPOINT = (
    "a readable torch checkpoint (a .ckpt written by attnreid train, or a .pth written by "
    "torch.save)"
)
SAFETENSORS = "a readable safetensors file (the .safetensors weights written by attnreid train)"
FEATURES = "a readable feature file (a .npz archive written by attnreid extract)"
INDEX = "a readable gallery index (written by attnreid index build)"
ONNX = "a readable ONNX model (a .onnx file written by attnreid export onnx)"

#: 4 KiB of random bytes (fixed seed); torch would read the first one as a pickle opcode.
RANDOM = np.random.default_rng(14).bytes(4096)


def _zip_of_text() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", "a zip archive, but not a torch file")
    return buf.getvalue()


def _real_file(path) -> bytes:
    """The bytes of a good file of ``path``'s kind (to truncate or damage)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(64, 64)}, str(path))
    elif path.suffix == ".npz":
        arrays = {"features": np.zeros((32, 8)), "pids": np.zeros(32), "camids": np.zeros(32)}
        arrays["paths"] = np.array(["a.jpg"] * 32)
        np.savez(path, **{f"{s}_{k}": v for s in ("query", "gallery") for k, v in arrays.items()})
    elif path.suffix == ".index":
        from attnreid.retrieval.index import GalleryIndex

        features, names = np.eye(32, 8, dtype=np.float32), [f"{i}.jpg" for i in range(32)]
        GalleryIndex.build(features, names).save(path)
    else:
        torch.save({"state_dict": {"w": torch.zeros(64, 64)}}, path)
    return path.read_bytes()


def _bad_file(tmp_path, name: str, kind: str):
    path = tmp_path / name
    if kind in ("truncated", "damaged"):
        data = bytearray(_real_file(path))
        if kind == "truncated":
            del data[len(data) // 2 :]
        elif path.suffix == ".index":  # an SQLite file: the type byte of the rows' page
            data[_items_page_offset(path)] ^= 0xFF  # (the middle may be unused space)
        else:  # one byte flipped in the middle: the archive's checksum no longer matches
            data[len(data) // 2] ^= 0xFF
    else:
        data = {"text": b"hello\n", "random": RANDOM, "empty": b"", "zip": _zip_of_text()}[kind]
    path.write_bytes(data)
    return path


def _items_page_offset(path) -> int:
    """Where the index file's ``items`` table begins (its root page's header)."""
    import gc
    import sqlite3
    from contextlib import closing

    gc.collect()  # the index that wrote it closed
    with closing(sqlite3.connect(path)) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'items'").fetchone()
        return (root[0] - 1) * db.execute("PRAGMA page_size").fetchone()[0]


def _expected_error(what: str, path, kind: str, expected: str) -> str:
    """The message for a bad file. The gallery index (an SQLite file) names the file first,
    and says what is damaged in a file that is one; a zip may be a 0.1 index (a .npz)."""
    if what != "gallery index":
        return f"{what} {path} is {'empty, not' if kind == 'empty' else 'not'} {expected}"
    if kind in ("damaged", "truncated"):
        return f"gallery index {path} is damaged: database disk image is malformed"
    hint = " (an index of attnreid 0.1, a .npz: build it again)" if kind == "zip" else ""
    return f"{path} is not {expected}{hint}"


def _argv(option: str, path, tmp_path) -> list[str]:
    query = write_image(tmp_path / "query.jpg")
    out = tmp_path / "out"
    argv = {
        "eval --checkpoint": ["eval", "--checkpoint", path],
        "viz cmc --features": ["viz", "cmc", "--features", path, "-o", out],
        "viz ranks --features": ["viz", "ranks", "--features", path, "-o", out],
        "search --index": ["search", "--index", path, "--image", query],
        "index info": ["index", "info", path],
        "extract --onnx": ["extract", "--onnx", path, "-o", out],
        "index build --onnx": ["index", "build", "--onnx", path, "--folder", tmp_path, "-o", out],
    }[option]
    return [str(a) for a in argv]


_CKPT_KINDS = ("text", "random", "empty", "zip", "truncated")
_KINDS = ("random", "text", "empty")
_INDEX_KINDS = (*_KINDS, "damaged", "zip", "truncated")
#: (option, file name, kinds of bad content, what the message calls the file, what it expects)
FILE_OPTIONS = [
    ("eval --checkpoint", "model.ckpt", _CKPT_KINDS, "checkpoint", CHECKPOINT),
    ("eval --checkpoint", "model.pth", _CKPT_KINDS, "checkpoint", CHECKPOINT),
    ("eval --checkpoint", "model.safetensors", ("truncated", *_KINDS), "checkpoint", SAFETENSORS),
    ("viz cmc --features", "features.npz", (*_KINDS, "damaged"), "feature file", FEATURES),
    ("viz ranks --features", "features.npz", _KINDS, "feature file", FEATURES),
    ("search --index", "gallery.index", _KINDS, "gallery index", INDEX),
    ("index info", "gallery.index", _INDEX_KINDS, "gallery index", INDEX),
    ("extract --onnx", "model.onnx", _KINDS, "ONNX model", ONNX),
    ("index build --onnx", "model.onnx", _KINDS, "ONNX model", ONNX),
]
BAD_FILES = [
    pytest.param(option, name, kind, what, expected, id=f"{option}-{name}-{kind}")
    for option, name, kinds, what, expected in FILE_OPTIONS
    for kind in kinds
]
PARAMS = ("option", "name", "kind", "what", "expected")


@pytest.mark.parametrize(PARAMS, BAD_FILES)
def test_file_of_the_wrong_kind(capsys, tmp_path, option, name, kind, what, expected):
    path = _bad_file(tmp_path, name, kind)
    msg = cli_error(capsys, *_argv(option, path, tmp_path))
    assert msg == _expected_error(what, path, kind, expected)


@pytest.mark.parametrize(PARAMS, BAD_FILES)
def test_no_message_advises_loading_unsafely(capsys, tmp_path, option, name, kind, what, expected):
    from attnreid.errors import AttnReidError

    argv = _argv(option, _bad_file(tmp_path, name, kind), tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    shown = capsys.readouterr().err
    with pytest.raises(AttnReidError) as exc:  # --debug: the whole error, not its first line
        main(["--debug", *argv])
    for text in (shown, str(exc.value)):
        for advice in ("allow_pickle", "weights_only=False", "pickle.load"):
            assert advice not in text, text


# ------------------------------------------------------------------ manifest rows

ALLOW_OPTION = "the dataset option allow_outside_paths: true"


def _custom_manifest(csv, row: str):
    """A custom manifest at ``csv`` whose query row (line 3) is ``row``'s path."""
    for name in ("a.jpg", "c.jpg"):
        write_image(csv.parent / "img" / name)
    csv.write_text(
        f"path,pid,camid,split\nimg/a.jpg,4,0,train\n{row},7,1,query\nimg/c.jpg,7,0,gallery\n"
    )
    return csv


def test_manifest_row_naming_a_missing_image(capsys, tmp_path):
    csv = _custom_manifest(tmp_path / "list.csv", "img/gone.jpg")
    expected = (
        f"custom: manifest {csv} line 3: image {tmp_path / 'img' / 'gone.jpg'} does not exist"
    )
    assert _stats(capsys, csv, "custom") == expected
    ov = ["data.dataset=custom", f"data.root={csv}"]  # the same as a training / evaluation set
    assert cli_error(capsys, "eval", "--untrained", "-c", "demo", *ov) == expected
    _custom_manifest(csv, "")
    assert _stats(capsys, csv, "custom") == f"custom: manifest {csv} line 3: the path is empty"


def test_manifest_row_leaving_its_folder(capsys, tmp_path):
    from attnreid.data import build_dataset

    folder = tmp_path / "a" / "b"
    outside = write_image(tmp_path / "x.jpg")
    csv = _custom_manifest(folder / "list.csv", "../../x.jpg")
    assert _stats(capsys, csv, "custom") == (
        f"custom: manifest {csv} line 3: path ../../x.jpg leads outside {folder} (allow it with "
        f"{ALLOW_OPTION})"
    )
    ov = ["data.dataset=custom", f"data.root={csv}"]
    assert cli_error(capsys, "eval", "--untrained", "-c", "demo", *ov).endswith(
        f"leads outside {folder} (allow it with {ALLOW_OPTION})"
    )
    allow = ["--option", "allow_outside_paths=true"]
    assert main(["data", "stats", "custom", "--root", str(csv), *allow]) == 0
    query = build_dataset("custom", csv, allow_outside_paths=True).query
    assert Path(query[0].path).resolve() == outside.resolve()

    _custom_manifest(csv, str(outside))
    assert _stats(capsys, csv, "custom") == (
        f"custom: manifest {csv} line 3: path {outside} is absolute, not relative to {folder} "
        f"(allow it with {ALLOW_OPTION})"
    )
    assert build_dataset("custom", csv, allow_outside_paths=True).query[0].path == str(outside)


def test_index_manifest_row_leaving_its_folder(capsys, tmp_path, tiny_synth):
    from tests.retrieval.helpers import fake_checkpoint

    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth)
    folder = tmp_path / "crops"
    write_image(folder / "0001_c1s1_000001_01.jpg")
    outside = write_image(tmp_path / "0002_c2s1_000002_01.jpg")
    manifest = tmp_path / "m.csv"
    out = tmp_path / "g.index"
    argv = ["index", "build", "--checkpoint", ckpt, "--folder", folder, "--manifest", manifest]
    manifest.write_text(f"path\n{folder.name}/../../x.jpg\n")
    assert cli_error(capsys, *argv, "-o", out) == (
        f"manifest {manifest} line 2: path crops/../../x.jpg leads outside {folder} (allow it "
        f"with --allow-outside-paths)"
    )
    manifest.write_text(f"path\n0001_c1s1_000001_01.jpg\n{outside}\n")
    assert cli_error(capsys, *argv, "-o", out) == (
        f"manifest {manifest} line 3: path {outside} is absolute, not relative to {folder} "
        f"(allow it with --allow-outside-paths)"
    )
    assert not out.exists()
    assert main([str(a) for a in (*argv, "-o", out, "--allow-outside-paths")]) == 0
    assert "2 images (2 added)" in capsys.readouterr().out
