"""mgtoolkit.notebook.display and mgtoolkit.notebook.teaching: players, cards, side-by-side clips, denoising snapshots."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.notebook import display, teaching

SR = 16000


def _clip(seed: int = 3, prompt: str = "calm <piano> & rain", n: int = 12000) -> mg.Clip:
    wave = np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)
    request = mg.GenerationRequest(
        prompt=prompt,
        negative_prompt="noise",
        audio_length_in_s=0.75,
        num_inference_steps=4,
        guidance_scale=3.0,
        seed=seed,
        num_waveforms_per_prompt=1,
        model="tiny",
    )
    return mg.Clip(waveform=wave, sample_rate=SR, seed=seed, request=request, model_info={"name": "tiny"})


def _wav_uris(markup: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:audio/wav;base64,([^"]+)"', markup)]


@pytest.fixture()
def shown(monkeypatch):
    """Everything display.show*/about would hand to IPython's display()."""
    seen: list = []
    monkeypatch.setattr(display, "_display", seen.append)
    return seen


def test_clip_html_holds_a_complete_wav_of_the_clip():
    clip = _clip()
    (wav,) = _wav_uris(clip._repr_html_())
    data, sr = sf.read(io.BytesIO(wav), dtype="float32")
    assert sr == SR and data.shape == (12000,)
    assert np.allclose(data, clip.waveform, atol=1 / 32767 + 1e-6)


def test_clip_html_escapes_the_prompt_and_names_seed_and_model():
    markup = display.clip_html(_clip())
    assert "calm &lt;piano&gt; &amp; rain" in markup and "<piano>" not in markup
    assert "seed 3" in markup and "model tiny" in markup


def test_show_one_clip_draws_spectrogram_player_and_metadata(shown):
    display.show(_clip())
    (obj,) = shown
    markup = obj.data
    assert markup.count('class="mg-spectrogram"') == 1
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', markup).group(1))
    assert png.startswith(b"\x89PNG")
    assert len(_wav_uris(markup)) == 1
    assert "negative</b> noise" in markup and "seed 3" in markup and "4 steps" in markup


def test_show_several_clips_side_by_side(shown):
    clips = [_clip(seed=s) for s in (1, 2, 3, 4)]
    display.show(clips, plots=False)
    markup = shown[0].data
    assert 'class="mg-clips"' in markup and "display:flex" in markup
    assert len(_wav_uris(markup)) == 4 and "mg-spectrogram" not in markup
    assert [f"#{i}" in markup for i in (1, 2, 3, 4)] == [True] * 4
    assert all(f"seed {s}" in markup for s in (1, 2, 3, 4))


def test_show_accepts_anything_with_a_clip(shown):
    class Story:
        clip = _clip(seed=9)

    display.show(Story(), plots=False)
    display.show([Story(), _clip(seed=4)], plots=False)
    assert "seed 9" in shown[0].data
    assert "seed 9" in shown[1].data and "seed 4" in shown[1].data


def test_about_says_tiny_is_noise_by_design(monkeypatch):
    monkeypatch.setenv("MGTOOLKIT_MODEL", "tiny")
    note = mg.about()
    assert note.startswith("Live model: tiny (set by MGTOOLKIT_MODEL)") and "noise by design" in note
    assert repr(note) == str(note)  # shows without quotes as a cell result


def test_about_names_a_real_model_and_its_size():
    note = mg.about("audioldm-s-full-v2")
    assert "audioldm-s-full-v2" in note and "1.7 GB" in note and "non-commercial" in note


# --- teaching, on the tiny model (the real pipeline code path) -------------------------------------------


@pytest.fixture(scope="module")
def denoising():
    return teaching.denoise_with_snapshots(
        "calm piano",
        steps_to_show=(0, 2, 3),
        num_inference_steps=4,
        audio_length_in_s=1.0,
        seed=5,
        model="tiny",
    )


