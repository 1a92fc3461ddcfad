"""The memory levers of :mod:`mgtoolkit.accel.footprint`: vocoder pieces give the same waveform,
freed heap goes back only where asked, settings are read with errors that teach. No timings here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mgtoolkit.accel import footprint

pytestmark = pytest.mark.filterwarnings("ignore")


# ---------------------------------------------------------------------------------------------
# Windows.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frames", [1, 7, 100, 255, 256, 257, 500, 513, 1000, 1001])
@pytest.mark.parametrize("piece", [1, 3, 64, 125, 256, 512])
@pytest.mark.parametrize("margin", [0, 5, 45])
def test_windows_cover_every_frame_once_with_the_margin_and_one_length(frames, piece, margin):
    windows = footprint.vocoder_windows(frames, piece, margin)
    owns = [(lo, hi) for lo, hi, _, _ in windows]
    assert owns[0][0] == 0 and owns[-1][1] == frames
    assert all(hi == next_lo for (_, hi), (next_lo, _) in zip(owns, owns[1:], strict=False))
    assert all(hi - lo <= max(piece, 1) for lo, hi in owns) or len(windows) == 1
    assert len({b - a for _, _, a, b in windows}) == 1  # one shape: one set of oneDNN primitives
    for lo, hi, a, b in windows:
        assert 0 <= a <= lo < hi <= b <= frames
        assert lo - a >= margin or a == 0
        assert b - hi >= margin or b == frames


def test_no_piece_or_a_short_spectrogram_is_one_window():
    assert footprint.vocoder_windows(500, 0, 45) == [(0, 500, 0, 500)]
    assert footprint.vocoder_windows(200, 256, 45) == [(0, 200, 0, 200)]
    assert footprint.vocoder_windows(300, 256, 200) == [(0, 300, 0, 300)]  # the margin covers it all


@pytest.mark.parametrize(("value", "frames"), [(None, 256), ("0", 0), (" 128 ", 128)])
def test_piece_frames_reads_the_setting(value, frames):
    environ = {} if value is None else {"MGTOOLKIT_VOCODER_PIECE": value}
    assert footprint.piece_frames(environ=environ) == frames


@pytest.mark.parametrize(("value", "problem"), [("half", "not a number"), ("-3", "negative")])
def test_a_bad_piece_setting_names_itself_and_the_fix(value, problem):
    with pytest.raises(ValueError, match=f"MGTOOLKIT_VOCODER_PIECE.*{problem}.*give"):
        footprint.piece_frames(environ={"MGTOOLKIT_VOCODER_PIECE": value})


# ---------------------------------------------------------------------------------------------
# Same samples in pieces.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paddle():
    from mgtoolkit.runtime import import_paddle

    return import_paddle()


@pytest.fixture(scope="module")
def vocoder(paddle):
    """The tiny model's HiFi-GAN with weights large enough for audible levels."""
    from test_speed_equivalence import _plain_pipe

    module = _plain_pipe().vocoder
    rng = np.random.default_rng(0)
    with paddle.no_grad():
        for p in module.parameters():
            p.set_value((rng.standard_normal(p.shape) * 0.1).astype("float32"))
    return module


def _in_pieces(paddle, vocoder, mel, piece):
    import math

    from mgtoolkit.accel.pieces import stitch, vocoder_receptive_frames

    hop = int(math.prod(vocoder.config.upsample_rates))
    windows = footprint.vocoder_windows(int(mel.shape[1]), piece, vocoder_receptive_frames(vocoder.config))
    with paddle.no_grad():
        return stitch([vocoder(mel[:, a:b]) for _, _, a, b in windows], windows, hop).numpy(), len(windows)


@pytest.mark.parametrize("piece", [16, 37, 64, 150])
def test_the_vocoder_in_pieces_gives_the_whole_waveform(paddle, vocoder, piece):
    mel = paddle.to_tensor(
        np.random.default_rng(1).standard_normal((1, 300, int(vocoder.config.model_in_dim))).astype("float32")
    )
    with paddle.no_grad():
        whole = vocoder(mel).numpy()
    got, parts = _in_pieces(paddle, vocoder, mel, piece)
    assert parts > 1
    assert got.shape == whole.shape
    assert 1e-2 < float(np.abs(whole).max()) < 0.9  # a real signal: not rounding noise, not tanh saturated
    assert np.linalg.norm(got - whole) / np.linalg.norm(whole) <= 1e-6


