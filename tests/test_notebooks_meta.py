"""The tutorial notebooks stay short stories: stripped, one import, few short cells, no helpers.

(Running them is nbval's job: ``pytest --nbval-lax notebooks`` with ``MGTOOLKIT_MODEL=tiny``.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = [
    "01_quickstart",
    "02_image_to_music",
    "03_audio_to_music",
    "04_studio",
    "05_how_latent_diffusion_makes_sound",
]
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
MAX_LINES = 10


def _code(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_the_five_notebooks_are_there():
    assert [p.stem for p in PATHS] == EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    book = json.loads(path.read_text(encoding="utf-8"))
    for cell in book["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert "widgets" not in book["metadata"]  # no saved widget state either


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_one_import_and_it_comes_first_with_the_model_note(path):
    code = _code(path)
    imports = [line for cell in code for line in cell.splitlines() if re.match(r"\s*(import|from)\s", line)]
    assert imports == ["import mgtoolkit as mg"]
    assert code[0].startswith("import mgtoolkit as mg") and "mg.about()" in code[0]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_few_short_cells(path):
    code = _code(path)
    assert 5 <= len(code) <= 8, f"{len(code)} code cells"
    long = [c for c in code if len(c.strip().splitlines()) > MAX_LINES]
    assert not long


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_no_helpers_devices_absolute_paths_or_environment(path):
    source = "\n".join(_code(path))
    assert not re.search(r"^\s*(def|class|lambda)\b", source, re.M), "move helpers into the package"
    assert "device=" not in source and "cuda" not in source.lower()
    assert not re.search(r"""["'](/|[A-Za-z]:\\|~)""", source), "no absolute paths"
    assert "os.environ" not in source and "MGTOOLKIT_MODEL" not in source  # the model comes from outside
    assert "model=" not in source  # real models by default; tests switch to tiny through the environment
