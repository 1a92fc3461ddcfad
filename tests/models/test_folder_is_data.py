"""Issue 24 §1: a model folder is data, never code.

Folders are crafted here from the tiny models: Python files whose import would create a marker,
pickles whose unpickling would, indexes and links leading outside. Each is refused with our
one-line message naming the file, or (where the crafted file is simply never read) loads the
clean weights bit-identically; in every case the marker is never written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from crafted_models import _edit_json, _one_line
from fixtures.torch_files import write_malicious_pickle

from mgtoolkit.errors import ModelUnavailableError
from mgtoolkit.models.safe_pickle import UnsafePickleError

PROMPT = "soft piano in the rain"
KW = {"audio_length_in_s": 1.0, "num_inference_steps": 3, "seed": 11, "guidance_scale": 2.5}


def _code(folder, rel: str, marker) -> None:
    """A Python file at ``folder/rel`` whose import creates ``marker``."""
    from fixtures.torch_files import marker_code

    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(marker_code(marker) + "\nclass SpeechT5HifiGan: pass\nclass AudioLDMPipeline: pass\n")


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """The tiny AudioLDM (paddle and diffusers layouts), its waveform, and a private cache/HF cache."""
    from fixtures.hub_layouts import write_diffusers_folder

    import mgtoolkit as mg
    from mgtoolkit.models import audioldm
    from mgtoolkit.models.tiny.pipelines import tiny_dir

    root = tmp_path_factory.mktemp("crafted-folders")
    src = tiny_dir("tiny")
    out = {
        "root": root,
        "paddle": src,
        "st": write_diffusers_folder(src, root / "clean-st"),
        "ref": mg.generate(PROMPT, model="tiny", **KW).waveform,
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MGTOOLKIT_CACHE", str(root / "mg-cache"))
        mp.setenv("HF_HUB_CACHE", str(root / "hf"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", raising=False)
        yield out
    audioldm.unload()


def _copy(crafted, layout: str, name: str):
    import shutil

    folder = crafted["root"] / name
    shutil.copytree(crafted[layout], folder, symlinks=True)
    return folder, crafted["root"] / f"{name}.marker"


def _no_code_in(entry) -> None:
    names = [p.name for p in entry.rglob("*")]
    assert not [n for n in names if n.endswith((".py", ".pdparams", ".bin", ".pdparams.index.json"))], names


@pytest.mark.parametrize("layout", ["paddle", "st"])
def test_a_component_module_named_in_model_index_is_refused(crafted, layout):
    import mgtoolkit as mg

    folder, marker = _copy(crafted, layout, f"component-py-{layout}")
    _code(folder, "vocoder/evil.py", marker)
    _edit_json(folder / "model_index.json", vocoder=["evil", "SpeechT5HifiGan"])
    with pytest.raises(ModelUnavailableError) as caught:
        mg.load_model(str(folder))
    message = _one_line(
        caught, str(folder / "model_index.json"), "component 'vocoder'", "'evil'", "never its code"
    )
    assert message.startswith(f"model={str(folder)!r}: ")
    assert not marker.exists()


def test_a_custom_pipeline_module_is_refused(crafted):
    import mgtoolkit as mg

    folder, marker = _copy(crafted, "paddle", "class-name-list")
    _code(folder, "my_pipeline.py", marker)
    _edit_json(folder / "model_index.json", _class_name=["my_pipeline", "AudioLDMPipeline"])
    with pytest.raises(ModelUnavailableError) as caught:
        mg.load_model(str(folder))
    _one_line(caught, str(folder / "model_index.json"), "custom pipeline module")
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["paddle", "st"])
def test_none_py_and_stray_modules_are_never_imported_nor_copied(crafted, layout):
    """ppdiffusers imports ``<folder>/None.py`` (custom_pipeline=None); conversion used to copy .py."""
    import mgtoolkit as mg
    from mgtoolkit.models import audioldm

    folder, marker = _copy(crafted, layout, f"none-py-{layout}")
    for rel in (
        "None.py",
        "pipeline.py",
        "unet/None.py",
        "scheduler/helper.py",
        "text_encoder/modeling_x.py",
    ):
        _code(folder, rel, marker)
    audioldm.unload()
    loaded = mg.load_model(str(folder))
    _no_code_in(Path(loaded.weights))
    clip = mg.generate(PROMPT, model=str(folder), **KW)
    np.testing.assert_array_equal(clip.waveform, crafted["ref"])
    assert not marker.exists()


def _pickle_beside(folder, part: str, marker, *, index: bool) -> None:
    """A crafted paddle pickle (or a pickle index and its shard) beside the component's safetensors."""
    import json

    if index:
        shard = "model_state-00001-of-00001.pdparams"
        write_malicious_pickle(folder / part / shard, marker, "pdparams")
        index_data = {"metadata": {"total_size": 24}, "weight_map": {"weight": shard}}
        (folder / part / "model_state.pdparams.index.json").write_text(json.dumps(index_data))
    else:
        write_malicious_pickle(folder / part / "model_state.pdparams", marker, "pdparams")


