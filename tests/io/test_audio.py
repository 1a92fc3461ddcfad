"""WAV + sidecar files: safe names, 16-bit PCM at the native rate, atomic, never overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.io import audio
from mgtoolkit.types import Clip, GenerationRequest


def make_clip(prompt="Smooth jazz / piano", seed=7, sr=16000, seconds=0.5) -> Clip:
    t = np.arange(int(sr * seconds)) / sr
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    req = GenerationRequest(
        prompt=prompt,
        negative_prompt="noise",
        audio_length_in_s=seconds,
        num_inference_steps=3,
        guidance_scale=2.5,
        seed=seed,
        num_waveforms_per_prompt=1,
        model="tiny",
    )
    info = {"name": "tiny", "license": "random weights", "device": "cpu", "dtype": "float32"}
    return Clip(
        waveform=wave, sample_rate=sr, seed=seed, request=req, model_info=info, timings={"total_s": 1.25}
    )


@pytest.mark.parametrize(
    ("text", "stem"),
    [
        ("Smooth jazz / piano: relaxed..", "smooth-jazz-piano-relaxed"),
        ("../../etc/passwd", "etc-passwd"),
        ("C:\\Windows\\system32", "c-windows-system32"),
        ("Café déjà vu", "cafe-deja-vu"),
        ("日本の音楽", "ri-ben-yin-le"),  # Han characters in pinyin; kana have no pinyin
        ("🎹🎶", "clip"),
        ("", "clip"),
        ("a" * 500, "a" * 60),
    ],
)
def test_safe_stem(text, stem):
    assert audio.safe_stem(text) == stem


def test_save_writes_pcm16_wav_and_sidecar(tmp_path):
    clip = make_clip()
    wav = clip.save(tmp_path)
    assert wav == tmp_path / "smooth-jazz-piano_seed7.wav"
    info = sf.info(wav)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 8000)
    data, _ = sf.read(wav, dtype="float32")
    np.testing.assert_allclose(data, clip.waveform, atol=1 / 32767 + 1e-6)
    meta = json.loads(wav.with_suffix(".json").read_text())
    assert meta["prompt"] == "Smooth jazz / piano" and meta["negative_prompt"] == "noise"
    assert meta["seed"] == 7 and meta["parameters"]["num_inference_steps"] == 3
    assert meta["model"]["license"] == "random weights" and meta["model"]["device"] == "cpu"
    assert meta["mgtoolkit_version"] == mg.__version__ and meta["timings_s"] == {"total_s": 1.25}
    assert meta["sample_rate"] == 16000 and meta["file"] == wav.name


def test_save_never_overwrites(tmp_path):
    first = make_clip().save(tmp_path)
    before = first.read_bytes()
    louder = Clip(waveform=make_clip().waveform * 1.5, sample_rate=16000, seed=7, request=make_clip().request)
    second = louder.save(tmp_path)
    third = make_clip().save(tmp_path)
    assert [p.name for p in (first, second, third)] == [
        "smooth-jazz-piano_seed7.wav",
        "smooth-jazz-piano_seed7-1.wav",
        "smooth-jazz-piano_seed7-2.wav",
    ]
    assert first.read_bytes() == before
    assert (tmp_path / "smooth-jazz-piano_seed7-1.json").is_file()


def test_a_lone_sidecar_also_blocks_the_name(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    assert make_clip().save(tmp_path, name="x").name == "x-1.wav"
    assert (tmp_path / "x.json").read_text() == "{}"


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken(waveform, sample_rate):
        raise KeyboardInterrupt  # e.g. the user interrupts mid-write

    monkeypatch.setattr(audio, "wav_bytes", broken)
    with pytest.raises(KeyboardInterrupt):
        make_clip().save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_sidecar_removes_the_wav(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "_to_json", lambda data: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        make_clip().save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(mg.InvalidInputError, match="^out_dir=.*cannot be created"):
        make_clip().save(blocker / "sub")


def test_wav_bytes_clips_and_cleans():
    data = audio.to_pcm16(np.array([0.0, 2.0, -3.0, np.nan, 0.5], dtype=np.float32))
    assert data.tolist() == [0, 32767, -32767, 0, 16384]


def test_clip_html_embeds_a_playable_wav():
    import base64

    html = make_clip()._repr_html_()
    payload = html.split("base64,")[1].split('"')[0]
    assert base64.b64decode(payload)[:4] == b"RIFF" and "<audio" in html
