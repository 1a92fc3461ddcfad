"""Audio + prompt → music (SDEdit) on the tiny AudioLDM: inputs, strength, determinism, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.errors import GenerationCancelled, InvalidInputError
from mgtoolkit.io.audio import load_audio
from mgtoolkit.models import sdedit

SR = 16000
KW = {"num_inference_steps": 4, "seed": 5, "model": "tiny", "negative_prompt": "noise"}


def _tone(seconds: float = 1.0, freq: float = 440.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return mg.load_model("tiny")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same 1.2 s tone as a 44.1 kHz stereo WAV, a 22.05 kHz FLAC and an OGG."""
    folder = tmp_path_factory.mktemp("audio")
    out = {}
    for name, sr, fmt, subtype in (
        ("tone.wav", 44100, "WAV", "PCM_16"),
        ("tone.flac", 22050, "FLAC", None),
        ("tone.ogg", 32000, "OGG", "VORBIS"),
    ):
        mono = _tone(1.2, sr=sr)
        data = np.stack([mono, 0.5 * mono], axis=1) if name.endswith("wav") else mono
        sf.write(folder / name, data, sr, format=fmt, subtype=subtype)
        out[name] = folder / name
    return out


@pytest.fixture(scope="module")
def restyled(model):
    return mg.restyle((_tone(), SR), "jazz piano", strength=0.5, **KW)


def test_log_mel_follows_audioldm_conventions():
    mel = sdedit.log_mel(_tone(1.0, 1000.0), SR)
    assert mel.shape == (101, 64)  # centred STFT: 1 + samples // hop frames; 64 mel bins
    assert mel.min() >= np.log(sdedit.MEL_FLOOR) - 1e-6
    import librosa

    centres = librosa.mel_frequencies(n_mels=66, fmin=0, fmax=8000)[1:-1]
    assert abs(centres[int(mel[50].argmax())] - 1000.0) < 120.0  # the tone lands in its own band


@pytest.mark.parametrize("name", ["tone.wav", "tone.flac", "tone.ogg"])
def test_any_format_rate_and_channel_count(files, name):
    clip = mg.restyle(files[name], "calm piano", strength=0.5, **KW)
    assert clip.sample_rate == SR and clip.duration == pytest.approx(1.2, abs=1e-3)
    assert np.isfinite(clip.waveform).all()


def test_path_bytes_and_clip_inputs(files, restyled):
    by_path = mg.restyle(files["tone.wav"], "calm piano", strength=0.5, **KW)
    by_bytes = mg.restyle(files["tone.wav"].read_bytes(), "calm piano", strength=0.5, **KW)
    np.testing.assert_array_equal(by_path.waveform, by_bytes.waveform)
    from_clip = mg.restyle(restyled, "calm piano", strength=0.5, **KW)
    assert from_clip.duration == pytest.approx(restyled.duration)
    assert "clip 'jazz piano'" in from_clip.extra["restyle"]["source"]


def test_result_records_its_provenance(restyled, tmp_path):
    assert restyled.prompt == "jazz piano" and restyled.seed == 5
    info = restyled.extra["restyle"]
    assert info["strength"] == 0.5 and info["denoising_steps"] == 2 and info["source"] == "array"
    assert {"encode_s", "denoise_s", "decode_s", "total_s"} <= set(restyled.timings)
    assert restyled.save(tmp_path).with_suffix(".json").is_file()


def test_strength_zero_returns_the_input(files):
    wave = _tone()
    clip = mg.restyle((wave, SR), "heavy metal", strength=0.0, **KW)
    np.testing.assert_allclose(clip.waveform, wave, atol=1e-6)
    resampled = load_audio(files["tone.flac"], SR)
    clip = mg.restyle(files["tone.flac"], "heavy metal", strength=0.0, **KW)
    np.testing.assert_allclose(sdedit.log_mel(clip.waveform, SR), sdedit.log_mel(resampled, SR), atol=1e-4)


def test_strength_one_ignores_the_input_and_equals_text_to_music():
    a = mg.restyle((_tone(1.0, 440.0), SR), "jazz", strength=1.0, **KW)
    b = mg.restyle((np.sign(_tone(1.0, 97.0)) * 0.3, SR), "jazz", strength=1.0, **KW)
    np.testing.assert_array_equal(a.waveform, b.waveform)
    made = mg.generate("jazz", audio_length_in_s=1.0, **KW)
    np.testing.assert_allclose(a.waveform, made.waveform, atol=1e-5)


def test_low_strength_stays_near_the_input_in_latent_space(model):
    wave = _tone()
    start = sdedit.encode_audio(model, wave, 1.0).numpy()
    distance = {}
    for strength in (0.25, 0.5, 1.0):
        seen: list[np.ndarray] = []
        mg.restyle(
            (wave, SR),
            "jazz",
            strength=strength,
            callback=lambda i, n, lat, seen=seen: seen.append(lat),
            **KW,
        )
        distance[strength] = np.linalg.norm(seen[-1] - start) / np.linalg.norm(start)
    assert distance[0.25] < 0.3 < distance[1.0]
    assert distance[0.25] < distance[0.5] < distance[1.0]