@pytest.mark.parametrize(
    ("part", "index"), [("unet", True), ("vae", True), ("text_encoder", False), ("vocoder", False)]
)
def test_pickles_beside_safetensors_are_never_opened(crafted, part, index):
    """ppdiffusers picks a pdparams index ahead of diffusion_paddle_model.safetensors, and paddlenlp a
    model_state.pdparams beside model.safetensors, opening them with paddle.load: ours reads the
    safetensors only, and the libraries never see the pickles."""
    import mgtoolkit as mg
    from mgtoolkit.models import audioldm

    folder, marker = _copy(crafted, "paddle", f"pickle-beside-{part}")
    _pickle_beside(folder, part, marker, index=index)
    audioldm.unload()
    clip = mg.generate(PROMPT, model=str(folder), **KW)
    np.testing.assert_array_equal(clip.waveform, crafted["ref"])
    _no_code_in(Path(mg.load_model(str(folder)).weights))
    assert not marker.exists()


def test_a_crafted_pickle_in_a_paddle_folder_is_refused_in_process(crafted):
    from fixtures.torch_files import pickled_copy

    import mgtoolkit as mg

    marker = crafted["root"] / "paddle-pickles.marker"
    folder = pickled_copy(crafted["paddle"], crafted["root"] / "paddle-pickles", marker=marker)
    with pytest.raises(UnsafePickleError) as caught:
        mg.load_model(str(folder))
    _one_line(caught, "model_state.pdparams: not loaded", "no code from the file ran")
    assert not marker.exists()


@pytest.mark.parametrize("shard", ["../../outside.safetensors", "/etc/passwd", "sub/x.safetensors", ".."])
def test_a_shard_index_leading_outside_its_folder_is_refused(crafted, shard):
    import json

    import mgtoolkit as mg

    folder, _ = _copy(crafted, "paddle", f"shard-{abs(hash(shard))}")
    (folder / "unet" / "diffusion_paddle_model.safetensors").unlink()
    index = folder / "unet" / "diffusion_paddle_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"conv_in.weight": shard}}))
    with pytest.raises(ModelUnavailableError) as caught:
        mg.load_model(str(folder))
    _one_line(caught, str(index), f"lists the shard {shard!r}", "only name files beside it")


def test_a_link_leading_outside_the_folder_is_refused(crafted):
    import shutil

    import mgtoolkit as mg

    folder, _ = _copy(crafted, "paddle", "link-out")
    outside = crafted["root"] / "elsewhere.safetensors"
    weights_file = folder / "vae" / "diffusion_paddle_model.safetensors"
    shutil.move(weights_file, outside)
    weights_file.symlink_to(outside)
    with pytest.raises(ModelUnavailableError) as caught:
        mg.load_model(str(folder))
    _one_line(caught, str(weights_file), f"is a link to {outside}, outside the model folder")


def test_a_hub_cache_snapshot_with_code_is_read_as_data(crafted):
    from fixtures.hub_layouts import write_hf_cache

    import mgtoolkit as mg
    from mgtoolkit.models import audioldm, weights

    folder, marker = _copy(crafted, "st", "hub-src")
    for rel in ("None.py", "unet/diffusion.py", "pipeline.py"):
        _code(folder, rel, marker)
    snapshot = write_hf_cache(folder, crafted["root"] / "hf", "someone/crafted-audioldm")
    assert weights.find_hf_snapshot("someone/crafted-audioldm") == snapshot
    audioldm.unload()
    clip = mg.generate(PROMPT, model="someone/crafted-audioldm", **KW)
    np.testing.assert_array_equal(clip.waveform, crafted["ref"])
    _no_code_in(Path(mg.load_model("someone/crafted-audioldm").weights))
    # the same snapshot naming its module as a component's library: refused
    bad, marker2 = _copy(crafted, "st", "hub-src-bad")
    _code(bad, "vocoder/transformers_evil.py", marker2)
    _edit_json(bad / "model_index.json", vocoder=["transformers_evil", "SpeechT5HifiGan"])
    write_hf_cache(bad, crafted["root"] / "hf", "someone/crafted-audioldm-2")
    with pytest.raises(ModelUnavailableError) as caught:
        mg.load_model("someone/crafted-audioldm-2")
    _one_line(caught, "model_index.json", "component 'vocoder'", "'transformers_evil'")
    assert not marker.exists() and not marker2.exists()


