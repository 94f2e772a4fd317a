"""What a pip user gets: the wheel holds the presets, the CLI finds them from any folder, and
requirements.lock pins every package the declared dependencies pull in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from attnreid.config import CONFIG_DIR, dump_config, load_config

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_plain_install_has_presets_and_cli(tmp_path: Path) -> None:
    """Build the wheel, install it (``--no-deps``) into a throw-away venv that sees this
    environment's packages but not the source tree, and run the CLI from an empty folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # build from a copy: setuptools writes build/ and *.egg-info into the source folder
    source = tmp_path / "source"
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(REPO / "src", source / "src", ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    pip_wheel = ["pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    _run([sys.executable, "-m", *pip_wheel, str(source)], tmp_path, env)
    (wheel,) = wheels.glob("attnreid-*.whl")
    presets = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
    with zipfile.ZipFile(wheel) as zf:
        packed = sorted(Path(n).name for n in zf.namelist() if n.startswith("attnreid/configs/"))
    assert packed == presets

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    bin_dir = venv / "bin"
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # this environment's packages, after the venv's own (a .pth line is a plain path: the
    # editable install's own .pth, which points at src/, is not read through it)
    (site / "outer.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(bin_dir / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        tmp_path,
        env,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run(
        [str(bin_dir / "python"), "-c", "import attnreid; print(attnreid.__file__)"], empty, env
    )
    assert Path(where.strip()).is_relative_to(venv), where
    listed = _run([str(bin_dir / "attnreid"), "list", "presets"], empty, env).split()
    assert listed == [Path(p).stem for p in presets]
    printed = _run([str(bin_dir / "attnreid"), "train", "-c", "demo", "--print-config"], empty, env)
    assert printed == dump_config(load_config("demo"))
    assert list(empty.iterdir()) == []


def _requires(dist: str, extras: tuple[str, ...] = ()) -> list[Requirement]:
    env = default_environment()
    out = []
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or any(
            req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)
        ):
            out.append(req)
    return out


def test_lock_pins_the_whole_resolved_set() -> None:
    """Every package the declared dependencies (and ``dev``) need, transitively, is pinned in
    requirements.lock at the version installed here, and every declared range admits its pin.
    (Declared: the installed attnreid's metadata, which ``make`` refreshes whenever
    pyproject.toml changes.)"""
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups()
            lock[canonicalize_name(name)] = version
    declared = _requires("attnreid", ("dev",))  # pyproject.toml's, as installed
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is declared but not pinned"
        assert req.specifier.contains(lock[name], prereleases=True), f"{req} vs {lock[name]}"
    todo, seen = [(canonicalize_name(r.name), tuple(r.extras)) for r in declared], set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        assert name in lock, f"{name} is needed (transitively) but not pinned"
        assert metadata.version(name) == lock[name], f"{name}: installed != pinned"
        todo += [(canonicalize_name(r.name), tuple(r.extras)) for r in _requires(name, extras)]
