"""Export that fits a DAW: each format read back at the asked rate, loudness, true peak, tags, bad input."""

from __future__ import annotations

import json

import librosa
import numpy as np
import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.errors import InvalidInputError
from mgtoolkit.io.features import integrated_loudness, true_peak_dbfs

SR = 16000


def make_clip(wave: np.ndarray, prompt: str = "a tone, then clicks") -> mg.Clip:
    return mg.Clip(
        waveform=np.asarray(wave, np.float32),
        sample_rate=SR,
        seed=7,
        request=mg.GenerationRequest(prompt=prompt, model="tiny"),
        score=0.25,
    )


@pytest.fixture(scope="module")
def chord():
    """Four seconds of a held A-minor triad (peak about -12 dBFS, no transients)."""
    t = np.arange(4 * SR) / SR
    return make_clip(sum(0.08 * np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63)))


@pytest.fixture(scope="module")
def music():
    """Two seconds of an A-minor triad with a click every 0.5 s (120 BPM)."""
    t = np.arange(4 * SR) / SR
    wave = sum(0.08 * np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63))
    for k in range(8):
        start = int(k * 0.5 * SR)
        wave[start : start + 160] += 0.4 * np.exp(-np.arange(160) / 30.0)
    return make_clip(wave)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_each_format_reads_back_at_the_asked_rate(music, tmp_path, fmt):
    path = music.save(tmp_path, format=fmt, sample_rate=44100)
    assert path.suffix == f".{fmt}" and path.with_suffix(".json").is_file()
    info = sf.info(str(path))
    assert info.samplerate == 44100 and info.channels == 1
    wave, rate = librosa.load(str(path), sr=None)
    assert rate == 44100 and abs(wave.shape[0] - 4 * 44100) <= (2304 if fmt == "mp3" else 0)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["file"] == path.name and sidecar["export"]["format"] == fmt
    assert sidecar["export"]["sample_rate"] == 44100 and sidecar["export"]["resampler"] == "soxr VHQ"
    assert sidecar["score"] == 0.25 and sidecar["seed"] == 7


def test_tempo_and_key_in_the_sidecar_and_the_tags(music, tmp_path):
    path = music.save(tmp_path, format="flac")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["tempo_bpm"] == pytest.approx(120, abs=1) and sidecar["key"] == "A minor"
    tags = sf.SoundFile(str(path)).copy_metadata()
    assert tags["title"] == "a tone, then clicks"
    assert "seed 7" in tags["comment"] and "key A minor" in tags["comment"] and "BPM" in tags["comment"]
    assert tags["software"].startswith(f"mgtoolkit {mg.__version__}")


def test_resampling_keeps_the_sound(music, tmp_path):
    path = music.save(tmp_path, format="flac", sample_rate=48000)
    wave, rate = sf.read(str(path), dtype="float64")
    back = librosa.resample(wave, orig_sr=48000, target_sr=SR, res_type="soxr_vhq")[100:-100]
    original = music.waveform[100:-100].astype(np.float64)
    error_db = 20 * np.log10(np.sqrt(np.mean((back - original) ** 2)) / np.sqrt(np.mean(original**2)))
    assert error_db < -40  # there and back again: the clicks' edges ring a little, nothing more


@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_loudness_normalisation_reaches_the_target(chord, tmp_path, target):
    path = chord.save(tmp_path, format="wav", loudness=target)
    wave, rate = sf.read(str(path), dtype="float64")
    assert integrated_loudness(wave, rate) == pytest.approx(target, abs=0.5)
    done = json.loads(path.with_suffix(".json").read_text())["export"]
    assert done["target_lufs"] == target and not done["peak_limited"]
    assert done["loudness_lufs"] == pytest.approx(target, abs=0.5)


def test_true_peak_ceiling_wins_over_the_loudness_target(tmp_path):
    """Sparse clicks: reaching -8 LUFS would put the peaks far above 0 dBFS."""
    wave = np.zeros(2 * SR, np.float32)
    wave[:: SR // 4] = 0.5
    path = make_clip(wave).save(tmp_path, format="wav", loudness=-8.0)
    done = json.loads(path.with_suffix(".json").read_text())["export"]
    assert done["peak_limited"] and done["true_peak_dbtp"] <= -1.0 + 0.05
    written, rate = sf.read(str(path), dtype="float64")
    assert true_peak_dbfs(written, rate) <= -1.0 + 0.1 and done["loudness_lufs"] < -8.0


def test_default_save_is_still_16_bit_wav_at_the_model_rate(music, tmp_path):
    path = music.save(tmp_path)
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate) == ("WAV", "PCM_16", SR)
    assert "export" not in json.loads(path.with_suffix(".json").read_text())


def test_never_overwrites(music, tmp_path):
    first = music.save(tmp_path, format="ogg", name="take")
    second = music.save(tmp_path, format="ogg", name="take")
    assert (first.name, second.name) == ("take.ogg", "take-1.ogg")


@pytest.mark.parametrize(
    ("make", "options", "match"),
    [
        (
            lambda: np.zeros(SR),
            {"loudness": -14.0},
            r"^waveform='1\.00 s of silence': is silent.*; pass loudness=None\.$",
        ),
        (lambda: 0.3 * np.ones(160), {"loudness": -14.0}, r"^waveform='10 ms': is shorter than the 0\.4 s"),
        (
            lambda: np.full(SR, np.nan),
            {"format": "flac"},
            r"^waveform='samples with NaN/inf': has non-finite samples",
        ),
        (
            lambda: np.broadcast_to(np.float32(0.1), (2 * 3600 * SR,)),  # two hours, in no memory
            {"format": "flac"},
            r"^waveform='7200\.0 s': is longer than 1800 s; export it in parts\.$",
        ),
        (
            lambda: 0.3 * np.ones(SR),
            {"format": "aiff"},
            r"^format='aiff': is not a format mgtoolkit exports; use one of",
        ),
        (
            lambda: 0.3 * np.ones(SR),
            {"format": "mp3", "sample_rate": 96000},
            r"^sample_rate=96000: is not a rate MP3",
        ),
        (
            lambda: 0.3 * np.ones(SR),
            {"sample_rate": 44100.5},
            r"^sample_rate=44100\.5: is not a whole number",
        ),
        (lambda: 0.3 * np.ones(SR), {"loudness": 3.0}, r"^loudness=3\.0: must be between -40 and -5 LUFS"),
        (lambda: 0.3 * np.ones(SR), {"loudness": float("nan")}, r"^loudness=nan: is not a finite number"),
    ],
    ids=["silence", "10ms", "nan", "2h", "format", "mp3-rate", "rate", "loud", "loud-nan"],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, make, options, match):
    with pytest.raises(InvalidInputError, match=match) as err:
        make_clip(make()).save(tmp_path / "out", **{"format": "wav", **options})
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
