"""The tests mirror the package: a folder of tests per package folder, ``tests/test_<module>.py`` for a
top-level module, repository-wide checks in ``tests/project/``; no two test files share a name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
PACKAGE = ROOT / "mgtoolkit"
OWN_FOLDERS = {"project", "parity", "fixtures"}  # not package folders: the repository, the torch
# comparison, and the test-only writers (hub layouts, torch files, crafted pickles)


def _test_files() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def test_each_test_folder_mirrors_a_package_folder():
    strays = []
    for folder in sorted(p for p in TESTS.rglob("*") if p.is_dir()):
        rel = folder.relative_to(TESTS)
        if rel.parts[0] in OWN_FOLDERS or any(part.startswith((".", "__")) for part in rel.parts):
            continue  # also __pycache__, .ipynb_checkpoints
        if not (PACKAGE / rel / "__init__.py").is_file():
            strays.append(f"tests/{rel.as_posix()}: mgtoolkit/{rel.as_posix()}/ is no package folder")
    assert not strays, "; ".join(strays) + " (move the tests to the folder of the code they test)"


def test_top_level_test_files_name_a_top_level_module():
    strays = [
        f"tests/{path.name}: there is no mgtoolkit/{path.name[len('test_') :]}"
        for path in TESTS.glob("test_*.py")
        if not (PACKAGE / path.name[len("test_") :]).is_file()
    ]
    assert not strays, "; ".join(strays) + " (move it to tests/<package folder>/ or tests/project/)"


def test_test_file_names_are_unique():
    """pytest imports test files by base name (no ``__init__.py``): two of one name cannot both run."""
    twice = [name for name, count in Counter(p.name for p in _test_files()).items() if count > 1]
    assert not twice, f"test files named alike in two folders: {twice} (rename one)"
