"""What the lessons compute, and the claims the notebooks make, checked on the tiny model.

Each test named after a claim checks the sentence a notebook or the README says (issue 20's list
of errors), so the words and the maths cannot drift apart.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.errors import InvalidInputError
from mgtoolkit.models import inpaint
from mgtoolkit.notebook import teaching

SR = 16000


def _clip(wave: np.ndarray, prompt: str = "test") -> mg.Clip:
    return mg.Clip(
        waveform=np.asarray(wave, np.float32),
        sample_rate=SR,
        seed=0,
        request=mg.GenerationRequest(prompt=prompt),
    )


def _pulse(bpm: float = 120.0, seconds: float = 6.0) -> np.ndarray:
    """Short decaying noise bursts on every beat: a clear pulse for the tracker."""
    rng = np.random.default_rng(0)
    y = 0.01 * rng.standard_normal(int(seconds * SR)).astype(np.float32)
    burst = (rng.standard_normal(800) * np.exp(-np.arange(800) / 120)).astype(np.float32)
    for start in np.arange(0, seconds - 0.1, 60.0 / bpm):
        i = int(start * SR)
        y[i : i + 800] += 0.8 * burst
    return y


# --- the predicted clean sample ------------------------------------------------------------------


def test_predicted_clean_is_the_ddim_schedulers_pred_original_sample(tiny_model):
    """x0 solved from a step's input and output equals what the scheduler itself predicted."""
    import paddle

    scheduler = type(tiny_model.pipe.scheduler).from_config(tiny_model.pipe.scheduler.config)
    scheduler.set_timesteps(10)
    alphas = teaching._ddim_alphas(tiny_model, 10)
    rng = np.random.default_rng(1)
    for i, t in enumerate(scheduler.timesteps):
        sample = rng.standard_normal((1, 8, 25, 16)).astype(np.float32)
        eps = rng.standard_normal((1, 8, 25, 16)).astype(np.float32)
        out = scheduler.step(paddle.to_tensor(eps), t, paddle.to_tensor(sample), eta=0.0)
        x0 = teaching.ddim_predicted_clean(sample, out.prev_sample.numpy(), *alphas[i])
        np.testing.assert_allclose(x0, out.pred_original_sample.numpy(), rtol=1e-3, atol=2e-3)


def test_denoising_keeps_the_current_and_the_predicted_clean_sample_at_each_step(tiny_model):
    run = teaching.denoise_with_snapshots(
        "calm piano",
        steps_to_show=(0, 2, 5),
        num_inference_steps=6,
        audio_length_in_s=1.0,
        seed=2,
        model="tiny",
    )
    assert [s for s, _ in run.clean] == [s for s, _ in run.snapshots] == [0, 2, 5]
    assert all(mel.shape == run.snapshots[0][1].shape for _, mel in run.clean)
    assert all(0.0 >= mel.min() >= -teaching.TOP_DB for _, mel in run.clean)
    assert [c.extra["predicted_clean_at_step"] for c in run.clean_clips] == [0, 2, 5]
    assert all(c.waveform.shape == run.clip.waveform.shape for c in run.clean_clips)
    # the prediction after the first step is not the current (noisy) sample decoded
    assert not np.allclose(run.clean[0][1], run.snapshots[0][1], atol=1.0)
    assert not np.allclose(run.clean_clips[0].waveform, run.clean_clips[-1].waveform, atol=1e-4)


def test_another_sampler_keeps_the_snapshots_but_no_predicted_clean(tiny_model):
    run = teaching.denoise_with_snapshots(
        "calm piano",
        steps_to_show=(0, 1),
        num_inference_steps=2,
        audio_length_in_s=1.0,
        seed=2,
        model="tiny",
        scheduler="dpm++",
    )
    assert [s for s, _ in run.snapshots] == [0, 1] and run.clean == [] and run.clean_clips == []


