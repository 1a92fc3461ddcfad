"""Issue 15: reading ``.bin``/``.pdparams`` weights never runs code from the file.

Crafted files are written by :mod:`fixtures.torch_files`; their unpickling would create a
marker file inside ``tmp_path``. Clean files must give back exactly the arrays written.
"""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
import pytest
from fixtures.torch_files import (
    TensorView,
    write_malicious_pickle,
    write_pdparams,
    write_torch_bin,
    write_torch_legacy,
)

from mgtoolkit import config
from mgtoolkit.errors import MgtoolkitWarning, ModelUnavailableError
from mgtoolkit.models.safe_pickle import (
    UnsafePickleError,
    read_pdparams,
    read_pickled_weights,
    read_torch_bin,
    resolve_allow_unsafe,
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
    from mgtoolkit.models.tiny import llm as tiny_llm

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
    from fixtures.torch_files import pickled_copy
    from safetensors.numpy import load_file

    from mgtoolkit.models.tiny.pipelines import tiny_dir

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
    from fixtures.torch_files import hf_cache_repo

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
    import subprocess
    import sys

    from fixtures.torch_files import hf_cache_repo, pickled_copy

    from mgtoolkit.models.tiny.pipelines import tiny_dir

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
