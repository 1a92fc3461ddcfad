"""The audio panel, driven headless: its request, the uploaded clip described, Cancel, uploads, and
the real restyle.

Headless: set ``.value``, press ``Button.click()``; stand-ins from ``panel_standins.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from panel_standins import (
    _EPOCH,
    SR,
    _audio_panel,
    _html,
    _ready,
    _upload,
    _wav_bytes,
    fake_describe_audio,
    fake_generate,
    fake_restyle,
)


def test_audio_request_equals_the_widget_values(history):
    panel = _audio_panel(history)
    panel.audio.path.value = "hum.wav"
    panel.strength.value = 0.35
    panel.negative_prompt.value = "hiss"
    panel.settings.random_seed.value = False
    panel.settings.seed.value = 5
    assert panel.request == {
        "audio": "hum.wav",
        "prompt": "lo-fi hip hop",
        "strength": 0.35,
        "negative_prompt": "hiss",
        "num_inference_steps": 4,
        "guidance_scale": 2.5,
        "seed": 5,
        "model": "tiny",
    }


def test_audio_run_shows_the_clip(history, tmp_path):
    import soundfile as sf

    wav = tmp_path / "hum.wav"
    sf.write(wav, 0.3 * np.sin(np.arange(SR) / 3.0), SR)
    panel = _audio_panel(history)
    panel.audio.path.value = str(wav)
    assert "<audio" in panel.preview.value and "hum.wav" in panel.preview.value
    panel.generate_button.click()
    assert panel.result.extra["restyle"]["strength"] == 0.6
    assert _html(panel).count("<audio") == 1 and _ready(panel) and len(history) == 1


def test_an_uploaded_clip_is_described_and_starts_the_prompt(history, tmp_path):
    import soundfile as sf

    wav = tmp_path / "hum.wav"
    sf.write(wav, 0.3 * np.sin(np.arange(SR) / 3.0), SR)
    panel = _audio_panel(history)
    panel.prompt.value = ""
    panel.audio.path.value = str(wav)
    assert panel.description.tagged_by == "clap=tiny"  # the tiny CLAP for the tiny music model
    assert "Heard:" in panel.heard.value and "92 BPM in A minor" in panel.heard.value
    assert panel.prompt.value == "calm, lo-fi, piano, 92 BPM, A minor"  # the description's prompt
    assert panel.status.text.startswith("Described") and _ready(panel)
    # a prompt the user typed is never replaced by a new description
    panel.prompt.value = "my own words"
    panel.describe_button.click()
    assert panel.prompt.value == "my own words"
    # a new clip forgets the old description
    panel.audio.path.value = str(tmp_path / "missing.wav")
    assert panel.description is None and panel.heard.value == ""


def test_write_music_prompt_turns_the_description_into_the_prompt(history):
    panel = _audio_panel(history)
    panel.audio.path.value = "hum.wav"  # described by the stand-in
    panel.write_button.click()
    assert panel.prompt.value == f"soft ambient pads for: {panel.description.sentence()}"
    assert panel.status.text.startswith("Music prompt ready") and _ready(panel)


def test_new_music_makes_a_fresh_clip_as_long_as_the_upload(history):
    seen = {}

    def generate(request, **kwargs):
        seen["request"] = request
        return fake_generate(request, **kwargs)

    panel = _audio_panel(history, generate=generate)
    panel.audio.path.value = "hum.wav"
    panel.prompt.value = "dreamy synth pads"
    panel.settings.random_seed.value, panel.settings.seed.value = False, 11
    panel.new_music_button.click()
    request = seen["request"]
    assert (request.prompt, request.audio_length_in_s, request.seed, request.model) == (
        "dreamy synth pads",
        2.4,
        11,
        "tiny",
    )
    assert panel.result.extra["audio_description"]["tempo_bpm"] == 92.0 and len(history) == 1
    assert _html(panel).count("<audio") == 1 and _ready(panel)
    panel._making = "new music"
    panel._on_step(1, 4)
    assert panel.status.text == "New music: step 2 of 4"


def test_a_clip_too_short_to_describe_names_the_file(history, tmp_path):
    import soundfile as sf

    from mgtoolkit.analysis.describe import describe_audio

    wav = tmp_path / "blip.wav"
    sf.write(wav, 0.3 * np.sin(np.arange(SR // 2) / 3.0), SR)
    panel = _audio_panel(history, describe=lambda audio, clap=None: describe_audio(audio, tags=False))
    panel.audio.path.value = str(wav)
    assert "blip.wav" in panel.status.text and "1 s" in panel.status.text, panel.status.text
    assert "Traceback" not in panel.status.text and panel.description is None and _ready(panel)


def test_audio_missing_clip_shows_the_message(history):
    panel = _audio_panel(history)
    panel.generate_button.click()
    assert panel.status.text.startswith("Audio: is missing; upload a WAV, FLAC, OGG or MP3 file") and _ready(
        panel
    )


def test_audio_cancel(history):
    panel = _audio_panel(
        history,
        restyle=lambda a, p, **kw: fake_restyle(a, p, **kw) if not panel.cancel_button.click() else None,
    )
    # the stand-in clicks Cancel before starting: the first step must stop
    panel.audio.path.value = "hum.wav"
    panel.generate_button.click()
    assert panel.status.text.startswith("Cancelled") and panel.result is None and _ready(panel)


def test_audio_panel_with_the_real_restyle(history):
    restyle = pytest.importorskip("mgtoolkit.tasks.audio").restyle
    panel = _audio_panel(history, restyle=restyle, describe=None)
    panel.settings.steps.value = 2
    panel.strength.value = 1.0
    panel.audio.upload.value = (
        {
            "name": "hum.wav",
            "type": "audio/wav",
            "size": 0,
            "content": memoryview(_wav_bytes()),
            "last_modified": _EPOCH,
        },
    )
    # the real describe_audio heard it on upload, with tags from the tiny CLAP
    assert panel.description is not None and panel.description.tagged_by
    assert panel.description.duration_s == pytest.approx(1.0) and "Heard:" in panel.heard.value
    panel.generate_button.click()
    assert panel.status.text.startswith("Done"), panel.status.text
    assert panel.result.duration == pytest.approx(1.0) and panel.result.model_info["name"] == "tiny"


def test_a_non_audio_upload_is_reported_at_once_without_a_player(history):
    panel = _audio_panel(history)
    panel.audio.upload.value = _upload("fake.wav", b"RIFF" + bytes(496))
    assert (
        panel.status.text.startswith("Uploaded file 'fake.wav': is not an audio file")
        and panel.status.tone == "danger"
    )
    assert "<audio" not in panel.preview.value
    assert "500 bytes" not in panel.status.text and "(samples, sample_rate)" not in panel.status.text


def test_an_upload_can_be_removed_and_the_panel_says_which_input_wins(history):
    panel = _audio_panel(history)
    panel.audio.path.value = "hum.wav"
    assert "Using the path hum.wav" in panel.audio.source.value and panel.audio.remove_button.disabled
    panel.audio.upload.value = _upload("take2.wav", _wav_bytes(), "audio/wav")
    assert "uploaded file take2.wav (the typed path is ignored" in panel.audio.source.value
    assert panel.audio.value() == _wav_bytes() and "<audio" in panel.preview.value
    panel.audio.remove_button.click()
    assert panel.audio.value() == "hum.wav" and "Using the path hum.wav" in panel.audio.source.value


def test_restyle_progress_explains_the_step_count(history):
    seen = []
    panel = _audio_panel(
        history, restyle=lambda a, p, **kw: seen.append(panel.status.text) or fake_restyle(a, p, **kw)
    )
    panel.audio.path.value = "hum.wav"
    panel._on_step(2, 12)
    assert panel.status.text.startswith("Restyling: step 3 of 12 (strength 0.6 × 4 steps")


def test_copy_audio_placeholder_and_strength_tooltip(history):
    panel = _audio_panel(history)
    assert ".png" not in panel.audio.path.placeholder and ".wav" in panel.audio.path.placeholder
    assert (
        panel.strength.min == 0.05 and "0:" not in panel.strength.tooltip and "0.05" in panel.strength.tooltip
    )


def test_a_description_of_a_clip_replaced_meanwhile_is_not_kept(history, tmp_path):
    """A slow describe finishing after another upload must not label the new clip."""
    import soundfile as sf

    for name in ("hum.wav", "other.wav"):
        sf.write(tmp_path / name, 0.3 * np.sin(np.arange(SR) / 3.0), SR)
    panel = _audio_panel(history)
    panel.prompt.value = ""

    def slow_describe(audio, *, clap=None):
        panel.audio.path.value = str(tmp_path / "other.wav")  # another clip, picked while this one is heard
        return fake_describe_audio(audio, clap=clap)

    panel._describe = slow_describe
    panel.audio.path.value = str(tmp_path / "hum.wav")
    assert panel.description is None and panel.prompt.value == "" and "Heard:" not in panel.heard.value
    assert "changed while it was being described" in panel.status.text and _ready(panel)