@pytest.mark.parametrize("option", [{"scheduler": "dpm++"}, {"loop": True}], ids=lambda o: next(iter(o)))
def test_show_predicted_clean_refuses_what_has_none_before_generating(option):
    with pytest.raises(InvalidInputError, match=f"^{next(iter(option))}=.*leave {next(iter(option))} out"):
        teaching.show_predicted_clean(
            "calm piano", steps_to_show=(0,), num_inference_steps=2, model="tiny", **option
        )


# --- beat clicks and key candidates -----------------------------------------------------------------


def test_beat_clicks_land_on_the_beats_and_can_double_or_halve():
    clip = _clip(_pulse(120.0))
    clicked = teaching.beat_clicks(clip)
    record = clicked.extra["beat_clicks"]
    assert record["tempo_bpm"] == pytest.approx(120.0, rel=0.03)
    beats = np.asarray(record["beat_times"])
    assert np.median(np.diff(beats)) == pytest.approx(0.5, rel=0.03)  # a click every half second
    assert clicked.waveform.shape == clip.waveform.shape and np.abs(clicked.waveform).max() <= 1.0
    assert not np.allclose(clicked.waveform, clip.waveform)
    double = teaching.beat_clicks(clip, tempo_factor=2).extra["beat_clicks"]
    half = teaching.beat_clicks(clip, tempo_factor=0.5).extra["beat_clicks"]
    assert (
        len(double["beat_times"]) == 2 * len(beats) - 1 and len(half["beat_times"]) == (len(beats) + 1) // 2
    )
    assert double["tempo_bpm"] == pytest.approx(2 * record["tempo_bpm"]) and half["tempo_bpm"] < 70


def test_no_pulse_means_no_clicks():
    noise = _clip(0.3 * np.random.default_rng(3).standard_normal(3 * SR))
    clicked = teaching.beat_clicks(noise)
    assert clicked.extra["beat_clicks"]["tempo_bpm"] is None
    np.testing.assert_array_equal(clicked.waveform, noise.waveform)


@pytest.mark.parametrize("options, field", [({"tempo_factor": 3}, "tempo_factor"), ({"volume": 2}, "volume")])
def test_beat_clicks_refuse_bad_options_naming_them(options, field):
    with pytest.raises(InvalidInputError, match=f"^{field}="):
        teaching.beat_clicks(_clip(_pulse()), **options)


def test_key_candidates_rank_a_triad_and_show_its_relative_key_close_behind():
    t = np.arange(4 * SR) / SR
    a_minor = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63)) / 4  # A C E
    keys = teaching.key_candidates(_clip(a_minor), top=4)
    assert keys[0][0] == "A minor"
    assert "C major" in [name for name, _ in keys]  # the same notes: close behind, as the notebook says
    assert keys == sorted(keys, key=lambda k: -k[1])
    assert teaching.key_candidates(_clip(0.3 * np.random.default_rng(4).standard_normal(3 * SR))) == []


# --- timed comparisons ----------------------------------------------------------------------------------


def test_compare_makes_each_setting_with_its_time(tiny_model):
    runs = teaching.compare(
        "calm piano",
        {"g 1": {"guidance_scale": 1.0}, "g 7": {"guidance_scale": 7.0}},
        audio_length_in_s=1.0,
        num_inference_steps=3,
        seed=5,
        model="tiny",
    )
    assert [r.label for r in runs.rows] == ["g 1", "g 7"]
    assert [c.request.guidance_scale for c in runs.clips] == [1.0, 7.0] and {c.seed for c in runs.clips} == {
        5
    }
    assert all(r.seconds > 0 for r in runs.rows)
    assert not np.allclose(runs.clips[0].waveform, runs.clips[1].waveform, atol=1e-6)
    assert repr(runs).splitlines()[0].split() == ["setting", "seconds", "steps", "guidance", "sampler"]
    with pytest.raises(InvalidInputError, match="^settings="):
        teaching.compare("calm piano", {}, model="tiny")


# --- the claims the notebooks and the README make ---------------------------------------------------


