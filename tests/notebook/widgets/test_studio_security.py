"""The studio as a Voilà visitor's browser drives it (issue 24, items 3 and two of 5;
item 4, escaping, is test_studio_escaping.py).

A browser changes widget state through messages: ``widget.set_state({...})`` is what the kernel
runs for one, and ``button._handle_button_msg`` for a click. Every attack here goes through those
doors and must end in a one-line message in the panel, with nothing run, read, decoded or written.
Stand-in backends count their calls, so "nothing ran" is asserted, not assumed.
"""

from __future__ import annotations

import io
import json
import os
import threading
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from visitor_standins import (
    PNG,
    SR,
    Calls,
    _audio_panel,
    _browser_click,
    _browser_upload,
    _image_panel,
    _ran_nothing,
    _text_panel,
    _wav,
)

import mgtoolkit as mg
from mgtoolkit import batching
from mgtoolkit.io.audio import check_audio_header, load_audio, safe_stem, save_clip, wav_bytes
from mgtoolkit.notebook.widgets import (
    AudioPanel,
    History,
    ImagePanel,
    Studio,
    StudioLimits,
    TextPanel,
)

# --- 3. limits live in the kernel --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slider", "limit_name", "limit", "attempt"),
    [
        ("duration", "max_audio_length_in_s", 10.0, 300.0),
        ("steps", "max_num_inference_steps", 20, 1000),
        ("candidates", "max_candidates", 2, 16),
    ],
)
def test_a_browser_raising_a_slider_max_gets_the_limit_back(calls, slider, limit_name, limit, attempt):
    limits = StudioLimits.notebook(**{limit_name: limit})
    panel = _text_panel(calls, limits, model="tiny")
    control = getattr(panel.settings, slider)
    control.set_state({"max": attempt})  # the browser rewrites the bound...
    control.set_state({"value": attempt})  # ...then sends the value
    control.set_state({"max": attempt, "value": attempt, "min": -5, "step": 1e-9})  # in one message
    assert control.max == limit and control.min > 0 and control.step >= 0.5
    assert control.value <= limit
    panel.prompt.value = "calm piano"
    panel.settings.duration.value = 1.0
    _browser_click(panel.generate_button)
    field = {
        "duration": "audio_length_in_s",
        "steps": "num_inference_steps",
        "candidates": "num_waveforms_per_prompt",
    }
    assert getattr(calls.generate[-1], field[slider]) <= limit


def test_values_beyond_the_limits_are_refused_in_python_before_anything_runs(calls, monkeypatch):
    """Even if a value got past the sliders, the request is checked against the limits in Python."""
    panel = _text_panel(calls, StudioLimits.notebook(max_num_inference_steps=20), model="tiny")
    panel.prompt.value = "calm piano"
    real = panel.settings.values
    for field, value, shown in [
        ("num_inference_steps", 1000, "Steps: 1000 is above this app's limit of 20; choose at most 20."),
        ("audio_length_in_s", 300.0, "Seconds: 300.0 is above this app's limit of 30 s; choose at most 30."),
        ("num_waveforms_per_prompt", 16, "Candidates: 16 is above this app's limit of 4; choose at most 4."),
    ]:
        monkeypatch.setattr(panel.settings, "values", lambda f=field, v=value: {**real(), f: v})
        _browser_click(panel.generate_button)
        assert panel.status.text == shown
        assert "\n" not in panel.status.text
    assert calls.generate == []


