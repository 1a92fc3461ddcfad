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
    assert set(EXPECTED) <= {p.stem for p in PATHS}


CHECKED = "# NBVAL_CHECK_OUTPUT"


def _cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    """No outputs in git, except the reference text of cells nbval compares (``# NBVAL_CHECK_OUTPUT``)."""
    book = json.loads(path.read_text(encoding="utf-8"))
    for cell in _cells(path):
        if "".join(cell["source"]).startswith(CHECKED):
            continue
        assert cell["outputs"] == [], "".join(cell["source"])[:60]
    assert "widgets" not in book["metadata"]  # no saved widget state either


@pytest.mark.parametrize("path", [p for p in PATHS if p.stem != "04_studio"], ids=lambda p: p.stem)
def test_deterministic_cells_are_compared_by_nbval(path):
    """nbval compares only marked cells that hold a reference output and an execution count
    (nbstripout keeps them: ``keep_output`` metadata, and the hook runs with ``--keep-count``)."""
    if path.stem not in EXPECTED:
        pytest.skip("not one of the five tutorial notebooks")
    checked = [c for c in _cells(path) if "".join(c["source"]).startswith(CHECKED)]
    assert checked, f"mark a deterministic cell (e.g. clip.sample_rate, clip.waveform.shape) {CHECKED}"
    for cell in checked:
        assert cell["metadata"].get("keep_output") is True and cell["execution_count"] is not None
        (output,) = cell["outputs"]
        assert set(output["data"]) == {"text/plain"} and output["data"]["text/plain"].strip()


def test_notebook_02_shows_a_laptop_path_and_what_the_big_one_costs():
    path = NOTEBOOKS / "02_image_to_music.ipynb"
    code = "\n".join(_code(path))
    text = path.read_text(encoding="utf-8")
    main = next(c for c in _code(path) if "story = mg.image_to_music(" in c)
    assert 'writer="template"' in main  # the cell every newcomer runs downloads no writer
    assert 'captioner="blip2"' in code and 'writer="qwen2-0.5b"' in code
    assert "28 GB" in text and "MiniGPT4 + ChatGLM-6B" in text


def test_the_served_studio_notebook_is_the_studio_alone():
    """Voilà shows every output: no requests printed, no clips, no generation while the page loads."""
    code = _code(NOTEBOOKS / "04_studio.ipynb")
    assert code[-1].strip() == "mg.studio()" and len(code) == 2
    joined = "\n".join(code)
    assert ".request" not in joined and "mg.show" not in joined and ".run(" not in joined


def test_notebook_05_explains_the_step_numbers_and_the_colour_scale():
    text = (NOTEBOOKS / "05_how_latent_diffusion_makes_sound.ipynb").read_text(encoding="utf-8")
    assert "counts from 0" in text and "−80 dB" in text


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_one_import_and_it_comes_first_with_the_model_note(path):
    code = _code(path)
    imports = [line for cell in code for line in cell.splitlines() if re.match(r"\s*(import|from)\s", line)]
    assert imports == ["import mgtoolkit as mg"]
    assert code[0].startswith("import mgtoolkit as mg") and "mg.about()" in code[0]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_few_short_cells(path):
    code = _code(path)
    fewest = 2 if path.stem == "04_studio" else 5  # the served studio: the model note and the studio
    assert fewest <= len(code) <= 8, f"{len(code)} code cells"
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
