"""Issue 15: reading ``.bin``/``.pdparams`` weights never runs code from the file.

Crafted files are written by :mod:`mgtoolkit.testing.torch_files`; their unpickling would create a
marker file inside ``tmp_path``. Clean files must give back exactly the arrays written.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

from mgtoolkit import config
from mgtoolkit.errors import MgtoolkitWarning, ModelUnavailableError
from mgtoolkit.models.safe_pickle import (
    UnsafePickleError,
    read_pdparams,
    read_pickled_weights,
    read_torch_bin,
    resolve_allow_unsafe,
)
from mgtoolkit.testing.torch_files import (
    TensorView,
    write_malicious_pickle,
    write_pdparams,
    write_torch_bin,
    write_torch_legacy,
)

READERS = {"bin": read_torch_bin, "pdparams": read_pdparams}
CRAFTED = [
    ("bin", "exec"),
    ("bin", "system"),
    ("pdparams", "exec"),
    ("pdparams", "system"),
    ("pdparams", "eval"),
]


def _state() -> dict:
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal(5).astype(np.float16),
        "i64": np.array([-(2**40), 0, 7], dtype=np.int64),
        "i8": np.array([-128, 127], dtype=np.int8),
        "mask": np.array([True, False, True]),
        "scalar": np.array(3.5, dtype=np.float32),  # a 0-d tensor
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def _assert_same(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)


@pytest.fixture
def no_env_opt_out(monkeypatch):
    monkeypatch.delenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", raising=False)


# --- crafted files are refused, nothing runs ----------------------------------------------------


@pytest.mark.parametrize(("kind", "how"), CRAFTED)
def test_crafted_files_are_refused_and_run_nothing(tmp_path, no_env_opt_out, kind, how):
    path, marker = tmp_path / f"weights.{kind}", tmp_path / "marker"
    write_malicious_pickle(path, marker, kind, how=how)
    with pytest.raises(UnsafePickleError) as caught:
        read_pickled_weights(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: not loaded: its pickle asks for ")
    assert {"exec": "exec", "system": "system", "eval": "eval"}[how] in caught.value.requested
    assert "no code from the file ran" in message
    assert "safetensors" in message and "allow_unsafe_pickle=True" in message
    assert isinstance(caught.value, ModelUnavailableError)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["bin", "pdparams"])
@pytest.mark.parametrize(
    "call",
    [
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("subprocess", "Popen"),
        ("numpy", "load"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_qtensor"),
        ("torch.nn.modules.linear", "Linear"),
    ],
)
def test_only_tensor_and_container_names_are_handed_out(tmp_path, no_env_opt_out, kind, call):
    path = tmp_path / f"weights.{kind}"
    write_malicious_pickle(path, tmp_path / "unused", kind, call=call)
    with pytest.raises(UnsafePickleError, match=f"asks for {'.'.join(call)},"):
        READERS[kind](path)


@pytest.mark.parametrize("kind", ["bin", "pdparams"])
def test_the_opt_out_runs_the_file_only_when_set(tmp_path, monkeypatch, kind):
    path, marker = tmp_path / f"weights.{kind}", tmp_path / "marker"
    write_malicious_pickle(path, marker, kind)
    monkeypatch.setenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", "1")
    with pytest.raises(UnsafePickleError):
        READERS[kind](path)  # the environment is only a default: the explicit False wins
    assert not marker.exists()
    monkeypatch.setenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", "0")
    with pytest.raises(UnsafePickleError):
        READERS[kind](path, allow_unsafe=None)
    assert not marker.exists()

    monkeypatch.setenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", "1")
    with pytest.warns(MgtoolkitWarning, match="full unpickler"):
        state = READERS[kind](path, allow_unsafe=None)
    assert marker.exists()  # the crafted code ran: that is what the opt-out means
    np.testing.assert_array_equal(state["weight"], np.arange(6, dtype=np.float32).reshape(2, 3))
    marker.unlink()
    monkeypatch.delenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE")
    with pytest.warns(MgtoolkitWarning):
        READERS[kind](path, allow_unsafe=True)
    assert marker.exists()


def test_resolve_allow_unsafe_reads_the_environment_default(monkeypatch):
    monkeypatch.delenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", raising=False)
    assert resolve_allow_unsafe(None) is False
    monkeypatch.setenv("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", "yes")
    assert (resolve_allow_unsafe(None), resolve_allow_unsafe(False)) == (True, False)


# --- clean files load exactly -------------------------------------------------------------------


def test_clean_torch_zip_gives_exactly_the_arrays(tmp_path):
    base = np.arange(30, dtype=np.float32)
    views = {
        "rows": TensorView(base, 0, (2, 5), (5, 1)),
        "transposed": TensorView(base, 10, (5, 2), (1, 5)),  # column-major view, offset
        "strided": TensorView(base, 3, (4,), (7,)),
        "tail": TensorView(base, 29, (), ()),  # 0-d view at the storage's end
    }
    bf16 = np.array([1.5, -2.0, 0.15625, 2.0**120], dtype=np.float32)  # exact in bfloat16
    path = tmp_path / "pytorch_model.bin"
    write_torch_bin(
        path,
        {**_state(), **views, "bf16": bf16, "param": np.ones(2)},
        bfloat16=("bf16",),
        parameters=("param",),
    )
    got = read_torch_bin(path)
    expected = {**_state(), **{k: v.numpy() for k, v in views.items()}, "bf16": bf16, "param": np.ones(2)}
    _assert_same(got, expected)
    np.testing.assert_array_equal(got["transposed"], base[10:20].reshape(2, 5).T)
    assert all(a.flags.c_contiguous and a.flags.owndata for a in got.values())


def test_clean_legacy_torch_file_gives_exactly_the_arrays(tmp_path):
    base = np.arange(12, dtype=np.int64)
    state = {**_state(), "a": TensorView(base, 2, (2, 3), (3, 1)), "b": TensorView(base, 0, (4,), (3,))}
    write_torch_legacy(tmp_path / "old.pt", state)
    expected = {k: v.numpy() if isinstance(v, TensorView) else v for k, v in state.items()}
    _assert_same(read_torch_bin(tmp_path / "old.pt"), expected)


@pytest.mark.parametrize("style", ["state_dict", "tensors", "dense_tensors"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_clean_pdparams_give_exactly_the_arrays(tmp_path, style, protocol):
    path = tmp_path / "model_state.pdparams"
    write_pdparams(path, _state(), style=style, protocol=protocol)
    _assert_same(read_pdparams(path), _state())


def test_nested_and_split_pdparams(tmp_path):
    big = np.arange(10, dtype=np.float32).reshape(2, 5)
    parts = {"big@@.0": big.reshape(-1)[:6], "big@@.1": big.reshape(-1)[6:]}
    info = {"big": {"OriginShape": (2, 5), "slices": list(parts)}}
    extra = {**parts, "UnpackBigParamInfor@@": info, "LR_Scheduler": {"last_epoch": 3, "name": "cosine"}}
    write_pdparams(tmp_path / "opt.pdopt", {"m": np.ones(2, np.float32)}, extra=extra)
    got = read_pdparams(tmp_path / "opt.pdopt")
    _assert_same(got, {"m": np.ones(2, np.float32), "big": big, "LR_Scheduler.last_epoch": np.asarray(3)})


def test_real_paddle_save_files_read_the_same(tmp_path):
    from mgtoolkit.runtime import import_paddle

    paddle = import_paddle()
    paddle.seed(0)
    layer = paddle.nn.Sequential(paddle.nn.Linear(3, 2), paddle.nn.BatchNorm1D(2))
    expected = {k: v.numpy() for k, v in layer.state_dict().items()}
    paddle.save(layer.state_dict(), str(tmp_path / "a.pdparams"))
    paddle.save({"model": layer.state_dict(), "step": 3}, str(tmp_path / "b.pdparams"))
    _assert_same(read_pdparams(tmp_path / "a.pdparams"), expected)
    nested = read_pdparams(tmp_path / "b.pdparams")
    _assert_same(nested, {**{f"model.{k}": v for k, v in expected.items()}, "step": np.asarray(3)})
    for style in ("state_dict", "tensors", "dense_tensors"):  # and paddle reads what we write
        write_pdparams(tmp_path / f"{style}.pdparams", _state(), style=style)
        loaded = paddle.load(str(tmp_path / f"{style}.pdparams"), return_numpy=True)
        _assert_same({k: np.asarray(v) for k, v in loaded.items()}, _state())


def test_our_torch_writer_matches_paddlenlps_reader_on_a_clean_file(tmp_path):
    pytest.importorskip("paddlenlp")
    from paddlenlp.utils.serialization import load_torch

    state = {k: v for k, v in _state().items() if v.ndim}
    write_torch_bin(tmp_path / "pytorch_model.bin", state)
    theirs = load_torch(str(tmp_path / "pytorch_model.bin"))  # a clean file: safe to unpickle
    _assert_same({k: np.asarray(v) for k, v in theirs.items()}, state)


# --- damaged files: one clear error naming the file ---------------------------------------------


def _cut(path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("pytorch_model.bin", lambda p: _cut(p, 0.6)),
        ("pytorch_model.bin", lambda p: _cut(p, 0.05)),
        ("model.pt", lambda p: p.write_bytes(b"\x80\x02K\x07.")),  # a pickle, but not a checkpoint
        ("old.pt", lambda p: write_torch_legacy(p, _state()) or _cut(p, 0.9)),
        ("model_state.pdparams", lambda p: write_pdparams(p, _state()) or _cut(p, 0.5)),
        ("model_state.pdparams", lambda p: p.write_bytes(b"not a pickle at all")),
        ("model_state.pdparams", lambda p: p.write_bytes(b"\x80\x04]\x94.")),  # a list, not a dict
        ("missing.pdparams", lambda p: p.unlink()),
    ],
)
def test_damaged_files_give_one_clear_error(tmp_path, name, damage):
    path = tmp_path / name
    write_torch_bin(path, _state())
    damage(path)
    with pytest.raises(ModelUnavailableError) as caught:
        read_pickled_weights(path)
    assert not isinstance(caught.value, UnsafePickleError)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read it as ") and "\n" not in message


def test_a_view_past_its_storage_is_refused_not_read(tmp_path):
    base = np.arange(4, dtype=np.float32)
    write_torch_bin(tmp_path / "w.bin", {"w": TensorView(base, 2, (3,), (1,))})
    with pytest.raises(ModelUnavailableError, match="reaches element 4 of a storage of 4"):
        read_torch_bin(tmp_path / "w.bin")


# --- the private cache --------------------------------------------------------------------------


def test_private_dir_makes_owner_only_folders(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    made = config.private_dir(shared / "cache" / "converted")
    assert made == shared / "cache" / "converted" and made.is_dir()
    assert stat.S_IMODE((shared / "cache").stat().st_mode) == 0o700
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # what existed is left alone
    assert config.private_dir(made) == made
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        config.private_dir(tmp_path / "file")


def test_a_fresh_cache_is_private_and_holds_no_pickles(tmp_path, monkeypatch):
    from mgtoolkit.testing import tiny_llm

    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = tiny_llm.tiny_dir("qwen2")
    assert folder.parent == tmp_path / "cache"
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / "model.safetensors").is_file()
    assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pdparams", ".pkl", ".pt")]


# --- whole model folders, in the three layouts of the issue --------------------------------------


def test_pickled_copies_of_a_model_folder(tmp_path):
    from safetensors.numpy import load_file

    from mgtoolkit.testing.tiny import tiny_dir
    from mgtoolkit.testing.torch_files import pickled_copy

    source = tiny_dir("tiny")
    clean = pickled_copy(source, tmp_path / "paddle")
    for weights in source.rglob("*.safetensors"):
        pickle_file = clean / weights.parent.relative_to(source) / "model_state.pdparams"
        _assert_same(read_pdparams(pickle_file), load_file(str(weights)))
    assert not list(clean.rglob("*.safetensors"))
    marker = tmp_path / "marker"
    crafted = pickled_copy(source, tmp_path / "diffusers", kind="bin", marker=marker)
    names = sorted(p.relative_to(crafted).as_posix() for p in crafted.rglob("*.bin"))
    assert "unet/diffusion_pytorch_model.bin" in names and "text_encoder/pytorch_model.bin" in names
    for path in crafted.rglob("*.bin"):
        with pytest.raises(UnsafePickleError):
            read_torch_bin(path)
    assert not marker.exists()


def test_hf_cache_layout(tmp_path):
    from mgtoolkit.testing.torch_files import hf_cache_repo

    folder = tmp_path / "repo"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text('{"a": 1}')
    snapshot = hf_cache_repo(tmp_path / "hub", "someone/audioldm-finetune", folder)
    repo = tmp_path / "hub" / "models--someone--audioldm-finetune"
    assert snapshot.parent == repo / "snapshots"
    assert (repo / "refs" / "main").read_text() == snapshot.name
    assert (snapshot / "unet" / "config.json").read_text() == '{"a": 1}'
    assert len(list((repo / "blobs").iterdir())) == 2


_LOAD_SCRIPT = """
import json, sys
import mgtoolkit as mg
results = {}
for layout, model, marker in json.loads(sys.argv[1]):
    try:
        mg.load_model(model)
        error = ""
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    results[layout] = {"error": error, "ran": __import__("os").path.exists(marker)}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def crafted_loads(tmp_path_factory):
    """``mg.load_model`` on crafted models in a fresh interpreter (ppdiffusers reads HF_HOME at import)."""
    import json
    import os
    import subprocess
    import sys

    from mgtoolkit.testing.tiny import tiny_dir
    from mgtoolkit.testing.torch_files import hf_cache_repo, pickled_copy

    root, source = tmp_path_factory.mktemp("crafted"), tiny_dir("tiny")
    cases = [
        (
            "diffusers",
            str(pickled_copy(source, root / "diffusers", kind="bin", marker=root / "m1")),
            root / "m1",
        ),
        ("paddle", str(pickled_copy(source, root / "paddle", marker=root / "m2")), root / "m2"),
    ]
    hub_repo = pickled_copy(source, root / "hub-src", kind="bin", marker=root / "m3")
    hf_cache_repo(root / "hf" / "hub", "someone/audioldm-finetune", hub_repo)
    cases.append(("hf_cache", "someone/audioldm-finetune", root / "m3"))
    env = {
        **os.environ,
        "HF_HOME": str(root / "hf"),
        "HF_HUB_OFFLINE": "1",
        "MGTOOLKIT_CACHE": str(root / "cache"),
    }
    env.pop("MGTOOLKIT_ALLOW_UNSAFE_PICKLE", None)
    args = json.dumps([(layout, model, str(marker)) for layout, model, marker in cases])
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("layout", ["diffusers", "paddle", "hf_cache"])
def test_load_model_refuses_crafted_models_and_runs_nothing(crafted_loads, layout):
    result = crafted_loads[layout]
    assert not result["ran"], f"the crafted pickle ran: {result['error'][:200]}"
    assert "UnsafePickleError" in result["error"] and "no code from the file ran" in result["error"]


