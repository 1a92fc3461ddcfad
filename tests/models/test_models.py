"""Resolving ``model=``: presets, hub ids, appflow names, directories, $MGTOOLKIT_MODEL."""

from __future__ import annotations

import pytest

from mgtoolkit.models.registry import DEFAULT_MODEL, PRESETS, default_model, resolve_model


def test_presets_cover_the_model_variants():
    assert {
        "audioldm-s-full-v2",
        "audioldm-s-full",
        "audioldm-m-full",
        "audioldm-l-full",
        "audioldm2-music",
        "musicldm",
        "tiny",
    } <= set(PRESETS)
    assert PRESETS["audioldm2-music"].pipeline == "AudioLDM2Pipeline"
    assert PRESETS["musicldm"].pipeline == "MusicLDMPipeline"
    assert all(spec.license for spec in PRESETS.values())


@pytest.mark.parametrize(
    ("name", "preset"),
    [
        ("cvssp/audioldm", "audioldm"),
        ("cvssp/audioldm-s-full-v2", "audioldm-s-full-v2"),
        ("cvssp/audioldm2-music", "audioldm2-music"),
    ],
)
def test_hub_names_map_to_presets(name, preset):
    assert resolve_model(name) is PRESETS[preset]


def test_other_hub_ids_pass_through():
    spec = resolve_model("someone/audioldm2-large")
    assert spec.source == "someone/audioldm2-large" and spec.pipeline == "AudioLDM2Pipeline"


def test_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MGTOOLKIT_MODEL", "audioldm-m-full")
    assert default_model() == "audioldm-m-full" and resolve_model(None).name == "audioldm-m-full"
    monkeypatch.delenv("MGTOOLKIT_MODEL")
    assert default_model() == DEFAULT_MODEL == "audioldm-s-full-v2"


def test_local_directory_reads_its_pipeline_class(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "MusicLDMPipeline"}')
    spec = resolve_model(tmp_path)
    assert spec.is_local and spec.pipeline == "MusicLDMPipeline" and spec.source == str(tmp_path)