def test_a_model_the_app_does_not_offer_is_refused_and_never_downloaded(calls, monkeypatch):
    import mgtoolkit.models.weights as weights

    def no_download(*args, **kwargs):
        raise AssertionError("a download was started")

    monkeypatch.setattr(weights, "fetch_repo", no_download)
    monkeypatch.setattr(weights, "locate", lambda source, **kw: None)  # nothing is on this machine
    limits = StudioLimits.published(model="audioldm-s-full-v2")
    panel = _text_panel(calls, limits, model="tiny")
    assert list(panel.settings.model.options) == ["audioldm-s-full-v2", "tiny"]  # what the dropdown offers
    with pytest.raises(Exception):  # noqa: B017 - traitlets refuses an index outside the options
        panel.settings.model.set_state({"index": 7})
    assert panel.settings.model.value in limits.models
    panel.prompt.value = "calm piano"

    real = panel.settings.values
    monkeypatch.setattr(panel.settings, "values", lambda: {**real(), "model": "audioldm-l-full"})
    _browser_click(panel.generate_button)
    assert panel.status.text.startswith("Model: 'audioldm-l-full' is not offered by this app; choose one of")

    monkeypatch.setattr(panel.settings, "values", real)
    panel.settings.model.value = "audioldm-s-full-v2"  # offered, but not downloaded
    _browser_click(panel.generate_button)
    assert (
        "'audioldm-s-full-v2' is not on this machine and cannot be downloaded from here" in panel.status.text
    )
    assert calls.generate == []

    panel.settings.model.value = "tiny"  # allowed and here: runs
    panel.settings.duration.value = 1.0
    panel.settings.steps.value = 2
    _browser_click(panel.generate_button)
    assert len(calls.generate) == 1 and panel.status.text.startswith("Done")


def test_voila_gets_the_strict_limits_and_a_notebook_keeps_todays(monkeypatch, calls):
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    assert StudioLimits.for_environment() == StudioLimits.notebook()
    notebook = Studio(synchronous=True, history=History(), model="tiny")
    assert notebook.text.settings.steps.max == 200 and notebook.text.settings.candidates.max == 4
    assert notebook.image.image.path.layout.display != "none"
    monkeypatch.setenv("VOILA_KERNEL_ID", "a-visitor")
    voila = Studio(synchronous=True, history=History(), model="tiny")
    assert voila.limits.paths is False and voila.limits.allow_downloads is False
    assert voila.text.settings.steps.max == 100 and voila.text.settings.candidates.max == 2
    assert set(voila.text.settings.model.options) <= {mg.models.registry.default_model(), "tiny"}
    assert voila.image.image.path.layout.display == "none"
    assert voila.audio.audio.path.layout.display == "none"
    own = StudioLimits.published(model="tiny", max_candidates=1, paths=False)
    custom = Studio(synchronous=True, history=History(), model="tiny", limits=own)
    for panel in (custom.text, custom.image, custom.audio):
        assert panel.limits is own and panel.settings.limits is own
    assert custom.image.image.limits is own and custom.audio.audio.limits is own
    assert custom.text.settings.candidates.max == 1


def test_six_concurrent_clicks_make_one_generation(calls):
    """The busy flag is the kernel's: a browser re-enabling Generate or disabling Cancel changes nothing."""
    calls.gate = threading.Event()
    panel = TextPanel(
        calls.fake_generate, synchronous=False, history=History(), limits=StudioLimits.notebook()
    )
    panel.prompt.value = "calm piano"
    panel.settings.model.value = "tiny"
    panel.settings.duration.value = 1.0
    panel.settings.steps.value = 2
    _browser_click(panel.generate_button)
    for _ in range(100):  # wait until the worker is inside the backend
        if calls.generate:
            break
        threading.Event().wait(0.05)
    panel.generate_button.set_state({"disabled": False})
    panel.cancel_button.set_state({"disabled": True})
    clickers = [threading.Thread(target=_browser_click, args=(panel.generate_button,)) for _ in range(5)]
    for thread in clickers:
        thread.start()
    for thread in clickers:
        thread.join()
    _browser_click(panel.settings.reroll_button)
    assert panel.busy
    assert panel.status.text.startswith("Busy: the panel is still working on the last request")
    calls.gate.set()
    panel.wait(30)
    assert len(calls.generate) == 1
    assert not panel.busy and panel.status.text.startswith("Done")
    _browser_click(panel.generate_button)  # free again: the next click runs
    panel.wait(30)
    assert len(calls.generate) == 2


# --- Path boxes -------------------------------------------------------------------------------------------


@pytest.fixture()
def files(tmp_path):
    root = tmp_path / "app"
    (root / "pictures").mkdir(parents=True)
    (root / "pictures" / "lake.png").write_bytes(PNG + b"lake")
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG + b"secret")
    (root / "link.png").symlink_to(secret)
    (root / "dir.png").mkdir()
    locked = root / "locked.png"
    locked.write_bytes(PNG + b"locked")
    locked.chmod(0)
    return root, secret


