"""mgtoolkit.notebook.plots: librosa.display-style drawing on any waveform; axes in seconds and Hz."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from mgtoolkit.notebook import plots  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def tone() -> np.ndarray:
    """1.5 s of a 1 kHz sine plus a little seeded noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * 1000 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture()
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_mel_db_shape_and_range(tone):
    mel = plots.mel_db(tone, sr=SR)
    assert mel.shape == (64, 1 + tone.size // 160)
    assert mel.max() == pytest.approx(0.0, abs=1e-4) and mel.min() >= -80.0 - 1e-3


def test_mel_db_peaks_at_the_tone(tone):
    import librosa

    mel = plots.mel_db(tone, sr=SR)
    centres = librosa.mel_frequencies(n_mels=mel.shape[0] + 2, fmin=0.0, fmax=SR / 2)[1:-1]
    peak_hz = centres[int(np.argmax(mel.mean(axis=1)))]
    assert 850 < peak_hz < 1150


def test_waveshow_returns_line_in_seconds(tone, ax):
    line = plots.waveshow(tone, sr=SR, ax=ax, color="C3")
    assert isinstance(line, Line2D)
    assert line.get_color() == "C3"  # kwargs reach matplotlib
    assert ax.get_xlim() == pytest.approx((0.0, 1.5))
    assert ax.get_xlabel() == "Time (s)"
    assert float(np.max(line.get_xdata())) <= 1.5


def test_waveshow_draws_an_envelope_for_long_signals(ax):
    y = np.random.default_rng(1).uniform(-1, 1, 60 * SR).astype(np.float32)
    line = plots.waveshow(y, sr=SR, ax=ax, max_points=2000)
    assert len(line.get_xdata()) <= 2000 + 2
    assert np.max(line.get_ydata()) == pytest.approx(y.max(), abs=1e-3)  # the peaks survive decimation
    assert ax.get_xlim()[1] == pytest.approx(60.0)


def test_waveshow_short_signal_plots_every_sample(ax):
    line = plots.waveshow(np.array([0.0, 0.5, -0.5]), sr=2, ax=ax)
    assert list(line.get_xdata()) == [0.0, 0.5, 1.0]
    assert list(line.get_ydata()) == [0.0, 0.5, -0.5]


def test_waveshow_uses_current_axes_without_ax(tone):
    fig, ax = plt.subplots()
    try:
        line = plots.waveshow(tone, sr=SR)
        assert line.axes is ax
    finally:
        plt.close(fig)


def test_melshow_from_waveform_time_in_seconds_mel_axis_in_hz(tone, ax):
    mesh = plots.melshow(tone, sr=SR, ax=ax, cmap="viridis")
    assert isinstance(mesh, QuadMesh)
    assert mesh.get_cmap().name == "viridis"
    assert ax.get_xlim()[1] == pytest.approx(1.5, abs=0.02)
    low, high = ax.get_ylim()  # mel band edges, in Hz: 0 to Nyquist give or take half a band
    assert low <= 0.0 and high == pytest.approx(SR / 2, rel=0.05)
    assert ax.yaxis.get_scale() == "symlog"  # librosa's mel axis, labelled in Hz
    assert ax.get_ylabel() == "Frequency (Hz)"


def test_melshow_accepts_a_ready_mel_and_adds_a_db_colorbar(ax):
    mel = np.linspace(-80, 0, 64 * 50, dtype=np.float32).reshape(64, 50)
    mesh = plots.melshow(mel, sr=SR, hop_length=160, ax=ax, colorbar=True)
    assert np.allclose(np.asarray(mesh.get_array()).reshape(-1).min(), -80)
    assert ax.get_xlim()[1] == pytest.approx(50 * 160 / SR, abs=0.02)
    assert len(ax.figure.axes) == 2  # the colour bar
    assert "dB" in ax.figure.axes[1].yaxis.get_major_formatter()(-10.0, 0)


def test_melshow_of_waveforms_share_the_0_to_minus_80_db_colours(ax):
    # A quiet-ranged clip (about 40 dB, like tiny's noise) and a pure tone get the same colour scale,
    # so mel plots side by side compare; a ready mel or an explicit vmin keeps its own.
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    assert plots.melshow(noise, sr=SR, ax=ax).get_clim() == (-80.0, 0.0)
    assert plots.melshow(noise, sr=SR, ax=ax, vmin=-40.0).get_clim() == (-40.0, 0.0)
    mel = np.linspace(-30, 0, 64 * 50, dtype=np.float32).reshape(64, 50)
    assert plots.melshow(mel, sr=SR, ax=ax).get_clim() == pytest.approx((-30.0, 0.0))


def test_melshow_never_shows(tone, ax, monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show() was called"))
    plots.melshow(tone, sr=SR, ax=ax)
    plots.waveshow(tone, sr=SR, ax=ax)


def test_clip_figure_is_a_figure_outside_pyplot(tone):
    import mgtoolkit as mg

    clip = mg.Clip(
        waveform=tone,
        sample_rate=SR,
        seed=7,
        request=mg.GenerationRequest(prompt="a sine", seed=7, model="tiny"),
        model_info={"name": "tiny"},
    )
    before = plt.get_fignums()
    fig = plots.clip_figure(clip)
    assert isinstance(fig, Figure) and plt.get_fignums() == before
    wave_ax, mel_ax, _cbar = fig.axes
    assert isinstance(wave_ax.lines[0], Line2D) and isinstance(mel_ax.collections[0], QuadMesh)
    assert "seed 7" in wave_ax.get_title()


def test_denoising_figure_shares_one_colour_scale():
    snaps = [(0, np.full((64, 20), -60.0)), (4, np.full((64, 20), -10.0))]
    fig = plots.denoising_figure(snaps, sr=SR, total_steps=5)
    meshes = [ax.collections[0] for ax in fig.axes[:2]]
    assert all(m.get_clim() == (-60.0, -10.0) for m in meshes)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["after step 1 of 5", "after step 5 of 5"]
