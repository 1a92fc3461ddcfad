"""The oneDNN predictors make what dygraph makes, verify themselves, and fall back when they cannot.

Tiny models with every module compiled (``auto`` leaves models this small in dygraph). No timings here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_speed_equivalence import _assert_close, _plain_pipe, _waves

pytestmark = pytest.mark.filterwarnings("ignore")
ALL = ("unet", "vae", "vocoder")


@pytest.fixture(scope="module")
def paddle():
    from mgtoolkit.runtime import import_paddle

    return import_paddle()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(scope="module")
def plain():
    return _plain_pipe()


@pytest.fixture(scope="module")
def compiled(cache):
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    assert compile_pipeline(pipe, "cpu", modules=ALL, cache=cache) == list(ALL)
    return pipe


def _engines(pipe):
    return pipe._mgtoolkit_engines


def _released(module) -> bool:
    return all(not p._is_initialized() for p in module.parameters())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seconds", "seeds"),
    [
        (1.0, [3]),  # the first call exports and verifies
        (1.0, [3, 4, 5]),  # another batch size through the same predictors
        (3.0, [7]),  # another length: the exports have a dynamic length
        (2.5, [1, 2]),  # a latent length the UNet's downsampling does not divide (forced skip sizes)
        (6.0, [9]),  # 600 mel frames: the vocoder predictor runs in two overlapping pieces
    ],
)
def test_compiled_pipeline_equals_plain(paddle, plain, compiled, seconds, seeds):
    _assert_close(_waves(paddle, compiled, seconds, seeds), _waves(paddle, plain, seconds, seeds))


@pytest.mark.slow
def test_first_call_verifies_writes_a_verdict_and_releases_dygraph_weights(paddle, compiled, cache):
    _waves(paddle, compiled, 1.0, [3])
    for name, engine in _engines(compiled).items():
        assert engine.state == "ready", name
        verdict = json.loads((engine.folder / "verdict.json").read_text())
        assert verdict["ok"] is True
        assert verdict["max_abs_diff"] <= 1e-4 * verdict["reference_peak"]
        assert (engine.folder / "model.json").exists() and (engine.folder / "model.pdiparams").exists()
        assert engine.folder.parent == cache
    assert _released(compiled.unet) and _released(compiled.vocoder)
    assert _released(compiled.vae.decoder) and _released(compiled.vae.post_quant_conv)
    assert not _released(compiled.vae.encoder)  # restyling still encodes in dygraph


@pytest.mark.slow
def test_same_weights_load_the_verified_export_without_a_reference(paddle, plain, compiled, cache):
    from mgtoolkit.accel.onednn import compile_pipeline

    _waves(paddle, compiled, 1.0, [3])  # make sure the exports exist
    again = _plain_pipe()
    compile_pipeline(again, "cpu", modules=ALL, cache=cache)
    assert {e.state for e in _engines(again).values()} == {"ready"}
    assert _released(again.unet)  # released at once: the verdict on disk says the export is good
    _assert_close(_waves(paddle, again, 2.0, [5]), _waves(paddle, plain, 2.0, [5]))


@pytest.mark.slow
def test_musicldm_compiles_and_matches(paddle, cache):
    from mgtoolkit.accel.onednn import compile_pipeline
    from mgtoolkit.models.audioldm import import_ppdiffusers
    from mgtoolkit.models.tiny.pipelines import tiny_dir

    def load():
        cls = import_ppdiffusers().MusicLDMPipeline
        pipe = cls.from_pretrained(str(tiny_dir("tiny-musicldm")))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    plain, compiled = load(), load()
    assert compile_pipeline(compiled, "cpu", modules=ALL, cache=cache) == list(ALL)

    def wave(pipe):
        with paddle.no_grad():
            latents = paddle.to_tensor(
                np.random.default_rng(2).standard_normal((1, 8, 50, 16)).astype("float32")
            )
            out = pipe(
                prompt="a waltz",
                audio_length_in_s=2.0,
                num_inference_steps=2,
                latents=latents,
                output_type="np",
            )
        return np.asarray(out.audios, dtype=np.float32)

    _assert_close(wave(compiled), wave(plain))
    assert {e.state for e in _engines(compiled).values()} == {"ready"}


@pytest.mark.slow
def test_an_export_that_does_not_verify_stays_in_dygraph(paddle, plain, tmp_path, monkeypatch):
    from mgtoolkit.accel import onednn as mod

    monkeypatch.setattr(mod, "TOLERANCE", -1.0)  # nothing can pass
    pipe = _plain_pipe()
    mod.compile_pipeline(pipe, "cpu", modules=ALL, cache=tmp_path)
    _assert_close(_waves(paddle, pipe, 1.0, [3]), _waves(paddle, plain, 1.0, [3]))
    for engine in _engines(pipe).values():
        assert engine.state == "failed"
        assert json.loads((engine.folder / "verdict.json").read_text())["ok"] is False
    assert not _released(pipe.unet)
    # The verdict is remembered: the next load does not try again and keeps its weights.
    monkeypatch.setattr(mod, "TOLERANCE", 1e-4)
    again = _plain_pipe()
    mod.compile_pipeline(again, "cpu", modules=ALL, cache=tmp_path)
    assert {e.state for e in _engines(again).values()} == {"failed"}
    assert not _released(again.unet)


def test_an_export_error_falls_back_with_the_reason(paddle, plain, tmp_path, monkeypatch):
    from mgtoolkit.accel import onednn as mod

    def broken(*args, **kwargs):
        raise NotImplementedError("this op cannot be exported")

    monkeypatch.setattr(mod, "_save", broken)
    pipe = _plain_pipe()
    mod.compile_pipeline(pipe, "cpu", modules=ALL, cache=tmp_path)
    _assert_close(_waves(paddle, pipe, 1.0, [4]), _waves(paddle, plain, 1.0, [4]))
    engine = _engines(pipe)["unet"]
    assert engine.state == "failed"
    assert engine.detail["error"] == "NotImplementedError: this op cannot be exported"


def test_an_unwritable_cache_falls_back_to_dygraph(paddle, plain, tmp_path):
    from mgtoolkit.accel.onednn import compile_pipeline

    cache = tmp_path / "not-a-folder"
    cache.write_text("a file where the cache folder should be")
    pipe = _plain_pipe()
    compile_pipeline(pipe, "cpu", modules=("vocoder",), cache=cache)
    _assert_close(_waves(paddle, pipe, 1.0, [4]), _waves(paddle, plain, 1.0, [4]))
    engine = _engines(pipe)["vocoder"]
    assert engine.state == "failed"
    assert engine.detail["error"].startswith(("NotADirectoryError", "FileExistsError"))
    assert cache.read_text() == "a file where the cache folder should be"  # nothing overwritten


class _BrokenPredictor:
    """Fails like a predictor given a shape it was not built for."""

    def get_input_names(self):
        raise RuntimeError("(InvalidArgument) the input's shape [1, 8, 37, 16] does not match")


@pytest.mark.slow
def test_a_ready_predictor_that_fails_later_falls_back_to_dygraph_for_good(paddle, plain, tmp_path):
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    compile_pipeline(pipe, "cpu", modules=ALL, cache=tmp_path)
    _waves(paddle, pipe, 1.0, [3])  # verified: the dygraph weights are released
    engines = _engines(pipe)
    assert {e.state for e in engines.values()} == {"ready"} and _released(pipe.unet)
    for engine in engines.values():  # the weights wait in the folder the model was loaded from
        assert engine.source is not None and not engine.weights_path.exists()
        engine._predictor = _BrokenPredictor()
    _assert_close(_waves(paddle, pipe, 2.0, [5]), _waves(paddle, plain, 2.0, [5]))
    for name, engine in engines.items():
        assert engine.state == "dygraph", name
        assert "does not match" in engine.detail["fallback"]
        assert engine._predictor is None
    assert not _released(pipe.unet) and not _released(pipe.vocoder) and not _released(pipe.vae.decoder)
    # for good: the next call runs dygraph without building a predictor again
    _assert_close(_waves(paddle, pipe, 1.0, [6]), _waves(paddle, plain, 1.0, [6]))
    assert all(engine._predictor is None for engine in engines.values())


@pytest.mark.slow
def test_a_predictor_loaded_verified_falls_back_with_the_weights_of_the_first_load(paddle, plain, tmp_path):
    from mgtoolkit.accel.onednn import compile_pipeline

    first = _plain_pipe()
    compile_pipeline(first, "cpu", modules=("vocoder",), cache=tmp_path)
    _waves(paddle, first, 1.0, [3])
    again = _plain_pipe()
    compile_pipeline(again, "cpu", modules=("vocoder",), cache=tmp_path)
    engine = _engines(again)["vocoder"]
    assert engine.state == "ready" and _released(again.vocoder)
    engine._predictor = _BrokenPredictor()
    _assert_close(_waves(paddle, again, 1.0, [4]), _waves(paddle, plain, 1.0, [4]))
    assert engine.state == "dygraph"


def _state(modules) -> dict:
    return {
        f"{i}.{name}": tensor.numpy().copy()
        for i, module in enumerate(modules)
        for name, tensor in module.state_dict().items()
    }


def _assert_same_bits(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, array in want.items():
        assert got[key].dtype == array.dtype and got[key].shape == array.shape, key
        assert got[key].tobytes() == array.tobytes(), key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unet", "vae", "vocoder"])
def test_verified_modules_hold_no_weights_and_the_fallback_reads_them_back_exactly(
    paddle, plain, tmp_path, name
):
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    compile_pipeline(pipe, "cpu", modules=(name,), cache=tmp_path)
    engine = _engines(pipe)[name]
    want = _state(engine.modules)
    _waves(paddle, pipe, 1.0, [3])
    assert engine.state == "ready"
    tensors = [t for m in engine.modules for t in (*m.parameters(), *m.buffers())]
    assert all(not p._is_initialized() for m in engine.modules for p in m.parameters())  # memory given back
    # no copy of them written: they wait in the folder the model was loaded from
    assert not engine.weights_path.exists()
    assert {f.parent.name for f in engine.source.files} == {name}
    assert all(Path(pipe.name_or_path) in f.parents for f in engine.source.files)
    engine.fall_back("a test")
    assert engine.state == "dygraph" and not any(not t._is_initialized() for t in tensors)
    _assert_same_bits(_state(engine.modules), want)
    _assert_close(_waves(paddle, pipe, 1.0, [4]), _waves(paddle, plain, 1.0, [4]))


@pytest.mark.slow
def test_a_pipeline_without_a_folder_stashes_its_weights_once_and_reads_them_back(paddle, plain, tmp_path):
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    pipe.register_to_config(_name_or_path=None)  # as a pipeline built in memory
    compile_pipeline(pipe, "cpu", modules=("vocoder",), cache=tmp_path)
    engine = _engines(pipe)["vocoder"]
    want = _state(engine.modules)
    _waves(paddle, pipe, 1.0, [3])
    assert engine.state == "ready" and engine.source is None and _released(pipe.vocoder)
    assert engine.weights_path.exists()
    engine._predictor = _BrokenPredictor()
    _assert_close(_waves(paddle, pipe, 1.0, [4]), _waves(paddle, plain, 1.0, [4]))
    assert engine.state == "dygraph"
    _assert_same_bits(_state(engine.modules), want)


def _own_copy(tmp_path):
    import shutil

    from mgtoolkit.models.audioldm import import_ppdiffusers
    from mgtoolkit.models.tiny.pipelines import tiny_audioldm_dir

    folder = tmp_path / "model"
    shutil.copytree(tiny_audioldm_dir(), folder)
    pipe = import_ppdiffusers().AudioLDMPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.vocoder):
        part.eval()
    return pipe, folder


@pytest.mark.slow
@pytest.mark.parametrize("how", ["gone", "changed"])
def test_a_fallback_without_its_weights_file_says_to_reload(paddle, tmp_path, how):
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe, folder = _own_copy(tmp_path)
    compile_pipeline(pipe, "cpu", modules=("vocoder",), cache=tmp_path / "compiled")
    _waves(paddle, pipe, 1.0, [3])
    engine = _engines(pipe)["vocoder"]
    weights = folder / "vocoder" / "model.safetensors"
    assert engine.source.files == (weights,)
    if how == "gone":
        weights.unlink()
    else:
        with open(weights, "ab") as fh:
            fh.write(b"\0")
    engine._predictor = _BrokenPredictor()
    with pytest.raises(RuntimeError, match="load the model again"):
        _waves(paddle, pipe, 1.0, [3])


@pytest.mark.slow
def test_a_stashed_fallback_without_its_weights_file_says_to_reload(paddle, tmp_path):
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    pipe.register_to_config(_name_or_path=None)
    compile_pipeline(pipe, "cpu", modules=("vocoder",), cache=tmp_path)
    _waves(paddle, pipe, 1.0, [3])
    engine = _engines(pipe)["vocoder"]
    engine.weights_path.unlink()
    engine._predictor = _BrokenPredictor()
    with pytest.raises(RuntimeError, match="load the model again"):
        _waves(paddle, pipe, 1.0, [3])


@pytest.mark.slow
def test_calls_the_export_cannot_take_run_in_dygraph(paddle, plain, tmp_path):
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    compile_pipeline(pipe, "cpu", modules=("unet",), cache=tmp_path)
    _waves(paddle, pipe, 1.0, [3])
    sample = paddle.to_tensor(np.random.default_rng(1).standard_normal((1, 8, 25, 16)).astype("float32"))
    kwargs = {"encoder_hidden_states": None, "class_labels": paddle.ones([1, 32]), "added_cond_kwargs": {}}
    with paddle.no_grad():
        got = pipe.unet(sample, 10, **kwargs).sample.numpy()
        want = plain.unet(sample, 10, **kwargs).sample.numpy()
    np.testing.assert_array_equal(got, want)
    assert _engines(pipe)["unet"].state == "dygraph"


@pytest.mark.slow
def test_undo_gives_the_plain_modules_back(paddle, plain, tmp_path):
    from mgtoolkit import accel
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe2 = _plain_pipe()

    compile_pipeline(pipe2, "cpu", modules=ALL, cache=tmp_path)
    _waves(paddle, pipe2, 1.0, [3])
    accel.undo(pipe2)
    assert not _released(pipe2.unet)
    _assert_close(_waves(paddle, pipe2, 1.0, [5]), _waves(paddle, plain, 1.0, [5]))


def test_fingerprint_follows_the_weights(paddle):
    from mgtoolkit.accel.onednn import fingerprint

    a, b = _plain_pipe(), _plain_pipe()
    assert fingerprint("vocoder", a.vocoder) == fingerprint("vocoder", b.vocoder)
    weight = b.vocoder.conv_post.weight
    weight.set_value(weight + 1e-3)
    assert fingerprint("vocoder", a.vocoder) != fingerprint("vocoder", b.vocoder)


needs_bf16 = pytest.mark.skipif(
    not __import__("mgtoolkit.runtime", fromlist=["x"]).cpu_has_bfloat16(), reason="no AVX512_BF16/AMX"
)


@pytest.mark.slow
@needs_bf16
def test_bfloat16_predictors_verify_and_repeat_bit_for_bit(paddle, plain, tmp_path):
    from mgtoolkit.accel.onednn import BF16_TOLERANCE, compile_pipeline

    pipe = _plain_pipe()
    compile_pipeline(pipe, "cpu", modules=ALL, cache=tmp_path, precision="bfloat16")
    first = _waves(paddle, pipe, 1.0, [3])
    engines = _engines(pipe)
    assert {name: e.precision for name, e in engines.items()} == dict.fromkeys(ALL, "bfloat16")
    assert {e.state for e in engines.values()} == {"ready"}
    for name in ALL:  # each stage within 1e-2 relative L2 of float32 dygraph
        verdict = json.loads((engines[name].folder / "verdict-bfloat16.json").read_text())
        assert verdict["ok"] is True and 0 < verdict["relative_l2"] <= BF16_TOLERANCE, name
        assert verdict["precision"] == "bfloat16"
    vocoder = json.loads((engines["vocoder"].folder / "verdict-bfloat16.json").read_text())
    assert vocoder["measured_on"] == "mel" and vocoder["output_relative_l2"] > 0  # the raw waveform's, kept
    # same seed + dtype + machine: the same waveform, bit for bit
    np.testing.assert_array_equal(_waves(paddle, pipe, 1.0, [3]), first)
    np.testing.assert_array_equal(_waves(paddle, pipe, 1.0, [3]), first)
    want = _waves(paddle, plain, 1.0, [3])
    assert not np.array_equal(first, want)  # bfloat16 really ran
    assert np.linalg.norm(first - want) / np.linalg.norm(want) < 5e-2


@pytest.mark.slow
@needs_bf16
def test_bfloat16_and_float32_verdicts_are_kept_apart(paddle, tmp_path):
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    compile_pipeline(pipe, "cpu", modules=("vae",), cache=tmp_path, precision="bfloat16")
    _waves(paddle, pipe, 1.0, [3])
    again = _plain_pipe()
    compile_pipeline(again, "cpu", modules=("vae",), cache=tmp_path)  # float32: verifies on its own
    assert _engines(again)["vae"].state == "pending"
    _waves(paddle, again, 1.0, [3])
    folder = _engines(again)["vae"].folder
    assert {p.name for p in folder.glob("verdict*.json")} == {"verdict.json", "verdict-bfloat16.json"}


def _big_matmul(paddle):
    """A GEMM large enough for MKL to thread: its bits depend on the thread count."""
    rng = np.random.default_rng(7)
    x = paddle.to_tensor(rng.standard_normal((256, 4096)).astype("float32"))
    w = paddle.to_tensor(rng.standard_normal((4096, 256)).astype("float32"))
    return paddle.matmul(x, w).numpy()


@pytest.mark.slow
def test_a_predictor_run_leaves_dygraph_blas_on_all_cores(paddle, plain, tmp_path):
    """The next call's prompt encoding must sum like the first call's: same seed, same waveform."""
    from paddle.base import core

    from mgtoolkit.accel.onednn import compile_pipeline
    from mgtoolkit.accel.pieces import blas_on_all_cores, usable_cores

    if usable_cores() < 2:
        pytest.skip("one core: the thread count cannot change a sum")
    blas_on_all_cores()
    want = _big_matmul(paddle)
    core.set_num_threads(1)
    one_thread = _big_matmul(paddle)
    blas_on_all_cores()
    if np.array_equal(one_thread, want):
        pytest.skip("this BLAS sums alike on one thread and on all")
    pipe = _plain_pipe()
    compile_pipeline(pipe, "cpu", modules=("vae", "vocoder"), cache=tmp_path)
    _waves(paddle, pipe, 1.0, [3])  # exports, verifies, runs both predictors
    _waves(paddle, pipe, 1.0, [3])  # runs the ready predictors
    assert {e.state for e in _engines(pipe).values()} == {"ready"}
    np.testing.assert_array_equal(_big_matmul(paddle), want)


def test_splitting_a_pipeline_puts_blas_on_all_cores_before_its_first_call(paddle):
    """Split calls leave BLAS on all cores; the first call must start from the same count."""
    from paddle.base import core

    from mgtoolkit.accel.pieces import blas_on_all_cores, usable_cores
    from mgtoolkit.accel.threads import split_threads, undo_split

    if usable_cores() < 2:
        pytest.skip("one core: nothing to split")
    blas_on_all_cores()
    want = _big_matmul(paddle)
    core.set_num_threads(1)  # paddle's start-up count (FLAGS_paddle_num_threads)
    pipe = _plain_pipe()
    try:
        assert split_threads(pipe)
        np.testing.assert_array_equal(_big_matmul(paddle), want)
    finally:
        undo_split(pipe)
        blas_on_all_cores()