def test_path_boxes_are_off_in_a_published_app(calls, files):
    _root, secret = files
    panel = _image_panel(calls, StudioLimits.published(model="tiny"))
    assert panel.image.path.layout.display == "none"
    messages = []
    for typed in (str(secret), "/no/such/file.png"):
        panel.image.path.set_state({"value": typed})  # the hidden box, written from the browser
        assert panel.preview.layout.display == "none" and panel.preview.value == b""
        _browser_click(panel.describe_button)
        messages.append(panel.status.text)
    assert messages[0] == messages[1]  # no answer tells which files exist
    assert messages[0].startswith("Image: is missing")
    assert calls.describe == [None, None]  # the backend never saw a path


def test_a_path_box_reads_only_inside_the_apps_folder_with_one_message_for_the_rest(calls, files):
    root, secret = files
    panel = _image_panel(calls, StudioLimits.notebook(paths=root))
    panel.image.path.set_state({"value": "pictures/lake.png"})
    assert bytes(panel.preview.value) == PNG + b"lake"
    _browser_click(panel.describe_button)
    assert calls.describe == [PNG + b"lake"]  # the bytes read here, not a path for the core to open

    refused = []
    attempts = [
        str(secret),
        "../secret.png",
        "link.png",
        "missing.png",
        "dir.png",
        "pictures/../../secret.png",
    ]
    if getattr(os, "geteuid", lambda: 0)() != 0:  # root reads a mode-000 file anyway
        attempts.append("locked.png")
    for typed in attempts:
        panel.image.path.set_state({"value": typed})
        assert panel.preview.layout.display == "none", typed  # nothing is previewed
        _browser_click(panel.describe_button)
        refused.append(panel.status.text.replace(repr(typed), "<typed>"))
    assert len(set(refused)) == 1, refused  # missing, outside, a symlink out, unreadable: one message
    assert refused[0].startswith("Path <typed>: is not a file this app can read;")
    assert len(calls.describe) == 1


def test_an_audio_path_outside_the_folder_is_never_previewed(calls, tmp_path):
    root = tmp_path / "app"
    root.mkdir()
    (tmp_path / "private.wav").write_bytes(_wav())
    panel = _audio_panel(calls, StudioLimits.notebook(paths=root))
    panel.audio.path.set_state({"value": "../private.wav"})
    assert panel.preview.value == "" and calls.describe_audio == []
    (root / "mine.wav").write_bytes(_wav())
    panel.audio.path.set_state({"value": "mine.wav"})
    assert "data:audio/wav;base64," in panel.preview.value
    assert calls.describe_audio == [_wav()]


# --- uploads are checked by their header, before decoding ---------------------------------------------


