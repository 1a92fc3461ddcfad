"""docs/development.md's layout names every module of the package, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mgtoolkit"


def _block() -> str:
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = text.split("## The layout", 1)[1]
    return section.split("```", 2)[1]


def _named_in(block: str) -> set[str]:
    """Each ``name.py`` and ``folder/`` of the block, with the top-level folder it is listed under."""
    named, folder = set(), ""
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        if not line.startswith("   "):  # a top-level entry: "  name/ ..." or "  name.py ..."
            first = line.split()[0]
            folder = first if first.endswith("/") else ""
        for token in re.findall(r"[a-z0-9_]+(?:\.py|/)", line):
            named.add(folder + token if folder and token != folder else token)
    return named


def _modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if parts[-1] == "__init__.py" and len(parts) == 1:
            continue
        if len(parts) == 1:
            found.add(parts[0])
        elif len(parts) == 2:
            found.add(parts[0] + "/" if parts[1] == "__init__.py" else f"{parts[0]}/{parts[1]}")
        else:  # a package inside a folder is named as a whole: models/safe_pickle/
            found.add(f"{parts[0]}/{parts[1]}/")
    return found


def test_every_module_is_in_the_layout():
    named = _named_in(_block())
    missing = sorted(m for m in _modules() if m not in named and not m.endswith("__init__.py"))
    assert not missing, f"docs/development.md's layout lacks: {missing}"


def test_the_layout_names_nothing_that_is_gone():
    modules = _modules()
    named = {n for n in _named_in(_block()) if n.endswith(".py")}
    gone = sorted(n for n in named if n not in modules and n.split("/")[-1] != "glossary_zh.tsv")
    assert not gone, f"docs/development.md's layout names modules that do not exist: {gone}"