def test_hub_downloads_never_fetch_code():
    from mgtoolkit.models import weights

    assert not [p for p in weights._ALLOW if p.endswith((".py", ".bin", ".pdparams", "*"))]


def test_a_batch_model_column_pointing_at_a_crafted_folder_is_refused(crafted):
    import mgtoolkit as mg

    folder, marker = _copy(crafted, "paddle", "batch-crafted")
    _code(folder, "vocoder/evil.py", marker)
    _edit_json(folder / "model_index.json", vocoder=["evil", "SpeechT5HifiGan"])
    rows = crafted["root"] / "rows.csv"
    rows.write_text(f"prompt,model\ncalm piano,{folder}\n", encoding="utf-8")
    out = crafted["root"] / "batch-out"
    summary = mg.batch(rows, out=out, audio_length_in_s=0.5, num_inference_steps=2, progress=False)
    assert summary.made == 0 and len(summary.failed) == 1
    assert "model_index.json" in summary.failed[0] and "component 'vocoder'" in summary.failed[0]
    assert "\n" not in summary.failed[0]
    assert not marker.exists()
    assert not (out.exists() and list(out.glob("*.wav")))


def _crafted_writer(crafted, name: str, marker, **config):
    """The tiny Qwen2 writer with auto_map pointing at its own modules (which would create marker)."""
    import shutil

    from mgtoolkit.models.tiny.llm import tiny_dir

    folder = crafted["root"] / name
    shutil.copytree(tiny_dir("qwen2"), folder)
    for rel in ("modeling_evil.py", "configuration_evil.py", "tokenization_evil.py"):
        _code(folder, rel, marker)
    _edit_json(
        folder / "config.json",
        auto_map={
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModelForCausalLM": "modeling_evil.Evil",
        },
        **config,
    )
    _edit_json(
        folder / "tokenizer_config.json",
        auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
    )
    return folder


def test_a_writer_folder_with_auto_map_uses_paddlenlps_own_class_and_runs_nothing(crafted):
    """As transformers without trust_remote_code: a model type the library has is loaded with its own
    class; the folder's modules are never imported, never copied, and auto_map is dropped."""
    import json

    from mgtoolkit.models import writers

    marker = crafted["root"] / "writer.marker"
    want = writers.complete(writers.load_writer(writers.resolve_writer("tiny")), PROMPT, max_new_tokens=8)
    folder = _crafted_writer(crafted, "writer-auto-map", marker)
    writers.release_writers()
    try:
        loaded = writers.load_writer(writers.resolve_writer(str(folder)))
        assert writers.complete(loaded, PROMPT, max_new_tokens=8) == want
    finally:
        writers.release_writers()
    (entry,) = [
        m.parent
        for m in Path(os.environ["MGTOOLKIT_CACHE"], "converted").glob("writer-auto-map-*/*.json")
        if m.name == "mgtoolkit-converted.json"
    ]
    _no_code_in(entry)
    assert "auto_map" not in json.loads((entry / "config.json").read_text())
    assert "auto_map" not in json.loads((entry / "tokenizer_config.json").read_text())
    assert not marker.exists()


def test_a_writer_folder_of_an_unknown_model_type_is_refused(crafted):
    from mgtoolkit.errors import InvalidInputError
    from mgtoolkit.models import writers

    marker = crafted["root"] / "writer-evil.marker"
    folder = _crafted_writer(crafted, "writer-evil-type", marker, model_type="evil")
    with pytest.raises(InvalidInputError) as caught:
        writers.load_writer(writers.resolve_writer(str(folder)))
    _one_line(caught, "writer=", "model_type='evil'")
    assert not marker.exists()


def test_a_captioner_folder_with_custom_code_is_read_as_data(crafted):
    import json
    import shutil

    from mgtoolkit.models import captioners, weights
    from mgtoolkit.models.tiny.llm import tiny_dir

    marker = crafted["root"] / "captioner.marker"
    folder = crafted["root"] / "captioner-auto-map"
    shutil.copytree(tiny_dir("blip2"), folder)
    for rel in ("modeling_blip2_evil.py", "processing_evil.py"):
        _code(folder, rel, marker)
    _edit_json(folder / "config.json", auto_map={"AutoModel": "modeling_blip2_evil.Evil"})
    spec = captioners.resolve_captioner(str(folder))
    entry = weights.paddle_folder(
        folder, name=spec.name, field="captioner", model_class=captioners._model_class(spec)
    )
    _no_code_in(entry)
    assert "auto_map" not in json.loads((entry / "config.json").read_text())
    assert not marker.exists()


