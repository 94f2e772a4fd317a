"""The README's Layout section names every package folder and top-level module of the package,
so the map a newcomer reads is the tree they find."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "attnreid"


def _layout_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def test_layout_names_every_package_folder_and_top_level_module():
    block = _layout_block()
    folders = [p.parent for p in PACKAGE.rglob("__init__.py")] + [
        p for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    ]
    wanted = {f"{p.name}/" for p in folders if p != PACKAGE}
    wanted |= {p.name for p in PACKAGE.glob("*.py")}
    missing = sorted(w for w in wanted if w not in block)
    assert not missing, f"README Layout does not name: {', '.join(missing)}"
