"""No module of the package is over 600 lines: a module that grows past it is split along its jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mgtoolkit"
MOST_LINES = 600


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def test_the_package_has_modules():
    assert len(MODULES) > 50 and "api.py" in MODULES  # the walk below really sees the package


@pytest.mark.parametrize("module", MODULES)
def test_module_is_at_most_600_lines(module):
    lines = _lines(PACKAGE / module)
    assert lines <= MOST_LINES, (
        f"mgtoolkit/{module} has {lines} lines (at most {MOST_LINES}): split it along its jobs "
        "and re-export its public names from where they are imported today"
    )
