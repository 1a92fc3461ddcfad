"""model_index.json has one reader (models/model_files.read_model_index) with the configuration
checks (a regular file, a size bound, a JSON object): every place that reads the file refuses a bad
one in one line naming it, instead of a raw JSON or attribute error, or reading without end."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mgtoolkit.errors import InvalidInputError, ModelUnavailableError
from mgtoolkit.models import audioldm, config_sizes, convert, fetch, formats, model_files, registry

PACKAGE = Path(__file__).resolve().parents[2] / "mgtoolkit"


def _spec(folder):
    return registry.ModelSpec(str(folder), str(folder), pipeline="AudioLDMPipeline", license="")


READERS = {  # every place in models/ that reads a pipeline folder's model_index.json
    "resolve_model": lambda folder: registry.resolve_model(str(folder)),
    "folder_format": formats.folder_format,
    "fetch needs .bin": fetch._needs_bin,
    "convert's parts": lambda folder: convert._part_classes(folder, None),
    "pipeline class": lambda folder: audioldm._pipeline_class(_spec(folder), folder),
    "pipeline_components": model_files.pipeline_components,
    "check_sizes": lambda folder: config_sizes.check_sizes(
        folder, [("model_index.json", folder / "model_index.json")]
    ),
}


@pytest.mark.parametrize(
    "content", ["[1, 2]", '"AudioLDMPipeline"', "{not json"], ids=["list", "str", "broken"]
)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_bad_model_index_is_one_line_from_every_reader(tmp_path, reader, content):
    (tmp_path / "model_index.json").write_text(content, encoding="utf-8")
    with pytest.raises((ModelUnavailableError, InvalidInputError)) as caught:
        READERS[reader](tmp_path)
    message = str(caught.value)
    assert "model_index.json" in message and "\n" not in message


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_has_the_size_bound(tmp_path, monkeypatch, reader):
    monkeypatch.setattr(model_files, "MAX_CONFIG_BYTES", 64)
    index = {"_class_name": "AudioLDMPipeline", "_pad": "x" * 100, "vae": ["ppdiffusers", "AutoencoderKL"]}
    (tmp_path / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises((ModelUnavailableError, InvalidInputError), match="64 bytes"):
        READERS[reader](tmp_path)


def test_the_reader_gives_the_object_and_the_listed_parts(tmp_path):
    index = {
        "_class_name": "AudioLDMPipeline",
        "vae": ["diffusers", "AutoencoderKL"],
        "feature_extractor": [None, None],  # an optional part left out
        "../up": ["diffusers", "UNet2DConditionModel"],  # not a folder name: not listed
    }
    (tmp_path / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    assert model_files.read_model_index(tmp_path) == index
    assert model_files.listed_components(index) == {"vae": ("diffusers", "AutoencoderKL")}


def _parsers(path: Path) -> list[str]:
    """Functions of ``path`` that name ``model_index.json`` and parse JSON themselves."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        inner = [n for statement in node.body for n in ast.walk(statement)]  # not the defaults
        names = any(isinstance(n, ast.Constant) and n.value == "model_index.json" for n in inner)
        calls = {
            n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            for n in inner
            if isinstance(n, ast.Call)
        }
        if names and calls & {"load", "loads", "read_config"}:
            found.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    return found


def test_no_other_module_parses_model_index_json():
    """Only model_files.py parses the file, anywhere in the package."""
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "model_files.py"
        for hit in _parsers(path)
    ]
    assert not found, f"these parse model_index.json themselves: {found}; use model_files.read_model_index"