def test_clap_takes_only_our_road(crafted):
    from fixtures.torch_files import pickled_copy

    from mgtoolkit.errors import InvalidInputError
    from mgtoolkit.models import clap
    from mgtoolkit.models.tiny.clap import tiny_clap_dir

    with pytest.raises(ModelUnavailableError) as caught:  # a hub id nowhere here: our fetch, offline
        clap.load_clap("someone/not-a-clap")
    _one_line(caught, "clap='someone/not-a-clap'", "offline (HF_HUB_OFFLINE=1)")
    for bad in ("../x", "a/b/c", "./x"):
        with pytest.raises(InvalidInputError, match="^clap="):
            clap.resolve_clap(bad)
    marker = crafted["root"] / "clap.marker"
    folder = pickled_copy(tiny_clap_dir(), crafted["root"] / "clap-pickled", marker=marker)
    with pytest.raises(UnsafePickleError):
        clap.load_clap(str(folder))
    assert not marker.exists()
    clap.release_clap()


@pytest.mark.parametrize("mode", [0o777, 0o1777])
def test_a_cache_others_can_write_into_is_refused(crafted, tmp_path, monkeypatch, mode):
    from mgtoolkit.models import audioldm, weights
    from mgtoolkit.models.registry import PRESETS

    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(mode)
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(shared))
    with pytest.raises(ModelUnavailableError) as caught:
        weights.paddle_folder(crafted["st"], name="clean")
    _one_line(
        caught, "model='clean'", f"the mgtoolkit cache {shared} can be written by every user", "chmod 700"
    )
    with pytest.raises(ModelUnavailableError, match="can be written by every user"):
        audioldm._weights_folder(PRESETS["tiny"], False)
    assert list(shared.iterdir()) == []
    shared.chmod(0o700)
    assert weights.paddle_folder(crafted["st"], name="clean").parent == shared / "converted"


def _store_serving(monkeypatch, repos: dict):
    """PaddleNLP's store replaced by one serving local folders (``repo id -> folder``), no network."""
    import shutil

    from huggingface_hub.utils import EntryNotFoundError
    from ppdiffusers.utils import download_utils

    asked = []

    def bos_download(repo_id, filename, subfolder=None, cache_dir=None, **_):
        rel = f"{subfolder}/{filename}" if subfolder else filename
        asked.append(rel)
        source = repos[repo_id] / rel
        if not source.is_file():
            raise EntryNotFoundError(f"{rel} is not in the store")
        target = Path(cache_dir) / repo_id / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)

    monkeypatch.setattr(download_utils, "bos_download", bos_download)
    return asked


def test_paddlenlps_store_is_asked_for_data_files_only(crafted, monkeypatch, tmp_path):
    """Our download from PaddleNLP's store (captioners, writers, CLAP and pipelines not in a cache):
    named configuration, tokenizer and weights files; never a .py; index shards checked first."""
    import json
    import shutil

    from mgtoolkit.models import fetch as hubs
    from mgtoolkit.models.tiny.llm import tiny_dir

    marker = crafted["root"] / "store.marker"
    writer = _crafted_writer(crafted, "store-writer", marker)
    pipeline, _ = _copy(crafted, "paddle", "store-pipeline")
    _code(pipeline, "None.py", marker)
    _code(pipeline, "unet/unet.py", marker)
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_dir("qwen2"), sharded)
    (sharded / "model.safetensors").unlink()
    (sharded / "model_state.pdparams.index.json").write_text(
        json.dumps({"weight_map": {"w": "../../x.pdparams"}})
    )
    asked = _store_serving(monkeypatch, {"o/writer": writer, "o/pipe": pipeline, "o/sharded": sharded})
    got = hubs._download_paddlenlp("o/writer", tmp_path / "store")
    assert (got / "model.safetensors").is_file() and (got / "config.json").is_file()
    got = hubs._download_paddlenlp("o/pipe", tmp_path / "store")
    assert (got / "unet" / "diffusion_paddle_model.safetensors").is_file()
    assert not [a for a in asked if a.endswith(".py")]
    assert not list((tmp_path / "store").rglob("*.py"))
    with pytest.raises(ModelUnavailableError) as caught:
        hubs._download_paddlenlp("o/sharded", tmp_path / "store")
    _one_line(caught, "model_state.pdparams.index.json", "'../../x.pdparams'")
    assert not (tmp_path / "x.pdparams").exists() and not marker.exists()