def test_too_small_a_margin_would_show(paddle, vocoder):
    """The comparison above can fail: pieces without the receptive-field margin differ."""
    import math

    from mgtoolkit.accel.pieces import stitch

    mel = paddle.to_tensor(
        np.random.default_rng(1).standard_normal((1, 300, int(vocoder.config.model_in_dim))).astype("float32")
    )
    hop = int(math.prod(vocoder.config.upsample_rates))
    windows = footprint.vocoder_windows(300, 64, 2)
    with paddle.no_grad():
        whole = vocoder(mel).numpy()
        got = stitch([vocoder(mel[:, a:b]) for _, _, a, b in windows], windows, hop).numpy()
    assert np.linalg.norm(got - whole) / np.linalg.norm(whole) > 1e-4


@pytest.mark.slow
def test_the_vocoder_predictor_in_pieces_gives_its_whole_waveform(paddle, tmp_path, monkeypatch):
    """Through the oneDNN predictor, float32: pieces equal one whole run to 1e-6 relative."""
    from test_speed_equivalence import _plain_pipe

    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    rng = np.random.default_rng(0)
    with paddle.no_grad():
        for p in pipe.vocoder.parameters():
            p.set_value((rng.standard_normal(p.shape) * 0.1).astype("float32"))
    assert compile_pipeline(pipe, "cpu", modules=("vocoder",), cache=tmp_path) == ["vocoder"]
    mel = paddle.to_tensor(
        rng.standard_normal((1, 300, int(pipe.vocoder.config.model_in_dim))).astype("float32")
    )
    runs = []
    for piece in ("0", "64", "0"):
        monkeypatch.setenv("MGTOOLKIT_VOCODER_PIECE", piece)
        with paddle.no_grad():
            runs.append(pipe.vocoder(mel).numpy())
    assert pipe._mgtoolkit_engines["vocoder"].state == "ready"
    whole, pieces, again = runs
    assert np.array_equal(whole, again)  # the same input twice: bit for bit
    assert pieces.shape == whole.shape
    assert np.linalg.norm(pieces - whole) / np.linalg.norm(whole) <= 1e-6


# ---------------------------------------------------------------------------------------------
# Giving heap back.
# ---------------------------------------------------------------------------------------------
class _Predictor:
    def __init__(self):
        self.cleared = 0

    def clear_intermediate_tensor(self):
        self.cleared += 1


@pytest.mark.parametrize(
    ("kind", "trims_after", "trims_before"), [("unet", 0, 0), ("vae", 1, 1), ("vocoder", 1, 0)]
)
def test_only_the_once_per_call_stages_give_heap_back(monkeypatch, kind, trims_after, trims_before):
    calls = []
    monkeypatch.setattr(footprint, "trim_heap", lambda: calls.append(kind))
    footprint.before_run(kind)
    assert len(calls) == trims_before
    predictor = _Predictor()
    footprint.after_run(kind, predictor)
    assert predictor.cleared == 1
    assert len(calls) == trims_before + trims_after


def test_trim_follows_its_setting():
    assert footprint.trim_heap(environ={"MGTOOLKIT_TRIM": "0"}) is False
    glibc = footprint._libc() is not None and hasattr(footprint._libc(), "malloc_trim")
    assert footprint.trim_heap(environ={}) is glibc


def test_importing_footprint_loads_no_paddle():
    code = "import sys; import mgtoolkit.accel.footprint; print('paddle' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# Idle stages: the text encoder waits in its file while the UNet runs.
# ---------------------------------------------------------------------------------------------
def _held(modules) -> bool:
    return all(p._is_initialized() for m in modules for p in m.parameters())