@pytest.fixture(scope="module")
def flac_bomb() -> bytes:
    """640 s of 8-channel silence at 16 kHz: about 80 KB of FLAC, 327 MB once decoded to float32."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=SR, channels=8, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros((SR * 20, 8), np.int16)
        for _ in range(32):
            out.write(block)
    data = buf.getvalue()
    assert len(data) < 300_000 and sf.info(io.BytesIO(data)).duration == 640.0
    return data


@pytest.fixture()
def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the upload was decoded")

    monkeypatch.setattr(sf, "read", refuse)
    monkeypatch.setattr(sf.SoundFile, "read", refuse)


@pytest.mark.parametrize("limits", [StudioLimits.notebook(), StudioLimits.published(model="tiny")])
def test_a_flac_bomb_is_refused_from_its_header_without_decoding(calls, flac_bomb, no_decoding, limits):
    panel = _audio_panel(calls, limits)
    tracemalloc.start()
    try:
        _browser_upload(panel.audio, "bomb.flac", flac_bomb)
        _browser_click(panel.describe_button)
        _browser_click(panel.generate_button)
        _browser_click(panel.new_music_button)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # the decoded file would be 327 MB
    assert panel.status.text.startswith("Uploaded file 'bomb.flac': ")
    assert ("has 8 channels" if limits.max_upload_channels < 8 else "is 640.0 s long") in panel.status.text
    assert panel.preview.value == ""
    assert _ran_nothing(calls)


def test_the_core_refuses_a_long_file_before_decoding_it(flac_bomb, no_decoding):
    with pytest.raises(mg.InvalidInputError, match=r"640.0 s of audio.*longer than the model's 600 s"):
        load_audio(flac_bomb, SR, max_s=600.0)
    with pytest.raises(mg.InvalidInputError, match="has 8 channels"):
        check_audio_header(flac_bomb, max_s=1000, max_channels=2)
    with pytest.raises(mg.InvalidInputError, match="longer than this app's 30 s"):
        check_audio_header(flac_bomb, max_s=30, max_channels=8)


def test_uploads_beyond_the_length_or_byte_cap_are_refused(calls):
    limits = StudioLimits.published(model="tiny", max_upload_bytes=200_000)
    panel = _audio_panel(calls, limits)
    _browser_upload(panel.audio, "long.wav", _wav(seconds=31.0, rate=2000))
    assert panel.status.text == (
        "Uploaded file 'long.wav': is 31.0 s long, longer than this app's 30 s: trim it first; "
        "upload a WAV, FLAC, OGG or MP3 file (at least 0.5 s)."
    )
    _browser_upload(panel.audio, "big.wav", _wav(seconds=10.0))
    assert panel.status.text.startswith("Uploaded file 'big.wav': is larger than this app's limit of 0.2 MB")
    image = _image_panel(calls, limits)
    _browser_upload(image.image, "big.png", PNG + bytes(300_000))
    assert image.status.text.startswith("Uploaded file 'big.png': is larger than this app's limit")
    _browser_click(image.describe_button)
    assert _ran_nothing(calls)
    _browser_upload(panel.audio, "fine.wav", _wav(seconds=1.0, channels=2))
    assert calls.describe_audio == [_wav(seconds=1.0, channels=2)]  # within the limits: described


# --- 5. low items: Windows device names, sidecars a batch did not write -----------------------------------


@pytest.mark.parametrize(
    "name", ["CON", "prn", "Aux", "NUL", "com1", "COM9", "lpt1", "LPT9", "nul.wav", "Con "]
)
def test_windows_device_names_never_become_a_file_stem(name, tmp_path):
    stem = safe_stem(name)
    assert stem.split(".")[0].strip().lower() not in {"con", "prn", "aux", "nul"} | {
        f"{p}{n}" for p in ("com", "lpt") for n in range(10)
    }
    clip = Calls().fake_generate(mg.GenerationRequest(prompt="calm", model="tiny", audio_length_in_s=1.0))[0]
    path = save_clip(clip, tmp_path, name=name)
    assert path.exists() and path.stem == stem
    assert safe_stem("console") == "console" and safe_stem("com10") == "com10"


def test_safe_stem_of_con_gets_a_suffix():
    assert safe_stem("CON") == "con_"
    assert safe_stem("LPT3") == "lpt3_"


def test_a_batch_never_deletes_a_sidecar_it_did_not_write(tmp_path):
    output = batching.open_output(tmp_path)
    clip = Calls().fake_generate(mg.GenerationRequest(prompt="calm", model="tiny", audio_length_in_s=1.0))[0]
    mine = tmp_path / "0001-calm_seed1.json"
    mine.write_text("my own notes, not a sidecar\n")
    with pytest.raises(FileExistsError, match="was not written by mgtoolkit"):
        batching.output._write_clip(output, "0001-calm_seed1", clip)
    assert mine.read_text() == "my own notes, not a sidecar\n"
    assert not (tmp_path / "0001-calm_seed1.wav").exists()
    # a sidecar left by a stopped batch (its own JSON, naming its WAV) is replaced, and the WAV written
    left = {**clip.metadata(), "file": "0002-calm_seed1.wav"}
    (tmp_path / "0002-calm_seed1.json").write_text(json.dumps(left, default=str))
    assert batching.output._write_clip(output, "0002-calm_seed1", clip).endswith("0002-calm_seed1.wav")
    assert json.loads((tmp_path / "0002-calm_seed1.json").read_text())["file"] == "0002-calm_seed1.wav"


def test_wav_bytes_round_trip_for_the_header_check():
    info = check_audio_header(wav_bytes(np.zeros(1600), SR), max_s=1, max_channels=1)
    assert (info.frames, info.samplerate, info.channels) == (1600, SR, 1)


def test_the_core_refuses_a_long_file_by_path_before_reading_it(
    flac_bomb, no_decoding, tmp_path, monkeypatch
):
    bomb = tmp_path / "bomb.flac"
    bomb.write_bytes(flac_bomb)
    monkeypatch.setattr(type(bomb), "read_bytes", lambda self: pytest.fail("the file was read whole"))
    with pytest.raises(mg.InvalidInputError, match="longer than the model's 600 s"):
        load_audio(str(bomb), SR, max_s=600.0)


def test_texts_longer_than_the_limit_are_refused_before_anything_runs(calls):
    limits = StudioLimits.published(model="tiny")
    text = _text_panel(calls, limits, model="tiny")
    text.prompt.set_state({"value": "piano " * 1000})
    _browser_click(text.generate_button)
    assert text.status.text == "Prompt: 6000 characters are more than this app's 1000; shorten it."
    image = _image_panel(calls, limits)
    image.caption.set_state({"value": "a lake " * 1000})
    _browser_click(image.write_button)
    assert image.status.text == "Caption: 7000 characters are more than this app's 1000; shorten it."
    _browser_click(image.generate_button)
    assert image.status.text.startswith("Caption: 7000 characters")
    assert _ran_nothing(calls)


def test_extend_is_refused_past_the_longest_clip_the_app_makes(calls):
    extended = []

    def fake_extend(clip, *, seconds, callback=None, cancel=None):
        extended.append(seconds)
        return clip

    limits = StudioLimits.notebook(max_extended_s=5.0)
    panel = TextPanel(
        calls.fake_generate, extend=fake_extend, synchronous=True, history=History(), limits=limits
    )
    clip = calls.fake_generate(mg.GenerationRequest(prompt="calm", model="tiny", audio_length_in_s=1.0))[0]
    panel.extend_clip(clip, 10.0)
    assert panel.status.text == "Seconds: 11.0 is above this app's limit of 5 s; choose at most 5."
    panel.extend_clip(clip, 3.0)
    assert extended == [3.0]


def test_a_captioner_or_writer_is_not_downloaded_where_downloads_are_off(calls, monkeypatch):
    import mgtoolkit.models.weights as weights
    import mgtoolkit.tasks.image as image_tasks

    monkeypatch.setenv("MGTOOLKIT_CAPTIONER", "blip2")
    monkeypatch.setenv("MGTOOLKIT_WRITER", "qwen2-0.5b")
    monkeypatch.setattr(weights, "locate", lambda source, **kw: None)
    for name in ("describe_image", "write_music_prompt", "fetch_repo"):
        monkeypatch.setattr(
            image_tasks, name, lambda *a, **k: pytest.fail("a model was loaded"), raising=False
        )
    panel = ImagePanel(synchronous=True, history=History(), limits=StudioLimits.published(model="tiny"))
    _browser_upload(panel.image, "lake.png", PNG)
    _browser_click(panel.describe_button)
    assert panel.status.text.startswith(
        "The captioner (stage 1) 'blip2' is not on this machine and cannot be downloaded from here."
    )
    panel.caption.value = "a lake at dawn"
    _browser_click(panel.write_button)
    assert panel.status.text.startswith("The writer (stage 2) 'qwen2-0.5b' is not on this machine")


def test_an_image_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import mgtoolkit.io.images as images

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    big = tmp_path / "big.png"
    big.write_bytes(PNG + bytes(200))
    monkeypatch.setattr(type(big), "read_bytes", lambda self: pytest.fail("the file was read"))
    with pytest.raises(mg.InvalidInputError, match="is larger than 0.0001 MB"):
        images.load_image(str(big))


def test_audio_is_described_without_tags_where_clap_would_be_downloaded(monkeypatch):
    import mgtoolkit.analysis.describe as describe_module
    import mgtoolkit.models.weights as weights

    asked = []

    def fake_describe_audio(audio, *, clap=None, tags=True):
        asked.append((clap, tags))
        return Calls().fake_describe_audio(audio, clap=clap)

    monkeypatch.setattr(weights, "locate", lambda source, **kw: None)
    monkeypatch.setattr(describe_module, "describe_audio", fake_describe_audio)
    limits = StudioLimits.published(model="audioldm-s-full-v2")
    assert not limits.may_load("clap", None) and limits.may_load("clap", "tiny")
    panel = AudioPanel(synchronous=True, history=History(), limits=limits, model="audioldm-s-full-v2")
    _browser_upload(panel.audio, "hum.wav", _wav())
    assert asked == [(None, False)]  # the default CLAP is not here: no tags, and no download
    assert StudioLimits.notebook().may_load("clap", None)
