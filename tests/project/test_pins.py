"""The pinned stack: constraints.txt, environment.yml and pyproject.toml agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[2]
# The set that was seen to install and import together (see the README).
KEY_PINS = {
    "paddlepaddle": "3.3.1",
    "paddlenlp": "3.0.0b4",
    "ppdiffusers": "0.29.0",
    "numpy": "1.26.4",
    "huggingface_hub": "0.23.0",
    "datasets": "2.20.0",
    "aistudio-sdk": "0.2.6",
    "pyarrow": "21.0.0",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_in(text: str) -> dict[str, str]:
    """``name==version`` pairs found anywhere in a requirements-like text."""
    return {_norm(n): v for n, v in re.findall(r"^[\s\-]*([A-Za-z0-9_.\-]+)==([^\s;#,\]\"']+)", text, re.M)}


def test_constraints_hold_the_known_good_set():
    locked = pins_in((ROOT / "constraints.txt").read_text())
    assert {_norm(k): v for k, v in KEY_PINS.items()}.items() <= locked.items()


def test_environment_yml_agrees_with_constraints():
    locked = pins_in((ROOT / "constraints.txt").read_text())
    conda = pins_in((ROOT / "environment.yml").read_text())
    assert {_norm(k) for k in KEY_PINS} <= set(conda)
    assert {k: v for k, v in conda.items() if k in locked} == {k: locked[k] for k in conda if k in locked}
    assert set(conda) <= set(locked) | {"python"}


def test_pyproject_pins_agree_with_constraints():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [
        d for extra in project["optional-dependencies"].values() for d in extra
    ]
    locked = pins_in((ROOT / "constraints.txt").read_text())
    exact = pins_in("\n".join(specs))
    assert exact and all(locked[k] == v for k, v in exact.items())