def test_snapshots_at_the_asked_steps_as_mel_db(denoising):
    assert [step for step, _ in denoising.snapshots] == [0, 2, 3]
    for _, mel in denoising.snapshots:
        assert mel.shape == (64, 100) and mel.dtype == np.float32 and np.isfinite(mel).all()
    assert denoising.sample_rate == SR and denoising.hop_length == 160 and denoising.total_steps == 4


def test_snapshots_change_along_the_way(denoising):
    first, last = denoising.snapshots[0][1], denoising.snapshots[-1][1]
    assert not np.allclose(first, last)


def test_decoding_snapshots_does_not_change_the_clip(denoising):
    again = mg.generate("calm piano", num_inference_steps=4, audio_length_in_s=1.0, seed=5, model="tiny")
    assert np.array_equal(again.waveform, denoising.clip.waveform)  # decoding did not disturb the run


def test_steps_outside_the_run_are_refused():
    with pytest.raises(mg.InvalidInputError, match="steps_to_show"):
        teaching.denoising_snapshots("calm piano", steps_to_show=(0, 4), num_inference_steps=4, model="tiny")


def test_show_denoising_displays_one_figure_and_the_player(shown):
    teaching.show_denoising(
        "calm piano", steps_to_show=(0, 1), num_inference_steps=2, audio_length_in_s=0.5, seed=1, model="tiny"
    )
    markup = shown[0].data
    assert 'class="mg-denoising"' in markup and "data:image/png;base64," in markup
    assert len(_wav_uris(markup)) == 1


# --- issue 16: comparisons that compare, notebook 05 that reads right --------------------------------------


def test_three_cards_fit_side_by_side_in_a_normal_jupyterlab_window():
    """JupyterLab's notebook column is about 1000 px wide: three cards and their gaps must fit."""
    css = display.clips_html([_clip(1), _clip(2), _clip(3)], plots=False)
    card = re.search(r"\.mg-card\{([^}]*)\}", css).group(1)
    basis = int(re.search(r"flex:\d+ \d+ (\d+)px", card).group(1))
    widest = int(re.search(r"max-width:(\d+)px", card).group(1))
    assert 3 * basis + 2 * 12 <= 1000 and widest <= 340


def test_restyled_cards_show_the_strength_and_players_are_labelled():
    restyled = _clip(4, prompt="lo-fi").with_extra(restyle={"source": "hum.wav", "strength": 0.3})
    markup = display.clips_html([_clip(1), restyled], plots=False)
    assert markup.count("strength 0.3") == 1
    assert '<audio controls aria-label="#2: lo-fi (seed 4)"' in markup


def test_denoising_titles_use_the_numbers_of_steps_to_show():
    assert display.denoising_titles([0, 5, 10, 19], 20) == [
        "steps_to_show 0: 1 of 20 done",
        "steps_to_show 5: 6 of 20 done",
        "steps_to_show 10: 11 of 20 done",
        "steps_to_show 19: 20 of 20 done",
    ]
    from mgtoolkit.notebook import plots

    snaps = [(0, np.zeros((64, 20))), (5, np.ones((64, 20)))]
    fig = plots.denoising_figure(snaps, sr=SR, titles=display.denoising_titles([0, 5], 20))
    assert [ax.get_title() for ax in fig.axes[:2]] == [
        "steps_to_show 0: 1 of 20 done",
        "steps_to_show 5: 6 of 20 done",
    ]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    assert len(fig.axes[0].get_xticks()) <= 5  # readable in a small panel


def test_snapshots_use_the_colour_scale_of_every_other_mel_plot(denoising):
    for _, mel in denoising.snapshots:
        assert float(mel.max()) == 0.0 and float(mel.min()) >= -teaching.TOP_DB


def test_mel_and_waveform_share_one_time_axis():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from mgtoolkit.notebook import plots

    fig = plots.clip_figure(_clip(n=24000))
    FigureCanvasAgg(fig).draw()
    wave_ax, mel_ax = fig.axes[:2]
    assert wave_ax.get_xlim() == pytest.approx(mel_ax.get_xlim())
    assert wave_ax.get_xlim() == pytest.approx((0.0, 1.5))
    assert list(wave_ax.get_xticks()) == list(mel_ax.get_xticks())
