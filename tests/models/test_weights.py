"""Published weights in every form load through ``model=`` and give the tiny model's waveform (issue 9).

The tiny AudioLDM and MusicLDM are written in the hubs' torch layout (diffusers folder with ``pt``
safetensors; a ``.bin``-only copy; a Hugging Face cache entry) by
:mod:`fixtures.hub_layouts`; each is passed to ``mgtoolkit.generate`` with no environment
switch. Converted copies go to a private ``MGTOOLKIT_CACHE`` per module.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.hub_layouts import write_diffusers_folder, write_hf_cache

import mgtoolkit as mg
from mgtoolkit.errors import ModelUnavailableError
from mgtoolkit.models import audioldm, weights
from mgtoolkit.models import fetch as hubs
from mgtoolkit.models.tiny.pipelines import tiny_dir

KW = {"audio_length_in_s": 1.0, "num_inference_steps": 3, "seed": 11, "guidance_scale": 2.5}
PROMPT = "soft piano in the rain"
PIPELINES = ("tiny", "tiny-musicldm", "tiny-audioldm2")


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (symlinks not followed)."""
    return {
        p.relative_to(folder).as_posix(): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The tiny pipelines in every published form, their reference waveforms, and a private cache."""
    root = tmp_path_factory.mktemp("hub")
    out = {"root": root}
    for name in PIPELINES:
        src = tiny_dir(name)
        out[name] = {
            "paddle": src,
            "st": write_diffusers_folder(src, root / f"{name}-st"),
            "bin": write_diffusers_folder(src, root / f"{name}-bin", bin=True),
            "ref": mg.generate(PROMPT, model=name, **KW).waveform,
        }
    out["hf"] = root / "hf-cache"
    write_hf_cache(out["tiny"]["st"], out["hf"], "someone/tiny-audioldm")
    write_hf_cache(out["tiny-musicldm"]["bin"], out["hf"], "someone/tiny-musicldm")
    write_hf_cache(out["tiny-audioldm2"]["st"], out["hf"], "someone/tiny-audioldm2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MGTOOLKIT_CACHE", str(root / "mg-cache"))
        mp.setenv("HF_HUB_CACHE", str(out["hf"]))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield out
    audioldm.unload()


@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize("form", ["st", "bin"])
def test_diffusers_folder_gives_the_tiny_waveform(hub, name, form):
    folder = hub[name][form]
    before = listing(folder)
    clip = mg.generate(PROMPT, model=str(folder), **KW)
    np.testing.assert_array_equal(clip.waveform, hub[name]["ref"])
    assert listing(folder) == before  # nothing written into the user's folder
    copies = list(weights.converted_root().glob(f"*{weights.source_key(folder)}"))
    assert len(copies) == 1 and (copies[0] / weights.MANIFEST).is_file()
    assert not list(copies[0].rglob("*.bin")) and not list(copies[0].rglob("*.pdparams"))


@pytest.mark.parametrize(
    ("repo", "name"),
    [
        ("someone/tiny-audioldm", "tiny"),
        ("someone/tiny-musicldm", "tiny-musicldm"),
        ("someone/tiny-audioldm2", "tiny-audioldm2"),
    ],
)
def test_hub_id_found_in_the_hf_cache_offline(hub, repo, name):
    snapshot = weights.find_hf_snapshot(repo)
    assert snapshot is not None and snapshot.parent.parent.name == "models--" + repo.replace("/", "--")
    before = listing(hub["hf"])
    clip = mg.generate(PROMPT, model=repo, **KW)
    np.testing.assert_array_equal(clip.waveform, hub[name]["ref"])
    assert listing(hub["hf"]) == before  # nothing written into the HF cache


def test_paddle_folder_is_linked_not_converted(hub):
    """A paddle folder is given to ppdiffusers as a folder we build: its configurations and tokenizer
    files copied, its safetensors linked (same bytes, no second copy on disk), nothing converted."""
    src = hub["tiny"]["paddle"]
    assert weights.folder_format(src) == "paddle"
    done = weights.conversions_done()
    entry = weights.paddle_folder(src, name=str(src))
    assert entry.parent == weights.converted_root() and weights.folder_format(entry) == "paddle"
    for part in ("unet", "vae", "text_encoder", "vocoder"):
        (mine,) = (entry / part).glob("*.safetensors")
        theirs = src / part / mine.name
        assert mine.samefile(theirs) or mine.resolve() == theirs.resolve()
    assert sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()) == sorted(
        [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()] + [weights.MANIFEST]
    )
    clip = mg.generate(PROMPT, model=str(src), **KW)
    np.testing.assert_array_equal(clip.waveform, hub["tiny"]["ref"])
    assert weights.conversions_done() == done
    assert mg.load_model(str(src)).weights == str(entry)


def test_second_load_reads_the_copy_without_converting(hub, tmp_path):
    folder = write_diffusers_folder(hub["tiny"]["paddle"], tmp_path / "again")
    audioldm.unload()
    done = weights.conversions_done()
    first = mg.load_model(str(folder))
    assert weights.conversions_done() == done + 1
    audioldm.unload()
    second = mg.load_model(str(folder))
    assert weights.conversions_done() == done + 1
    assert second.weights == first.weights and Path(first.weights).parent == weights.converted_root()
    # the weights step alone: the second call converts nothing and rewrites none of the copy's files
    other = write_diffusers_folder(hub["tiny"]["paddle"], tmp_path / "timed")
    copy = Path(weights.paddle_folder(other, name="timed"))
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in copy.rglob("*") if p.is_file()}
    done = weights.conversions_done()
    assert Path(weights.paddle_folder(other, name="timed")) == copy
    assert weights.conversions_done() == done
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in copy.rglob("*") if p.is_file()} == stamps


def test_changed_source_is_converted_again_and_the_old_copy_dropped(hub, tmp_path):
    folder = write_diffusers_folder(hub["tiny"]["paddle"], tmp_path / "changing")
    old = weights.paddle_folder(folder, name="changing")
    config = folder / "unet" / "config.json"
    config.write_text(config.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    done = weights.conversions_done()
    new = weights.paddle_folder(folder, name="changing")
    assert new != old and weights.conversions_done() == done + 1
    assert not old.exists() and new.is_dir()


def test_damaged_copy_is_rebuilt(hub, tmp_path):
    folder = write_diffusers_folder(hub["tiny"]["paddle"], tmp_path / "damaged")
    entry = weights.paddle_folder(folder, name="damaged")
    manifest = json.loads((entry / weights.MANIFEST).read_text(encoding="utf-8"))
    unet = entry / "unet" / "diffusion_paddle_model.safetensors"
    assert manifest["files"]["unet/diffusion_paddle_model.safetensors"]["sha256"] == weights._sha256(unet)
    data = bytearray(unet.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes, new mtime
    unet.write_bytes(bytes(data))
    done = weights.conversions_done()
    assert weights.paddle_folder(folder, name="damaged") == entry
    assert (
        weights.conversions_done() == done + 1
        and weights._sha256(unet) == manifest["files"]["unet/diffusion_paddle_model.safetensors"]["sha256"]
    )


def test_interrupted_conversion_leaves_nothing_and_the_next_try_is_clean(hub, tmp_path, monkeypatch):
    folder = write_diffusers_folder(hub["tiny"]["paddle"], tmp_path / "interrupted")
    real = weights._convert_component
    calls = []

    def dies_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    root = weights.converted_root()
    root.mkdir(parents=True, exist_ok=True)
    before = sorted(p.name for p in root.iterdir())
    monkeypatch.setattr(weights, "_convert_component", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        weights.paddle_folder(folder, name="interrupted")
    assert sorted(p.name for p in root.iterdir()) == before
    monkeypatch.setattr(weights, "_convert_component", real)
    entry = weights.paddle_folder(folder, name="interrupted")
    assert weights.folder_format(entry) == "paddle"


def test_disk_full_is_one_line_and_leaves_nothing(hub, tmp_path, monkeypatch):
    folder = write_diffusers_folder(hub["tiny"]["paddle"], tmp_path / "full")
    real = weights._convert_component

    def no_space(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights, "_convert_component", no_space)
    root = weights.converted_root()
    before = sorted(p.name for p in root.iterdir()) if root.exists() else []
    with pytest.raises(ModelUnavailableError, match=r"model='full'.*No space left.*MGTOOLKIT_CACHE") as info:
        weights.paddle_folder(folder, name="full")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in root.iterdir()) == before
    monkeypatch.setattr(weights.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10, 10, 1000))
    with pytest.raises(ModelUnavailableError, match=r"needs about .* GB .* are free"):
        weights.paddle_folder(folder, name="full")


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_errors_name_the_model_the_folder_and_the_fix(hub, tmp_path):
    src = hub["tiny"]["st"]
    # a component folder missing (partial download)
    partial = tmp_path / "partial"
    shutil.copytree(src, partial)
    shutil.rmtree(partial / "unet")
    with pytest.raises(ModelUnavailableError) as info:
        mg.load_model(str(partial))
    assert all(s in one_line(info) for s in (str(partial), "unet", "download"))
    # no weight files at all
    empty = tmp_path / "empty"
    shutil.copytree(src, empty, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelUnavailableError, match="holds no weights") as info:
        mg.load_model(str(empty))
    assert str(empty) in one_line(info)
    # a damaged (truncated) safetensors file
    torn = tmp_path / "torn"
    shutil.copytree(src, torn)
    unet = torn / "unet" / "diffusion_pytorch_model.safetensors"
    unet.write_bytes(unet.read_bytes()[:1000])
    with pytest.raises(ModelUnavailableError, match="damaged or truncated") as info:
        mg.load_model(str(torn))
    assert str(unet) in one_line(info)
    # weights of another model under the same names
    swapped = tmp_path / "swapped"
    shutil.copytree(src, swapped)
    shutil.copyfile(
        src / "vae" / "diffusion_pytorch_model.safetensors",
        swapped / "unet" / "diffusion_pytorch_model.safetensors",
    )
    with pytest.raises(ModelUnavailableError, match="do not fit UNet2DConditionModel") as info:
        mg.load_model(str(swapped))
    one_line(info)


def test_offline_with_nothing_cached_is_one_line(hub):
    with pytest.raises(ModelUnavailableError, match=r"offline .*HF_HUB_OFFLINE.*fetch") as info:
        mg.load_model("someone/not-downloaded")
    assert "someone/not-downloaded" in one_line(info)


def test_preset_refuses_a_folder_of_another_pipeline(hub, monkeypatch):
    # what the cache holds under the MusicLDM preset's hub id is an AudioLDM pipeline
    write_hf_cache(hub["tiny"]["st"], hub["hf"], "ucsd-reach/musicldm")
    with pytest.raises(
        ModelUnavailableError, match=r"model='musicldm'.*AudioLDMPipeline.*MusicLDMPipeline"
    ) as info:
        mg.load_model("musicldm")
    one_line(info)


def test_crafted_bin_is_refused_and_nothing_runs(hub, tmp_path):
    from fixtures.torch_files import write_malicious_pickle

    from mgtoolkit.models.safe_pickle import UnsafePickleError

    folder = tmp_path / "crafted"
    shutil.copytree(hub["tiny"]["bin"], folder)
    marker = tmp_path / "pwned"
    write_malicious_pickle(folder / "vocoder" / "pytorch_model.bin", marker)
    with pytest.raises(UnsafePickleError):
        mg.load_model(str(folder))
    assert not marker.exists()


def test_safetensors_preferred_over_bin(hub, tmp_path):
    from fixtures.torch_files import write_malicious_pickle

    folder = tmp_path / "both"
    shutil.copytree(hub["tiny"]["st"], folder)
    marker = tmp_path / "pwned"
    write_malicious_pickle(folder / "vocoder" / "pytorch_model.bin", marker)
    assert weights.weight_files(folder / "vocoder").container == "safetensors"
    entry = weights.paddle_folder(folder, name="both")
    assert not marker.exists() and not list(entry.rglob("*.bin"))


def test_paddle_pickles_are_read_safely_and_resaved_as_safetensors(hub, tmp_path):
    from fixtures.torch_files import write_pdparams
    from safetensors.numpy import load_file

    folder = tmp_path / "pdparams"
    shutil.copytree(hub["tiny"]["paddle"], folder)
    for part in ("unet", "vae", "text_encoder", "vocoder"):
        (weights_file,) = [p for p in (folder / part).iterdir() if p.suffix == ".safetensors"]
        write_pdparams(folder / part / "model_state.pdparams", load_file(str(weights_file)))
        weights_file.unlink()
    assert weights.folder_format(folder) == "convert"
    clip = mg.generate(PROMPT, model=str(folder), **KW)
    np.testing.assert_array_equal(clip.waveform, hub["tiny"]["ref"])


def test_allow_unsafe_pickle_is_recorded_when_on(hub):
    loaded = mg.load_model(str(hub["tiny"]["bin"]), allow_unsafe_pickle=True)
    assert loaded.info()["allow_unsafe_pickle"] is True
    assert "allow_unsafe_pickle" not in mg.load_model(str(hub["tiny"]["bin"])).info()


def test_converted_cache_is_private(hub):
    weights.paddle_folder(hub["tiny"]["st"], name="private")
    assert oct(weights.converted_root().stat().st_mode & 0o777) == "0o700"
    assert os.environ["MGTOOLKIT_CACHE"] in str(weights.converted_root())


@pytest.mark.parametrize("form", ["st", "bin"])
def test_writer_folder_in_transformers_layout_gives_the_tiny_answer(hub, tmp_path, form):
    from fixtures.hub_layouts import write_transformers_folder

    from mgtoolkit.models import writers
    from mgtoolkit.models.tiny.llm import tiny_dir as tiny_llm_dir

    src = tiny_llm_dir("qwen2")
    want = writers.complete(writers.load_writer(writers.resolve_writer("tiny")), PROMPT, max_new_tokens=8)
    folder = write_transformers_folder(src, tmp_path / "qwen2", writers._model_class(src), bin=form == "bin")
    before = listing(folder)
    writers.release_writers()
    loaded = writers.load_writer(writers.resolve_writer(str(folder)))
    try:
        assert writers.complete(loaded, PROMPT, max_new_tokens=8) == want
    finally:
        writers.release_writers()
    assert listing(folder) == before


def test_captioner_folder_in_transformers_layout_gives_the_tiny_caption(hub, tmp_path):
    from fixtures.hub_layouts import write_transformers_folder
    from PIL import Image

    from mgtoolkit.models import captioners
    from mgtoolkit.models.tiny.llm import tiny_dir as tiny_llm_dir

    image = Image.fromarray((np.arange(32 * 32 * 3) % 251).astype("uint8").reshape(32, 32, 3))
    spec = captioners.resolve_captioner("tiny-blip2")
    want = captioners.caption(captioners.load_captioner(spec), image, max_new_tokens=8)
    folder = write_transformers_folder(
        tiny_llm_dir("blip2"), tmp_path / "blip2", captioners._model_class(spec)
    )
    captioners.release_captioners()
    loaded = captioners.load_captioner(captioners.resolve_captioner(str(folder)))
    try:
        assert captioners.caption(loaded, image, max_new_tokens=8) == want
    finally:
        captioners.release_captioners()


def test_cli_models_shows_what_is_here_and_its_size(hub, capsys):
    from mgtoolkit.cli import main

    write_hf_cache(hub["tiny"]["st"], hub["hf"], "cvssp/audioldm-m-full")
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    size = weights.disk_size(weights.find_hf_snapshot("cvssp/audioldm-m-full")) / 1e9
    assert f"here, {size:.2f} GB on disk" in lines["audioldm-m-full"]
    assert "not here" in lines["audioldm-l-full"]


def test_cli_fetch_offline_says_so_in_one_line(hub, capsys, tmp_path):
    from mgtoolkit.cli import main

    assert main(["fetch", "audioldm-l-full", "--to", str(tmp_path / "carry")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "offline (HF_HUB_OFFLINE=1)" in err and "cvssp/audioldm-l-full" in err
    assert not (tmp_path / "carry").exists()


def test_fetch_downloads_through_the_hub_client(hub, tmp_path, monkeypatch):
    """Online road without a network: the hub client is replaced by one that copies a folder."""
    calls = []

    def snapshot_download(repo_id, allow_patterns, local_dir=None, **_):
        calls.append((repo_id, tuple(allow_patterns), local_dir))
        shutil.copytree(hub["tiny"]["st"], local_dir, dirs_exist_ok=True)
        return local_dir

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(
        hubs, "_download_paddlenlp", lambda repo, to: (_ for _ in ()).throw(OSError("not there"))
    )
    (got,) = weights.fetch("audioldm-l-full", to=tmp_path / "carry")
    assert (
        got.folder == tmp_path / "carry" / "cvssp-audioldm-l-full"
        and weights.folder_format(got.folder) == "convert"
    )
    assert calls == [("cvssp/audioldm-l-full", tuple(weights._ALLOW), str(got.folder))]
    assert "*.bin" not in calls[0][1]  # safetensors preferred: .bin only for a repo without them


def test_preset_found_in_the_hf_cache_offline(hub):
    """A preset resolves to its hub id, found in the Hugging Face cache with HF_HUB_OFFLINE=1."""
    write_hf_cache(hub["tiny"]["bin"], hub["hf"], "cvssp/audioldm-s-full")
    clip = mg.generate(PROMPT, model="audioldm-s-full", **KW)
    np.testing.assert_array_equal(clip.waveform, hub["tiny"]["ref"])
    assert clip.model_info["name"] == "audioldm-s-full" and "CC-BY-NC-SA" in clip.model_info["license"]


def test_bfloat16_safetensors_are_widened_exactly(tmp_path):
    """numpy has no bfloat16: such files (Qwen2 ships them) are read by hand, each value exact."""
    values = np.array([[1.0, -2.5], [3.140625, 1e-3]], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")  # bfloat16: the top 16 bits
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, bits.nbytes]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bits.tobytes())
    want = (bits.astype(np.uint32) << 16).view(np.float32)
    for got in (weights._read_safetensors(path)["w"], weights._read_safetensors_raw(path)["w"]):
        assert got.dtype == np.float32 and np.array_equal(got, want) and np.allclose(got, values, rtol=1e-2)


def test_cli_fetch_with_chain_fetches_the_captioner_and_writer_too(monkeypatch, tmp_path, capsys):
    from mgtoolkit.cli import main

    got = []

    def fake_fetch_repo(source, *, to=None, field="model", name=None, size=""):
        got.append((field, name, source, to))
        return Path(to) / source.replace("/", "-")

    monkeypatch.setattr(hubs, "fetch_repo", fake_fetch_repo)
    monkeypatch.delenv("MGTOOLKIT_CAPTIONER", raising=False)
    monkeypatch.delenv("MGTOOLKIT_WRITER", raising=False)
    assert main(["fetch", "audioldm-s-full-v2", "--to", str(tmp_path), "--with-chain"]) == 0
    from mgtoolkit.models.captioners import resolve_captioner
    from mgtoolkit.models.writers import resolve_writer
    from mgtoolkit.tasks.image import default_captioner, default_writer

    cap = resolve_captioner(default_captioner("audioldm-s-full-v2"))
    wri = resolve_writer(default_writer("audioldm-s-full-v2"))
    assert [(f, n, s) for f, n, s, _ in got] == [
        ("model", "audioldm-s-full-v2", "cvssp/audioldm-s-full-v2"),
        ("captioner", cap.name, cap.source),
        ("writer", wri.name, wri.source),
    ]
    assert "/" in cap.source and "/" in wri.source  # real hub ids: the chain's defaults are fetched
    out = capsys.readouterr().out
    assert f"writer: {wri.name} -> {tmp_path / wri.source.replace('/', '-')}" in out


def test_bfloat16_safetensors_are_widened_exactly_with_paddle_loaded(tmp_path):
    """With paddle imported numpy knows bfloat16 (ml_dtypes); the values come back float32 all the same."""
    import paddle  # noqa: F401 - registers bfloat16 with numpy

    test_bfloat16_safetensors_are_widened_exactly(tmp_path)