def test_claim_candidate_k_equals_seed_s_plus_k_alone_to_float_rounding(fast):
    """01 and README: candidate k of a batched call equals seed=s+k alone to a few millionths
    (about 5e-6 at most), not necessarily bit for bit."""
    batch = mg.generate("warm jazz", seed=50, num_waveforms_per_prompt=3, rank=False, **fast)
    for k, clip in enumerate(batch):
        alone = mg.generate("warm jazz", seed=50 + k, **fast)
        assert np.max(np.abs(alone.waveform - clip.waveform)) < 1e-5


def test_claim_guidance_1_turns_guidance_off_and_ignores_the_negative_prompt(fast):
    """02 (latent diffusion): at guidance 1 only the prompt's prediction is used."""
    a = mg.generate("warm jazz", negative_prompt="drums", guidance_scale=1.0, seed=4, **fast)
    b = mg.generate("warm jazz", negative_prompt=None, guidance_scale=1.0, seed=4, **fast)
    c = mg.generate("warm jazz", negative_prompt="drums", guidance_scale=1.5, seed=4, **fast)
    assert np.array_equal(a.waveform, b.waveform) and not np.allclose(a.waveform, c.waveform, atol=1e-6)


def test_claim_two_minutes_take_16_windows(tiny_model):
    """06 (longer music): each window after the first adds 7.5 s, so 120 s is 16 windows, not 12."""
    frames = [inpaint.frames_of(tiny_model, s) for s in (120.0, inpaint.WINDOW_S, inpaint.OVERLAP_S)]
    assert len(inpaint.plan_windows(*frames, held=False, loop=False)) == 16
    assert 1 + int(np.ceil((120 - 10) / 7.5)) == 16


def test_claim_resampling_to_48k_adds_nothing_above_8_khz(fast, tmp_path):
    """05 (listen): a 16 kHz clip saved at 48 kHz has (almost) no energy above 8 kHz."""
    import soundfile

    clip = mg.generate("bright cymbals", seed=9, **fast)
    path = clip.save(tmp_path, format="wav", sample_rate=48000)
    y, sr = soundfile.read(path)
    power = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    assert sr == 48000 and power[freqs > 8200].sum() < 1e-4 * power.sum()


def test_claim_the_readme_error_example_is_the_real_message():
    """README: the example error line is what validation says, with the real limit (300 s)."""
    from pathlib import Path

    with pytest.raises(InvalidInputError) as caught:
        mg.validate_request(
            mg.GenerationRequest(prompt="x", audio_length_in_s=-1.0, model="audioldm-s-full-v2")
        )
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "at most 300 s" in str(caught.value) and str(caught.value) in readme


def test_clean_clips_save_with_their_step(tiny_model, tmp_path):
    run = teaching.denoise_with_snapshots(
        "calm piano", steps_to_show=(1,), num_inference_steps=2, audio_length_in_s=1.0, seed=2, model="tiny"
    )
    path = run.clean_clips[0].save(tmp_path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["extra"]["predicted_clean_at_step"] == 1


def test_beat_clicks_and_key_candidates_hear_the_clip_as_describe_audio_does():
    import numpy as np

    import mgtoolkit as mg
    from mgtoolkit.notebook.teaching import beat_clicks, key_candidates

    sr = 16000
    t = np.arange(6 * sr) / sr
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63)) / 6  # A minor
    pulse = np.zeros_like(t)
    for start in np.arange(0, 6, 60 / 97):  # 97 BPM
        n = int(start * sr)
        pulse[n : n + 400] += np.hanning(800)[400:] * 0.8
    clip = mg.Clip(
        waveform=(chord + pulse).astype(np.float32),
        sample_rate=sr,
        seed=0,
        request=mg.GenerationRequest(prompt="x"),
    )
    heard = mg.describe_audio(clip, tags=False)
    assert beat_clicks(clip).extra["beat_clicks"]["tempo_bpm"] == round(heard.tempo_bpm, 2)
    assert key_candidates(clip)[0][0] == f"{heard.key} {heard.mode}"
