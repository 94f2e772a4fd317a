"""A damaged gallery index file is one line, never a traceback.

Copies of a small index file (48 rows: 40 in the faiss snapshot of the ``hnsw`` and ``ivf``
kinds, 8 appended after it) are truncated at 20 offsets spread over the file and have a byte
flipped at 20 seeded random positions. Each copy, opened by ``attnreid index info``, either
opens (the damage hit unused space, or a value that is still valid) or is refused with exit
status 2 and exactly one line, ``error: ...``, naming the file; opened with
:meth:`GalleryIndex.load`, it either opens or raises an :class:`AttnReidError`."""

from __future__ import annotations

import json
import random
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from attnreid.cli.main import main
from attnreid.errors import AttnReidError
from attnreid.retrieval import GalleryIndex

SNAPSHOT_ROWS, APPENDED, DIM = 40, 8, 16
CASES = 20


def _index_file(kind: str, folder: Path) -> bytes:
    """The bytes of a closed index file of ``kind`` (everything in the main file: no WAL)."""
    rng = np.random.default_rng(0)
    n = SNAPSHOT_ROWS + APPENDED
    feats = rng.standard_normal((n, DIM)).astype(np.float32)
    paths = [f"crops/{i:04d}_c{i % 3 + 1}s1_{i:06d}_01.jpg" for i in range(n)]
    first = slice(0, SNAPSHOT_ROWS)
    index = GalleryIndex.build(
        feats[first], paths[first], pids=np.arange(n)[first] // 4, camids=np.arange(n)[first] % 3,
        times=np.arange(n, dtype=np.float64)[first], metric="cosine", kind=kind,
        info={"model": "resnet18", "model_file": "/models/m.ckpt"},
    )  # fmt: skip
    path = index.save(folder / f"{kind}.index")
    index.add(feats[SNAPSHOT_ROWS:], paths[SNAPSHOT_ROWS:], camids=np.arange(APPENDED) % 3)
    index.file.close()  # the last connection: the WAL is written back into the file
    assert len(GalleryIndex.load(path)) == n
    return path.read_bytes()


