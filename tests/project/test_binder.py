"""Binder installs the project's own pinned set: CPU PaddlePaddle, the same versions, the package."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", text.strip(), maxsplit=1)[0]).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert "==" in line, f"{path.name}: {line!r} is not pinned exactly"
            name, version = line.split("==", 1)
            pins[_name(name)] = version.strip()
    return pins


def test_every_binder_pin_equals_constraints():
    binder, project = _pins(BINDER / "requirements.txt"), _pins(ROOT / "constraints.txt")
    assert binder, "binder/requirements.txt pins nothing"
    differing = {n: (v, project.get(n)) for n, v in binder.items() if project.get(n) != v}
    assert not differing, f"binder pin != constraints.txt: {differing}"


def test_binder_covers_the_runtime_dependencies_with_cpu_paddle():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = meta["optional-dependencies"]
    needed = {_name(r) for r in meta["dependencies"] + extras["cpu"] + extras["notebook"]}
    binder = _pins(BINDER / "requirements.txt")
    assert needed <= set(binder), f"missing from binder/requirements.txt: {sorted(needed - set(binder))}"
    assert "paddlepaddle" in binder and "paddlepaddle-gpu" not in binder
    assert "voila" in binder


def test_post_build_installs_the_package_under_the_constraints():
    script = (BINDER / "postBuild").read_text(encoding="utf-8")
    assert script.startswith("#!/bin/bash") and (BINDER / "postBuild").stat().st_mode & 0o111
    install = [line for line in script.splitlines() if "pip install" in line]
    assert install and "-c constraints.txt" in install[0] and '-e ".[cpu,notebook,midi]"' in install[0]


def test_binder_python_matches_the_project():
    runtime = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    major_minor = tuple(int(p) for p in runtime.removeprefix("python-").split("."))
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    low = tuple(int(p) for p in meta["requires-python"].removeprefix(">=").split("."))
    assert major_minor >= low