def _none_held(modules) -> bool:
    return not any(p._is_initialized() for m in modules for p in m.parameters())


@pytest.fixture()
def idle_pipe(tmp_path):
    """The tiny pipeline with its VAE decoder and vocoder as predictors (as the default mode runs a
    full-size model), its idle stages released."""
    from test_speed_equivalence import _plain_pipe

    from mgtoolkit.accel import idle
    from mgtoolkit.accel.onednn import compile_pipeline

    pipe = _plain_pipe()
    assert compile_pipeline(pipe, "cpu", modules=("vae", "vocoder"), cache=tmp_path) == ["vae", "vocoder"]
    assert idle.enable(pipe, pipe.name_or_path) == ["text_encoder"]
    return pipe


@pytest.mark.slow
def test_idle_stages_wait_in_their_files_and_the_waveform_stays_bit_for_bit(paddle, idle_pipe):
    from test_speed_equivalence import _waves

    from mgtoolkit.accel import idle

    pipe = idle_pipe
    assert _none_held([pipe.text_encoder])
    runs = [_waves(paddle, pipe, 1.0, [3]) for _ in range(2)]
    assert {n: e.state for n, e in pipe._mgtoolkit_engines.items()} == {"vae": "ready", "vocoder": "ready"}
    assert pipe._mgtoolkit_idle["text_encoder"].loads == 2  # once per call, prompt and negative prompt
    assert _none_held([pipe.text_encoder])  # released again once the UNet ran
    idle.disable(pipe)
    assert not idle.is_on(pipe) and _held([pipe.text_encoder])
    kept = _waves(paddle, pipe, 1.0, [3])  # every weight in memory all along
    for got in runs:
        assert np.array_equal(got, kept)
    assert float(np.abs(kept).max()) > 0


@pytest.mark.slow
def test_low_memory_mode_and_undo_take_the_idle_stages_back_first(idle_pipe):
    from mgtoolkit import accel
    from mgtoolkit.accel import idle, lowmem
    from mgtoolkit.accel.hooks import HookRegistry

    stages = lowmem.enable(idle_pipe, folder=idle_pipe.name_or_path)
    assert "text_encoder" in stages and not idle.is_on(idle_pipe)  # the swapper holds it now
    assert "idle" not in HookRegistry.of(idle_pipe).applied
    lowmem.disable(idle_pipe)
    assert _held([idle_pipe.text_encoder])
    assert idle.enable(idle_pipe, idle_pipe.name_or_path) == ["text_encoder"]
    accel.undo(idle_pipe)
    assert not idle.is_on(idle_pipe) and _held([idle_pipe.text_encoder])


@pytest.mark.slow
def test_weights_that_wait_nowhere_stay_in_memory(paddle, tmp_path):
    from test_speed_equivalence import _plain_pipe

    from mgtoolkit.accel import idle

    pipe = _plain_pipe()
    assert idle.enable(pipe, None) == [] and idle.enable(pipe, tmp_path) == []  # no file holds them
    assert not idle.is_on(pipe) and _held([pipe.text_encoder])
    changed = pipe.text_encoder.parameters()[0]
    with paddle.no_grad():
        changed.set_value(changed.numpy() + 1.0)  # since the load: the file no longer holds it
    want = changed.numpy().copy()
    assert idle.enable(pipe, pipe.name_or_path) == ["text_encoder"]
    assert changed._is_initialized()  # kept in memory; the others released
    assert not all(p._is_initialized() for p in pipe.text_encoder.parameters())
    idle.disable(pipe)
    assert np.array_equal(changed.numpy(), want) and _held([pipe.text_encoder])


@pytest.mark.slow
def test_a_stage_running_in_another_thread_is_not_released(idle_pipe):
    stage = idle_pipe._mgtoolkit_idle["text_encoder"]
    stage.enter()  # a call under way (e.g. ranking in another thread)
    stage.release()  # what a UNet step asks
    assert _held([idle_pipe.text_encoder])
    stage.leave()
    stage.release()
    assert _none_held([idle_pipe.text_encoder]) and stage.loads == 1
