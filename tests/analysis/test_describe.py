"""Describing a clip like a musician: tempo, key and loudness of synthesised signals, tags, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.analysis.describe import AudioDescription, describe_audio
from mgtoolkit.errors import InvalidInputError
from mgtoolkit.io.features import estimate_key, estimate_tempo, integrated_loudness, true_peak_dbfs

SR = 22050


def click_track(bpm: float, seconds: float = 12.0, sr: int = SR) -> np.ndarray:
    """Short decaying 1.5 kHz clicks every beat."""
    y = np.zeros(int(seconds * sr), np.float32)
    n = int(0.02 * sr)
    click = np.sin(2 * np.pi * 1500 * np.arange(n) / sr) * np.exp(-np.arange(n) / (0.004 * sr))
    for k in range(int(seconds * bpm / 60) + 1):
        i = int(round(k * 60 / bpm * sr))
        if i + n <= y.size:
            y[i : i + n] += 0.5 * click
    return y


def triad(midi: tuple[int, int, int], seconds: float = 4.0, sr: int = SR) -> np.ndarray:
    """A held triad of tones with two overtones each."""
    t = np.arange(int(seconds * sr)) / sr
    freqs = [440.0 * 2 ** ((m - 69) / 12) for m in midi]
    wave = sum(np.sin(2 * np.pi * f * h * t) / h for f in freqs for h in (1, 2, 3))
    return (0.1 * wave).astype(np.float32)


def sine(amplitude: float, seconds: float = 5.0, freq: float = 1000.0, sr: int = SR) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.mark.parametrize("bpm", [90, 128])
def test_tempo_of_a_click_track_within_one_bpm(bpm):
    tempo, beats = estimate_tempo(click_track(bpm), SR)
    assert tempo == pytest.approx(bpm, abs=1.0)
    np.testing.assert_allclose(np.diff(beats), 60 / bpm, atol=0.02)  # a beat on every click


def test_no_tempo_without_a_pulse():
    assert estimate_tempo(triad((60, 64, 67)), SR)[0] is None  # a held chord
    noise = np.random.default_rng(0).standard_normal(8 * SR).astype(np.float32) * 0.1
    assert estimate_tempo(noise, SR)[0] is None


@pytest.mark.parametrize(
    ("notes", "key", "mode"),
    [((60, 64, 67), "C", "major"), ((57, 60, 64), "A", "minor"), ((62, 66, 69), "D", "major")],
)
def test_key_of_a_triad(notes, key, mode):
    found, found_mode, strength = estimate_key(triad(notes), SR)
    assert (found, found_mode) == (key, mode) and strength > 0.6


def test_no_key_for_white_noise():
    noise = np.random.default_rng(2).standard_normal(4 * SR).astype(np.float32) * 0.1
    assert estimate_key(noise, SR) == (None, None, 0.0)


@pytest.mark.parametrize(("amplitude", "lufs"), [(0.1, -23.01), (0.5, -9.03)])
def test_loudness_of_a_calibrated_sine_within_half_a_lu(amplitude, lufs):
    """BS.1770: a 1 kHz sine of peak A in one channel reads 20 log10(A) - 3.01 LUFS."""
    assert integrated_loudness(sine(amplitude), SR) == pytest.approx(lufs, abs=0.5)
    assert integrated_loudness(sine(amplitude, sr=16000), 16000) == pytest.approx(lufs, abs=0.5)


def test_true_peak_sees_between_the_samples():
    """A sine at a quarter of the rate, phased so every sample misses its crest by 45 degrees."""
    sr = 16000
    y = np.sin(2 * np.pi * (sr / 4) * np.arange(sr) / sr + np.pi / 4).astype(np.float64)
    assert 20 * np.log10(np.abs(y).max()) == pytest.approx(-3.01, abs=0.05)
    assert true_peak_dbfs(y, sr) == pytest.approx(0.0, abs=0.3)


def test_describe_a_click_track_in_a_minor_on_file(tmp_path):
    wave = click_track(120, 8.0) + triad((57, 60, 64), 8.0)
    path = tmp_path / "take.flac"
    sf.write(path, wave, SR)
    d = describe_audio(path, tags=False)
    assert isinstance(d, AudioDescription) and d.duration_s == pytest.approx(8.0, abs=0.01)
    assert d.tempo_bpm == pytest.approx(120, abs=1) and d.key_name == "A minor"
    assert len(d.beat_times) >= 12 and d.loudness_lufs is not None and d.peak_dbfs <= 0
    assert d.sentence().startswith("A 8.0 s clip at about 120 BPM in A minor, ")
    assert d.tags == {} and d.to_dict()["key"] == "A"


def test_describe_with_tags_from_the_tiny_clap():
    d = describe_audio((triad((60, 64, 67)), SR), labels={"genre": ["jazz", "rock"], "mood": ["calm", "sad"]})
    assert d.tagged_by == "tiny" and set(d.tags) == {"genre", "mood"}
    assert {label for label, _ in d.tags["genre"]} == {"jazz", "rock"}
    top = d.top_tags()
    assert f"it sounds like {top['genre']}, {top['mood']}." in d.sentence()
    assert d.music_prompt().startswith(f"{top['mood']}, {top['genre']}") and "C major" in d.music_prompt()


def test_describe_a_generated_clip(tiny_model, fast):
    clip = mg.generate("calm piano", seed=3, **{**fast, "audio_length_in_s": 1.5})
    d = mg.describe_audio(clip, tags=False)
    assert d.duration_s == pytest.approx(1.5, abs=0.01) and d.loudness_lufs is not None


def _two_hours_file(tmp_path):
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_U8") as f:
        block = np.zeros(8000 * 60, np.float32)
        for _ in range(11):  # 11 minutes: over the limit, small on disk
            f.write(block)
    return path


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: (np.zeros(3 * SR, np.float32), SR), "is silent; pass a clip with some sound in it"),
        (lambda p: (sine(0.3, 0.01), SR), "is shorter than 1 s; pass a longer clip"),
        (lambda p: (np.full(2 * SR, np.nan, np.float32), SR), "has non-finite samples; pass finite samples"),
        (lambda p: (np.zeros(2 * 3600 * 1000, np.float32), 1000), "is longer than the model's 600 s"),
        (_two_hours_file, "is longer than 600 s; trim it"),
        (lambda p: p / "missing.wav", "is not an existing file"),
        (lambda p: np.zeros(SR), "has no sample rate"),
    ],
    ids=["silence", "10ms", "nan", "2h-array", "long-file", "missing", "no-rate"],
)
def test_bad_audio_is_one_line_naming_audio(tmp_path, make, match):
    with pytest.raises(InvalidInputError, match=r"^audio=") as err:
        describe_audio(make(tmp_path), tags=False)
    assert match in str(err.value) and "\n" not in str(err.value)


def test_empty_label_list_is_refused_before_the_audio_is_read(tmp_path):
    with pytest.raises(InvalidInputError, match=r"^labels=\{'mood': \[\]\}: category 'mood' has no labels"):
        describe_audio(tmp_path / "not-read.wav", labels={"mood": []})


def test_audio_to_music_describes_writes_and_generates(tiny_model):
    from mgtoolkit.notebook.history import HISTORY

    source = (click_track(120, 4.0) + triad((57, 60, 64), 4.0), SR)
    story = mg.audio_to_music(
        source,
        writer="template",
        labels={"mood": ["calm"]},
        audio_length_in_s=1.0,
        num_inference_steps=2,
        seed=9,
    )
    assert story.caption.startswith("A 4.0 s clip at about 120 BPM in A minor") and "calm" in story.caption
    assert story.captioner == "describe_audio" and story.clip.prompt == story.music_prompt
    described = story.clip.metadata()["extra"]["audio_description"]
    assert (
        described["key"] == "A" and described["mode"] == "minor" and described["tags"]["mood"][0][0] == "calm"
    )
    assert {"describe_s", "write_s", "generate_s"} <= set(story.timings) and HISTORY.clips[-1] is story.clip
    again = story.rerun(seed=10)  # the description is reused, not recomputed
    assert again.caption == story.caption and again.clip.seed == 10


def test_audio_to_music_checks_arguments_before_describing(tmp_path):
    with pytest.raises(InvalidInputError, match="^guidance_scale=-1"):
        mg.audio_to_music(tmp_path / "never-read.wav", writer="template", guidance_scale=-1)
    with pytest.raises(InvalidInputError, match="^steps=3: is not an argument of audio_to_music"):
        mg.audio_to_music(tmp_path / "never-read.wav", steps=3)


def test_show_names_tempo_and_key_and_draws_beats_and_chroma():
    from mgtoolkit.notebook import display, plots

    wave = click_track(120, 4.0, 16000) + triad((57, 60, 64), 4.0, 16000)
    clip = mg.Clip(waveform=wave, sample_rate=16000, seed=1, request=mg.GenerationRequest(prompt="clicks"))
    markup = display.clips_html(clip, chroma=True)
    assert '<span class="mg-musical">about 120 BPM · A minor</span>' in markup
    fig = plots.clip_figure(clip, beats=[0.5, 1.0, 1.5], chroma=True)
    wave_ax, mel_ax, chroma_ax = fig.axes[:3]
    assert len(wave_ax.collections[0].get_segments()) == 3  # the beat grid
    assert chroma_ax.get_ylabel() == "Pitch class" and len(fig.axes) == 5  # + two colour bars
    assert chroma_ax.get_xlim() == pytest.approx(mel_ax.get_xlim())
    silent = mg.Clip(waveform=np.zeros(8000, np.float32), sample_rate=16000, seed=1, request=clip.request)
    assert "mg-musical" not in display.clips_html(silent, plots=False)  # nothing to name, no error