# --- issue 24 §1: a model folder is data, never code ---------------------------------------------
#
# Folders are crafted here from the tiny models: Python files whose import would create a marker,
# pickles whose unpickling would, indexes and links leading outside. Each is refused with our
# one-line message naming the file, or (where the crafted file is simply never read) loads the
# clean weights bit-identically; in every case the marker is never written.

PROMPT = "soft piano in the rain"
KW = {"audio_length_in_s": 1.0, "num_inference_steps": 3, "seed": 11, "guidance_scale": 2.5}


def _code(folder, rel: str, marker) -> None:
    """A Python file at ``folder/rel`` whose import creates ``marker``."""
    from mgtoolkit.testing.torch_files import marker_code

    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(marker_code(marker) + "\nclass SpeechT5HifiGan: pass\nclass AudioLDMPipeline: pass\n")


def _edit_json(path, **changes) -> None:
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _one_line(exc_info, *parts: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """The tiny AudioLDM (paddle and diffusers layouts), its waveform, and a private cache/HF cache."""
    import mgtoolkit as mg
    from mgtoolkit.models import audioldm
    from mgtoolkit.testing.hub_layouts import write_diffusers_folder
    from mgtoolkit.testing.tiny import tiny_dir

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

    from mgtoolkit.testing.torch_files import write_malicious_pickle

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
    import mgtoolkit as mg
    from mgtoolkit.models.safe_pickle import UnsafePickleError
    from mgtoolkit.testing.torch_files import pickled_copy

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
    import mgtoolkit as mg
    from mgtoolkit.models import audioldm, weights
    from mgtoolkit.testing.hub_layouts import write_hf_cache

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

    from mgtoolkit.testing.tiny_llm import tiny_dir

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
    from mgtoolkit.testing.tiny_llm import tiny_dir

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
    from mgtoolkit.errors import InvalidInputError
    from mgtoolkit.models import clap
    from mgtoolkit.models.safe_pickle import UnsafePickleError
    from mgtoolkit.testing.tiny_clap import tiny_clap_dir
    from mgtoolkit.testing.torch_files import pickled_copy

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
    from mgtoolkit.testing.tiny_llm import tiny_dir

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