def test_same_seed_same_result_even_after_paddle_draws(restyled):
    import paddle

    paddle.randn([4, 4])
    paddle.seed(999)
    again = mg.restyle((_tone(), SR), "jazz piano", strength=0.5, **KW)
    np.testing.assert_array_equal(again.waveform, restyled.waveform)
    other = mg.restyle((_tone(), SR), "jazz piano", strength=0.5, **{**KW, "seed": 6})
    assert not np.array_equal(other.waveform, restyled.waveform)


def test_callback_and_cancel():
    steps = []
    mg.restyle((_tone(), SR), "jazz", strength=0.75, callback=lambda i, n, lat: steps.append((i, n)), **KW)
    assert steps == [(0, 3), (1, 3), (2, 3)]
    stop = threading.Event()

    def stop_after_first(i, n, lat):
        stop.set()

    with pytest.raises(GenerationCancelled):
        mg.restyle((_tone(), SR), "jazz", strength=0.75, callback=stop_after_first, cancel=stop, **KW)


def test_variations(restyled):
    clips = mg.variations(restyled, 2, strength=0.5, num_inference_steps=4, seed=10)
    assert [c.seed for c in clips] == [10, 11]
    assert all(c.prompt == "jazz piano" and c.request.negative_prompt == "noise" for c in clips)
    assert not np.array_equal(clips[0].waveform, clips[1].waveform)
    with pytest.raises(InvalidInputError) as err:
        mg.variations(restyled, 0)
    assert err.value.field == "n"
    with pytest.raises(InvalidInputError) as err:
        mg.variations((_tone(), SR), 2)
    assert err.value.field == "prompt"


@pytest.mark.parametrize("strength", [-0.1, 1.5, "strong", None, True, float("nan")])
def test_strength_outside_zero_one_is_refused(strength):
    with pytest.raises(InvalidInputError) as err:
        mg.restyle((_tone(), SR), "jazz", strength=strength, **KW)
    assert err.value.field == "strength"


def test_bad_audio_is_refused_naming_audio(tmp_path, monkeypatch):
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio at all")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    good = tmp_path / "good.wav"
    sf.write(good, _tone(), SR)
    cases = {
        "silent": (np.zeros(SR, np.float32), SR),
        "too short": (_tone(0.2), SR),
        "too long": (_tone(61.0), SR),
        "corrupt": good.read_bytes()[:44] + bytes(range(256)) * 8,
        "not audio": notes,
        "zero bytes": b"",
        "zero-byte file": empty,
        "missing file": tmp_path / "nope.wav",
        "no sample rate": _tone(),
        "bad sample rate": (_tone(), -5),
        "nan": (np.full(SR, np.nan, np.float32), SR),
        "None": None,
    }
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, audio in cases.items():
        with pytest.raises(InvalidInputError) as err:
            mg.restyle(audio, "jazz", strength=0.5, **KW)
        assert err.value.field == "audio", name
        assert "\n" not in str(err.value), name
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_other_arguments_are_validated_and_non_audioldm_models_refused():
    with pytest.raises(InvalidInputError) as err:
        mg.restyle((_tone(), SR), "  ", strength=0.5, **KW)
    assert err.value.field == "prompt"
    with pytest.raises(InvalidInputError) as err:
        mg.restyle((_tone(), SR), "jazz", strength=0.5, **{**KW, "model": "musicldm"})
    assert err.value.field == "model"


@pytest.mark.parametrize("samples", [24400, 24401, 24479, 8000 + 1])
def test_output_is_exactly_as_long_as_the_input(samples):
    wave = np.resize(_tone(), samples)
    clip = mg.restyle((wave, SR), "jazz", strength=0.5, **KW)
    assert clip.waveform.shape == (samples,)


def test_load_audio_layouts_and_encodings():
    mono = _tone(1.0, sr=22050)
    stereo_rows = np.stack([mono, mono])  # (channels, samples)
    stereo_cols = stereo_rows.T  # (samples, channels)
    for audio in ((stereo_rows, 22050), (stereo_cols, 22050), (22050, mono)):
        out = load_audio(audio, SR)
        assert out.shape == (SR,) and out.dtype == np.float32
    pcm = (mono * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio((pcm, 22050), 22050), mono, atol=1e-4)


@pytest.mark.parametrize(
    "garbage",
    [b"fLaC" + bytes(range(256)) * 4, b"OggS" + b"\x00" * 500, b"RIFF\x10\x00\x00\x00WAVEfmt ", b"\x00" * 10],
)
def test_corrupt_audio_bytes_name_audio(garbage):
    with pytest.raises(InvalidInputError) as err:
        load_audio(garbage, SR)
    assert err.value.field == "audio"


def test_restyle_records_its_clip_in_the_history():
    from mgtoolkit.notebook.history import HISTORY

    hum = (np.sin(np.linspace(0, 600, 16000)).astype(np.float32) * 0.5, 16000)
    clip = mg.restyle(hum, "piano", strength=0.5, num_inference_steps=2, seed=2, model="tiny")
    assert HISTORY.clips[-1] is clip