@pytest.fixture(scope="module", params=["flat", "hnsw", "ivf"])
def original(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _index_file(request.param, tmp_path_factory.mktemp(request.param))


def _truncations(size: int) -> list[int]:
    """20 offsets spread over the file: 0, 1, 15 (inside SQLite's magic string), 100 (the end
    of its header), the middle, ``size - 1`` and 14 more evenly between."""
    fixed = {0, 1, 15, 100, size // 2, size - 1}
    spread = np.linspace(101, size - 2, CASES - len(fixed)).astype(int)
    return sorted(fixed | set(spread.tolist()))


def _outcome(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """What opening ``path`` gives, through the CLI and the Python API: ``ok`` or ``refused:
    <the line>``. Anything else (a traceback, another exit status, more than one line, a line
    that does not name the file, an exception other than AttnReidError) fails the test, with
    what happened."""
    capsys.readouterr()
    try:
        status = main(["index", "info", str(path)])
    except BaseException as exc:
        pytest.fail(f"attnreid index info {path.name}: traceback\n{traceback.format_exc()}"
                    f"{type(exc).__name__}")  # fmt: skip
    out, err = capsys.readouterr()
    if status == 0:
        assert json.loads(out)["format"] == "attnreid-gallery-index" and not err, err
        outcome = "ok"
    else:
        lines = err.splitlines()
        assert status == 2, f"{path.name}: exit status {status}, stderr {err!r}"
        assert len(lines) == 1 and err.endswith("\n"), f"{path.name}: not one line: {err!r}"
        assert lines[0].startswith("error: ") and str(path) in lines[0], lines[0]
        outcome = f"refused: {lines[0].replace(str(path), '<file>')}"
    try:
        loaded = GalleryIndex.load(path)
    except AttnReidError as exc:
        assert outcome != "ok", f"{path.name}: the CLI opened it, the API raised {exc}"
    except BaseException:
        pytest.fail(f"GalleryIndex.load({path.name}) raised\n{traceback.format_exc()}")
    else:
        assert outcome == "ok", f"{path.name}: the API opened it, the CLI said {outcome}"
        loaded.file.close()
    return outcome


def _report(what: str, outcomes: Counter) -> None:
    outcomes = Counter(outcomes)
    ok = outcomes.pop("ok", 0)
    print(f"\n{what}: {ok} opened, {sum(outcomes.values())} refused in one line")
    for line, n in outcomes.most_common():
        print(f"  {n} x {line[:150]}")


def test_truncated_copies_open_or_are_refused_in_one_line(original, tmp_path, capsys):
    offsets = _truncations(len(original))
    assert len(offsets) == CASES and {0, 1, 15, 100, len(original) - 1} <= set(offsets)
    outcomes = Counter()
    for offset in offsets:
        copy = tmp_path / f"cut{offset}" / "g.index"  # a folder each: its own -wal and -shm
        copy.parent.mkdir()
        copy.write_bytes(original[:offset])
        outcomes[_outcome(copy, capsys)] += 1
    with capsys.disabled():
        _report(f"{len(offsets)} truncations of a {len(original)}-byte file", outcomes)
    assert outcomes["ok"] < CASES  # an empty file, at least, is refused


def test_copies_with_a_flipped_byte_open_or_are_refused_in_one_line(original, tmp_path, capsys):
    positions = sorted(random.Random(26).sample(range(len(original)), CASES))
    outcomes = Counter()
    for pos in positions:
        damaged = bytearray(original)
        damaged[pos] ^= 0xFF
        copy = tmp_path / f"flip{pos}" / "g.index"
        copy.parent.mkdir()
        copy.write_bytes(bytes(damaged))
        outcomes[_outcome(copy, capsys)] += 1
    with capsys.disabled():
        _report(f"{CASES} flipped bytes (at {positions})", outcomes)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
@pytest.mark.parametrize(
    "item, value, fault",
    [
        (3, b"\0" * 8, "item 3's feature is not 16 float32 values"),
        (3, "x" * 64, "item 3's feature is not 16 float32 values"),  # text, not a blob
        (SNAPSHOT_ROWS + 2, b"\0" * 64, None),  # zeros: a valid feature
        (SNAPSHOT_ROWS + 2, np.float32([np.nan] + [0] * 15).tobytes(), "a feature holds NaN or "
         "infinite values"),
    ],
)
def test_a_bad_feature_is_refused_whether_or_not_the_snapshot_holds_its_row(
    kind, item, value, fault, tmp_path
):
    """An ``ivf`` file's first 40 rows are in its faiss snapshot, so their feature values are
    not read when it opens, but SQLite still checks their type and length; rows after the
    snapshot (and every row of a ``flat`` file) are read and checked in full. The snapshot
    itself is read chunk by chunk: the index opens with the same vectors."""
    import sqlite3
    from contextlib import closing

    (tmp_path / "src").mkdir()
    path = tmp_path / f"{kind}.index"
    path.write_bytes(_index_file(kind, tmp_path / "src"))
    before = GalleryIndex.load(path)
    vectors = np.stack([before.vector(i) for i in range(len(before))])
    before.file.close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE items SET feature = ? WHERE id = ?", (value, item))
        db.commit()
    if fault is None:
        after = GalleryIndex.load(path)
        got = np.stack([after.vector(i) for i in range(len(after))])
        changed = np.flatnonzero(np.abs(got - vectors).max(1) > 0).tolist()
        assert changed == [item]  # the zeroed row, read after the snapshot
        return
    with pytest.raises(AttnReidError) as exc:
        GalleryIndex.load(path)
    assert str(exc.value) == f"gallery index {path} is damaged: {fault}"
