"""The panels and the studio, driven headless: set ``.value``, press ``Button.click()``.

Each panel is covered for a normal run, Cancel, and bad input shown in the panel. Text panel
runs use the tiny AudioLDM (the real pipeline); the other panels use pure-numpy stand-ins
injected through their constructors, plus the real chains when those are installed.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time

import ipywidgets as widgets
import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.errors import GenerationCancelled
from mgtoolkit.notebook.widgets import AudioPanel, History, ImagePanel, Studio, TextPanel

SR = 16000
PNG = b"\x89PNG\r\n\x1a\n" + bytes(8)  # a PNG signature: enough for the panel's preview
_EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


# --- stand-ins: pure numpy, but validating with the core and honouring callback/cancel -------------------


def fake_generate(request, *, callback=None, cancel=None, on_step=None):
    """Like mg.generate for a request: validates with the core, steps, makes sine clips."""
    req = mg.validate_request(request)
    for i in range(req.num_inference_steps):
        if on_step is not None:
            on_step(i)
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled(f"cancelled after step {i} of {req.num_inference_steps}")
        if callback is not None:
            callback(i, req.num_inference_steps, None)
    t = np.arange(int(req.audio_length_in_s * SR)) / SR
    return [
        mg.Clip(
            waveform=(0.3 * np.sin(2 * np.pi * 220 * (k + 1) * t)).astype(np.float32),
            sample_rate=SR,
            seed=req.seed + k,
            request=req,
            model_info={"name": req.model},
        )
        for k in range(req.num_waveforms_per_prompt)
    ]


def fake_describe(image):
    if image is None:
        raise mg.InvalidInputError("image", None, "is missing", "upload an image or type its path")
    return f"a quiet lake at dawn ({len(image) if isinstance(image, bytes) else image})"


def fake_write(description):
    return f"soft ambient pads for: {description}"


def fake_restyle(audio, prompt, *, strength, callback=None, cancel=None, **kwargs):
    if audio is None:
        raise mg.InvalidInputError("audio", None, "is missing", "upload a clip")
    request = mg.GenerationRequest(prompt=prompt, audio_length_in_s=1.0, **kwargs)
    clip = fake_generate(request, callback=callback, cancel=cancel)[0]
    return clip.with_extra(restyle={"strength": strength})


def fake_describe_audio(audio, *, clap=None):
    """Like mg.describe_audio: a real AudioDescription, without the signal processing."""
    from mgtoolkit.analysis.describe import AudioDescription

    if audio is None:
        raise mg.InvalidInputError("audio", None, "is missing", "upload a clip")
    return AudioDescription(
        duration_s=2.4,
        tempo_bpm=92.0,
        key="A",
        mode="minor",
        loudness_lufs=-18.0,
        tags={"genre": (("lo-fi", 0.7),), "mood": (("calm", 0.6),), "instruments": (("piano", 0.5),)},
        tagged_by=f"clap={clap}",
    )


@pytest.fixture()
def history():
    return History()


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fill_text(panel, prompt="calm piano", *, seconds=1.0, steps=3, model="tiny"):
    panel.prompt.value = prompt
    panel.settings.duration.value = seconds
    panel.settings.steps.value = steps
    panel.settings.model.value = model


def _expected_error(request) -> str:
    with pytest.raises(mg.InvalidInputError) as info:
        mg.validate_request(request)
    return str(info.value)


def _ready(panel) -> bool:
    return not panel.generate_button.disabled and panel.cancel_button.disabled


def _html(panel) -> str:
    return "".join(o["data"].get("text/html", "") for o in panel.output.outputs)


# --- text panel ------------------------------------------------------------------------------------------


def test_text_request_equals_the_widget_values(history):
    panel = TextPanel(fake_generate, synchronous=True, history=history)
    _fill_text(panel, "  smooth jazz piano ", seconds=2.5, steps=7)
    panel.negative_prompt.value = "noise"
    panel.settings.guidance.value = 4.0
    panel.settings.random_seed.value = False
    panel.settings.seed.value = 42
    panel.settings.candidates.value = 3
    assert panel.request == mg.GenerationRequest(
        prompt="  smooth jazz piano ",
        negative_prompt="noise",
        audio_length_in_s=2.5,
        num_inference_steps=7,
        guidance_scale=4.0,
        seed=42,
        num_waveforms_per_prompt=3,
        model="tiny",
    )
    panel.settings.random_seed.value = True
    panel.negative_prompt.value = ""
    assert panel.request.seed is None and panel.request.negative_prompt is None
    assert panel.settings.seed.disabled


def test_text_run_on_tiny_shows_player_spectrogram_and_the_random_seed(history, in_tmp):
    panel = TextPanel(synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    (clip,) = panel.result
    assert isinstance(clip, mg.Clip) and clip.duration == 1.0 and clip.model_info["name"] == "tiny"
    assert panel.settings.seed.value == clip.seed  # the random seed it used, ready to keep
    assert panel.status.text.startswith(f"Done: 1 clip, seed {clip.seed}")
    assert (panel.progress.value, panel.progress.max, panel.progress.bar_style) == (3, 3, "success")
    markup = _html(panel)
    assert markup.count("<audio") == 1 and 'class="mg-spectrogram"' in markup
    assert _ready(panel) and history.clips == [clip]
    assert list(in_tmp.iterdir()) == []  # nothing written unless asked


def test_text_candidates_side_by_side(history):
    panel = TextPanel(fake_generate, synchronous=True, history=history)
    _fill_text(panel)
    panel.settings.candidates.value = 3
    panel.settings.random_seed.value = False
    panel.settings.seed.value = 10
    panel.generate_button.click()
    assert [c.seed for c in panel.result] == [10, 11, 12]
    assert _html(panel).count("<audio") == 3 and len(history) == 3


def test_text_busy_while_working(history):
    seen = []
    panel = TextPanel(
        lambda r, **kw: fake_generate(
            r,
            **kw,
            on_step=lambda i: seen.append(
                (
                    panel.generate_button.disabled,
                    panel.cancel_button.disabled,
                    panel.settings.reroll_button.disabled,
                )
            ),
        ),
        synchronous=True,
        history=history,
    )
    _fill_text(panel)
    panel.generate_button.click()
    assert seen and all(s == (True, False, True) for s in seen)
    assert _ready(panel)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("prompt", "   ", "Prompt: '   ' is empty; "),
        ("seed", -1, "Seed: -1 must be a whole number from 0 to 4294967295; type one, or tick random"),
    ],
)
def test_text_bad_input_names_the_control_to_change(history, field, value, expected):
    panel = TextPanel(synchronous=True, history=history)
    _fill_text(panel)
    if field == "prompt":
        panel.prompt.value = value
    else:
        panel.settings.random_seed.value = False
        panel.settings.seed.value = value
    core = _expected_error(panel.request)  # the core's message names the argument...
    panel.generate_button.click()
    assert panel.status.text.startswith(expected), panel.status.text  # ...the panel names the control
    assert "or None" not in panel.status.text and (
        field != "prompt" or core.split("; ")[1] in panel.status.text
    )
    assert "Traceback" not in panel.status.text and panel.output.outputs == ()
    assert panel.progress.bar_style == "danger" and panel.result is None and _ready(panel)
    assert len(history) == 0


def test_text_unexpected_error_is_one_line(history):
    def broken(request, **kwargs):
        raise RuntimeError("vocoder exploded\nline two")

    panel = TextPanel(broken, synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    assert panel.status.text == "RuntimeError: vocoder exploded" and _ready(panel)


def test_text_cancel_synchronously_stops_at_the_next_step(history, in_tmp):
    steps = []

    def click_cancel_at_step_2(i):
        steps.append(i)
        if i == 2:
            panel.cancel_button.click()

    panel = TextPanel(
        lambda r, **kw: fake_generate(r, **kw, on_step=click_cancel_at_step_2),
        synchronous=True,
        history=history,
    )
    _fill_text(panel, steps=10)
    panel.generate_button.click()
    assert steps == [0, 1, 2] and panel.status.text.startswith("Cancelled")
    assert panel.result is None and len(history) == 0 and _ready(panel)
    assert list(in_tmp.iterdir()) == []


def test_text_cancel_from_another_thread_on_tiny(history, in_tmp):
    """The real thing: generation in the worker thread, Cancel clicked while it runs."""
    panel = TextPanel(history=history)
    _fill_text(panel, steps=400)
    panel.generate_button.click()
    deadline = time.monotonic() + 120
    while panel.progress.value < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert panel.generate_button.disabled and not panel.cancel_button.disabled
    panel.cancel_button.click()
    panel.wait(120)
    assert panel.status.text.startswith("Cancelled"), panel.status.text
    assert panel.progress.value < 400 and panel.result is None and _ready(panel)
    assert len(history) == 0 and list(in_tmp.iterdir()) == []
    _fill_text(panel, steps=2)  # ready for the next one
    panel.generate_button.click()
    panel.wait(120)
    assert panel.status.text.startswith("Done") and len(history) == 1


def test_text_reroll_draws_a_fixed_seed_and_generates(history):
    panel = TextPanel(fake_generate, synchronous=True, history=history)
    _fill_text(panel)
    panel.settings.reroll_button.click()
    first = panel.settings.seed.value
    assert not panel.settings.random_seed.value and panel.result[0].seed == first
    panel.settings.reroll_button.click()
    assert panel.result[0].seed == panel.settings.seed.value and len(history) == 2


def test_text_load_restores_a_clips_settings(history):
    panel = TextPanel(fake_generate, synchronous=True, history=history)
    clip = fake_generate(
        mg.GenerationRequest(
            prompt="old tune",
            negative_prompt="hiss",
            audio_length_in_s=2.0,
            num_inference_steps=9,
            guidance_scale=3.5,
            seed=77,
            num_waveforms_per_prompt=1,
            model="tiny",
        )
    )[0]
    panel.load(clip)
    assert panel.request == mg.GenerationRequest(
        prompt="old tune",
        negative_prompt="hiss",
        audio_length_in_s=2.0,
        num_inference_steps=9,
        guidance_scale=3.5,
        seed=77,
        num_waveforms_per_prompt=1,
        model="tiny",
    )


# --- image panel -----------------------------------------------------------------------------------------


def _image_panel(history, **backends):
    panel = ImagePanel(
        backends.get("describe", fake_describe),
        backends.get("write", fake_write),
        backends.get("generate", fake_generate),
        synchronous=True,
        history=history,
    )
    panel.settings.duration.value = 1.0
    panel.settings.steps.value = 3
    panel.settings.model.value = "tiny"
    return panel


def test_image_stages_fill_editable_text_and_generate_uses_the_edits(history):
    panel = _image_panel(history)
    panel.image.path.value = "lake.png"
    panel.describe_button.click()
    assert panel.caption.value == "a quiet lake at dawn (lake.png)" and _ready(panel)
    panel.caption.value = "a stormy sea"  # the user corrects the caption...
    panel.write_button.click()
    assert panel.music_prompt.value == "soft ambient pads for: a stormy sea"
    panel.music_prompt.value = "dark drones, distant thunder"  # ...and the prompt
    assert panel.request.prompt == "dark drones, distant thunder"
    panel.generate_button.click()
    clip = panel.result
    assert clip.prompt == "dark drones, distant thunder" and clip.extra["caption"] == "a stormy sea"
    assert _html(panel).count("<audio") == 1 and history.clips == [clip]


def test_image_request_equals_the_widget_values(history):
    panel = _image_panel(history)
    panel.music_prompt.value = "slow koto and rain"
    panel.negative_prompt.value = "drums"
    panel.settings.guidance.value = 3.5
    panel.settings.random_seed.value = False
    panel.settings.seed.value = 8
    assert panel.request == mg.GenerationRequest(
        prompt="slow koto and rain",
        negative_prompt="drums",
        audio_length_in_s=1.0,
        num_inference_steps=3,
        guidance_scale=3.5,
        seed=8,
        num_waveforms_per_prompt=1,
        model="tiny",
    )
    panel.image.path.value = "lake.png"
    assert panel.image.value() == "lake.png"


def test_image_generate_runs_the_empty_stages(history):
    panel = _image_panel(history)
    panel.image.upload.value = (
        {
            "name": "scene.png",
            "type": "image/png",
            "size": len(PNG),
            "content": memoryview(PNG),
            "last_modified": _EPOCH,
        },
    )
    assert panel.image.value() == PNG and panel.preview.value == PNG
    panel.generate_button.click()
    assert panel.caption.value == "a quiet lake at dawn (16)"
    assert panel.result.prompt == "soft ambient pads for: a quiet lake at dawn (16)"


def test_image_new_image_clears_the_old_texts(history):
    panel = _image_panel(history)
    panel.caption.value, panel.music_prompt.value = "old", "old"
    panel.image.path.value = "other.png"
    assert panel.caption.value == "" and panel.music_prompt.value == ""


def test_image_missing_image_shows_the_message(history):
    panel = _image_panel(history)
    panel.generate_button.click()
    assert panel.status.text == (
        "Image: is missing; upload a PNG, JPEG or WebP picture, or remove the upload and type the path of one."
    )
    assert panel.result is None and _ready(panel)


def test_image_cancel_during_music(history):
    panel = _image_panel(
        history,
        generate=lambda r, **kw: fake_generate(
            r, **kw, on_step=lambda i: panel.cancel_button.click() if i == 1 else None
        ),
    )
    panel.image.path.value = "lake.png"
    panel.generate_button.click()
    assert panel.status.text.startswith("Cancelled") and panel.result is None and _ready(panel)
    assert panel.caption.value  # the finished stages stay, to go on from


def test_image_panel_with_the_real_chain(history):
    chains = pytest.importorskip("mgtoolkit.tasks.image")
    from pathlib import Path

    example = Path(mg.__file__).parent / "assets" / "example_scene.png"
    if not example.exists():
        pytest.skip("example image not in the package yet")
    panel = ImagePanel(chains.describe_image, chains.write_music_prompt, synchronous=True, history=history)
    panel.settings.duration.value, panel.settings.steps.value = 1.0, 2
    panel.settings.model.value = "tiny"
    panel.image.path.value = str(example)
    panel.generate_button.click()
    assert panel.status.text.startswith("Done"), panel.status.text
    assert panel.caption.value and panel.music_prompt.value and isinstance(panel.result, mg.Clip)


# --- audio panel -----------------------------------------------------------------------------------------


def _audio_panel(history, restyle=fake_restyle, **backends):
    backends = {"describe": fake_describe_audio, "write": fake_write, "generate": fake_generate, **backends}
    panel = AudioPanel(restyle, synchronous=True, history=history, **backends)
    panel.prompt.value = "lo-fi hip hop"
    panel.settings.steps.value = 4
    panel.settings.model.value = "tiny"
    return panel


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


def _wav_bytes() -> bytes:
    from mgtoolkit.io.audio import wav_bytes

    return wav_bytes((0.3 * np.sin(np.arange(SR) / 3.0)).astype(np.float32), SR)


# --- studio ----------------------------------------------------------------------------------------------


def test_studio_tabs_history_save_and_reuse(history, in_tmp):
    studio = Studio(
        generate=fake_generate,
        describe=fake_describe,
        write=fake_write,
        restyle=fake_restyle,
        synchronous=True,
        history=history,
        model="tiny",
    )
    assert [studio.tabs.get_title(i) for i in range(3)] == ["Text → music", "Image → music", "Audio → music"]
    _fill_text(studio.text, "first tune")
    studio.text.generate_button.click()
    studio.image.image.path.value = "lake.png"
    studio.image.settings.duration.value = 1.0
    studio.image.generate_button.click()
    assert len(history) == 2 and "2 clips" in studio.gallery.title.value
    newest, oldest = studio.gallery.items.children
    assert "first tune" in oldest.children[0].value and "<audio" in oldest.children[0].value
    save, reuse, extend = oldest.children[2].children
    assert extend.description == "Extend +10 s"
    save.click()
    saved = sorted(p.name for p in (in_tmp / "outputs").iterdir())
    assert saved == [
        f"first-tune_seed{history.clips[0].seed}.json",
        f"first-tune_seed{history.clips[0].seed}.wav",
    ]
    assert 'download="' in oldest.children[3].value
    studio.tabs.selected_index = 1
    studio.text.prompt.value = "something else"
    reuse.click()
    assert studio.tabs.selected_index == 0 and studio.text.request.prompt == "first tune"
    assert studio.text.request.seed == history.clips[0].seed


def test_studio_save_error_shows_in_the_row(history, in_tmp):
    studio = Studio(generate=fake_generate, synchronous=True, history=history, model="tiny")
    _fill_text(studio.text)
    studio.text.generate_button.click()
    (in_tmp / "blocked").write_text("a file, not a folder")
    studio.gallery.out_dir.value = "blocked"
    row = studio.gallery.items.children[0]
    row.children[2].children[0].click()
    import html

    message = html.unescape(row.children[3].value)
    assert "Save to 'blocked': cannot be created" in message and "Traceback" not in message


def test_panels_share_the_kernel_history_by_default():
    from mgtoolkit.notebook import widgets

    assert TextPanel().history is widgets.HISTORY and mg.studio().history is widgets.HISTORY


def test_worker_thread_is_used_by_default(history):
    started = []
    panel = TextPanel(
        lambda r, **kw: started.append(threading.current_thread()) or fake_generate(r, **kw), history=history
    )
    _fill_text(panel)
    panel.generate_button.click()
    panel.wait(30)
    assert started and started[0] is not threading.main_thread() and len(history) == 1


def test_warnings_become_a_note_in_the_status_line(history, recwarn):
    import warnings

    def noisy(request, **kwargs):
        warnings.warn(
            mg.PromptTruncatedWarning("prompt is 90 tokens; only the first 77 are used"), stacklevel=1
        )
        warnings.warn("third-party deprecation \x1b[93mnoise\x1b[0m", DeprecationWarning, stacklevel=1)
        return fake_generate(request, **kwargs)

    panel = TextPanel(noisy, synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    assert panel.status.text.startswith("Done") and panel.status.text.endswith(
        "Note: prompt is 90 tokens; only the first 77 are used"
    )
    assert len(recwarn) == 0  # nothing escaped to stderr


def test_a_panel_does_not_swallow_other_threads_warnings(history):
    """The panel's note capture is per thread: a warning raised elsewhere meanwhile still shows."""
    import warnings

    inside, outside = threading.Event(), []

    def slow(request, **kwargs):
        inside.set()
        time.sleep(0.3)
        warnings.warn(mg.PromptTruncatedWarning("only this panel's note"), stacklevel=1)
        return fake_generate(request, **kwargs)

    panel = TextPanel(slow, history=history)
    _fill_text(panel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panel.generate_button.click()
        assert inside.wait(10)
        warnings.warn("another cell's warning", UserWarning, stacklevel=1)
        panel.wait(30)
        outside = [str(w.message) for w in caught]
    assert outside == ["another cell's warning"]
    assert panel.status.text.endswith("Note: only this panel's note")


def test_the_gallery_lets_go_of_clips_the_history_forgot():
    from mgtoolkit.notebook.widgets import HistoryGallery

    small = History(max_clips=2)
    gallery = HistoryGallery(small)
    clips = [
        fake_generate(mg.GenerationRequest(prompt=f"tune {i}", seed=i, model="tiny"))[0] for i in range(5)
    ]
    for clip in clips:
        small.add([clip])
    assert set(gallery._rows) == {id(c) for c in clips[-2:]}
    assert len(gallery.items.children) == 2


# --- issue 16: what a class met in a real browser ---------------------------------------------------------


def _upload(name: str, content: bytes, kind: str = "application/octet-stream") -> tuple:
    return (
        {
            "name": name,
            "type": kind,
            "size": len(content),
            "content": memoryview(content),
            "last_modified": _EPOCH,
        },
    )


def _studio(history, **kwargs):
    backends = {
        "generate": fake_generate,
        "describe": fake_describe,
        "write": fake_write,
        "restyle": fake_restyle,
        "describe_audio": fake_describe_audio,
    }
    return Studio(**backends, synchronous=True, history=history, model="tiny", **kwargs)


def test_slider_values_are_snapped_to_their_step(history):
    """Browsers send back 2.9999999999999996: the request (and the sidecar) must say 3."""
    text = TextPanel(fake_generate, synchronous=True, history=history)
    text.settings.duration.value = 2.9999999999999996
    text.settings.guidance.value = 2.5000000000000004
    assert text.request.audio_length_in_s == 3.0 and text.request.guidance_scale == 2.5
    audio = _audio_panel(history)
    audio.strength.value = 0.6000000000000001
    assert audio.request["strength"] == 0.6 and audio.request["guidance_scale"] == 2.5


def test_a_browser_length_gives_exactly_round_seconds_times_rate_samples_on_tiny(history, in_tmp):
    panel = TextPanel(synchronous=True, history=history)
    _fill_text(panel, steps=2)
    panel.settings.duration.value = 1.4999999999999998
    panel.generate_button.click()
    clip = panel.result[0]
    assert clip.waveform.shape == (round(1.5 * clip.sample_rate),), panel.status.text
    assert clip.request.audio_length_in_s == 1.5


@pytest.mark.parametrize("typed", ["../escaped", "{outside}", "link/inner"])
def test_save_refuses_folders_outside_the_save_root(history, tmp_path, typed):
    root, outside = tmp_path / "served", tmp_path / "elsewhere"
    root.mkdir(), outside.mkdir()
    (root / "link").symlink_to(outside)  # a symlink leading out of the root
    studio = _studio(history, save_root=root)
    _fill_text(studio.text)
    studio.text.generate_button.click()
    studio.gallery.out_dir.value = typed.format(outside=outside)
    row = studio.gallery.items.children[0]
    row.children[2].children[0].click()
    import html

    message = html.unescape(row.children[3].value)
    assert "is outside the folder this studio may write to" in message and str(root) in message
    assert list(outside.iterdir()) == [] and not (tmp_path / "escaped").exists()
    studio.gallery.out_dir.value = "class/week1"
    row.children[2].children[0].click()
    assert len(list((root / "class" / "week1").glob("*.wav"))) == 1


def test_the_save_box_can_be_hidden_and_the_root_defaults_to_the_working_directory(
    history, in_tmp, monkeypatch
):
    studio = _studio(history, save_box=False)
    assert studio.gallery.out_dir.layout.display == "none" and studio.gallery.save_root == in_tmp.resolve()
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    assert _studio(history).gallery.out_dir.layout.display is None
    monkeypatch.setenv("VOILA_KERNEL_ID", "a-visitor")  # what Voilà sets in each visitor's kernel
    assert _studio(history).gallery.out_dir.layout.display == "none"
    assert _studio(history, save_box=True).gallery.out_dir.layout.display is None


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_follow_the_umask(history, in_tmp, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        studio = _studio(history)
        _fill_text(studio.text)
        studio.text.generate_button.click()
        studio.gallery.items.children[0].children[2].children[0].click()
        direct = history.clips[0].save(in_tmp / "direct")  # clip.save (and the CLI, through it)
    finally:
        os.umask(old)
    files = [*(in_tmp / "outputs").iterdir(), direct, direct.with_suffix(".json")]
    assert len(files) == 4
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o666 & ~umask}


def test_save_twice_says_already_saved(history, in_tmp):
    studio = _studio(history)
    _fill_text(studio.text)
    studio.text.generate_button.click()
    row = studio.gallery.items.children[0]
    row.children[2].children[0].click()
    row.children[2].children[0].click()
    assert "already saved as" in row.children[3].value
    assert len(list((in_tmp / "outputs").glob("*.wav"))) == 1


def test_save_writes_the_format_rate_and_loudness_picked_above_the_list(history, in_tmp):
    import base64
    import html
    import json

    import pyloudnorm
    import soundfile

    studio = _studio(history)
    _fill_text(studio.text, seconds=2.0)
    studio.text.generate_button.click()
    export = studio.gallery.export
    assert export.values() == {"format": "wav", "sample_rate": None, "loudness": None}  # the default
    export.format.value, export.sample_rate.value, export.loudness.value = "flac", 44100, -14.0
    row = studio.gallery.items.children[0]
    row.children[2].children[0].click()
    (path,) = (in_tmp / "outputs").glob("*.flac")
    wave, rate = soundfile.read(str(path))
    assert rate == 44100 and soundfile.info(str(path)).subtype == "PCM_24"
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(wave) - -14.0) < 0.5
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["export"]["format"] == "flac" and sidecar["export"]["sample_rate"] == 44100
    # the download link is the file as written, not a WAV of the clip
    link = html.unescape(row.children[3].value)
    assert f'download="{path.name}"' in link and "data:audio/flac;base64," in link
    data = link.split("data:audio/flac;base64,")[1].split('"')[0]
    assert base64.b64decode(data) == path.read_bytes()
    # other options make another file; the same ones say "already saved"
    export.format.value, export.sample_rate.value, export.loudness.value = "mp3", 0, 0.0
    row.children[2].children[0].click()
    (mp3,) = (in_tmp / "outputs").glob("*.mp3")
    assert soundfile.info(str(mp3)).samplerate == SR
    row.children[2].children[0].click()
    assert "already saved as" in row.children[3].value
    assert len([p for p in (in_tmp / "outputs").iterdir() if p.suffix != ".json"]) == 2


def test_a_loudness_asked_of_silence_names_the_option_and_writes_nothing(history, in_tmp):
    def silent(request, **kwargs):
        clip = fake_generate(request, **kwargs)[0]
        return [dataclasses.replace(clip, waveform=np.zeros_like(clip.waveform))]

    studio = _studio(history)
    studio.text._generate = silent
    _fill_text(studio.text)
    studio.text.generate_button.click()
    studio.gallery.export.loudness.value = -23.0
    row = studio.gallery.items.children[0]
    row.children[2].children[0].click()
    import html

    message = html.unescape(row.children[3].value)
    assert message.count("loudness") >= 1 and "Save to" not in message and "Traceback" not in message
    assert not (in_tmp / "outputs").exists() or not list((in_tmp / "outputs").iterdir())


def test_terminal_colour_codes_never_reach_a_status(history):
    def noisy(request, **kwargs):
        raise RuntimeError("\x1b[93mDeprecationWarning: paddle.fluid is deprecated\x1b[0m")

    panel = TextPanel(noisy, synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    assert panel.status.text == "RuntimeError: DeprecationWarning: paddle.fluid is deprecated"
    panel.status.text = "a bare [93mcode[0m left by a copy"
    assert "[93m" not in panel.status.value and "\x1b" not in panel.status.value


def test_status_shows_the_full_text_and_is_announced(history):
    panel = TextPanel(fake_generate, synchronous=True, history=history)
    long = "word " * 80
    panel.status.text = long
    assert html_unescape(panel.status.value).count("word") == 80
    assert 'role="status"' in panel.status.value and 'aria-live="polite"' in panel.status.value
    css = panel.children[0].value
    assert "white-space: normal" in css and "focus-visible" in css


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_uploaded_files_are_named_by_their_file_name(history):
    def strict_describe(image):
        raise mg.InvalidInputError("image", image, "is not an image file PIL can read", "pass a PIL image")

    panel = _image_panel(history, describe=strict_describe)
    panel.image.upload.value = _upload("notes.txt", b"this is not an image at all")
    assert panel.status.text.startswith("Uploaded file 'notes.txt': is not a picture")  # at once
    assert panel.preview.layout.display == "none"
    panel.generate_button.click()
    assert panel.status.text.startswith(
        "Uploaded file 'notes.txt': is not an image file this panel can read"
    ), panel.status.text
    assert "b'" not in panel.status.text and "PIL" not in panel.status.text


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


def test_an_offline_model_message_says_what_the_panel_can_do(history):
    def offline(request, **kwargs):
        raise mg.ModelUnavailableError("model='x': could not load; pass model='/path/to/that/folder'")

    panel = TextPanel(offline, synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    assert panel.status.text == (
        "The music model 'x' is not on this machine and cannot be downloaded from here. Choose 'tiny' in "
        "the Model list to try the panel (its clips are noise by design), or ask the notebook's author to "
        "download it first (python -m mgtoolkit fetch x)."
    )
    assert "/path/to" not in panel.status.text  # the dropdown cannot take a folder


def test_an_offline_captioner_message_says_to_type_the_caption(history):
    def offline(image):
        raise mg.ModelUnavailableError(
            "captioner='minigpt4': could not load; pass captioner='/path/to/that/folder'"
        )

    panel = _image_panel(history, describe=offline)
    panel.image.path.value = "lake.png"
    panel.describe_button.click()
    assert panel.status.text.startswith("The captioner (stage 1) 'minigpt4' is not on this machine")
    assert "Type your own description into the Caption box" in panel.status.text


def test_restyle_progress_explains_the_step_count(history):
    seen = []
    panel = _audio_panel(
        history, restyle=lambda a, p, **kw: seen.append(panel.status.text) or fake_restyle(a, p, **kw)
    )
    panel.audio.path.value = "hum.wav"
    panel._on_step(2, 12)
    assert panel.status.text.startswith("Restyling: step 3 of 12 (strength 0.6 × 4 steps")


def test_restyled_rows_and_cards_show_the_strength(history):
    studio = _studio(history)
    studio.audio.audio.path.value = "hum.wav"
    studio.audio.prompt.value = "lo-fi"
    studio.audio.strength.value = 0.3
    studio.audio.generate_button.click()
    row = studio.gallery.items.children[0]
    assert "strength=0.3" in row.children[1].value
    assert "strength 0.3" in _html(studio.audio)


def test_use_these_settings_says_where_it_filled_the_panel(history):
    studio = _studio(history)
    _fill_text(studio.text, "first tune")
    studio.text.generate_button.click()
    studio.tabs.selected_index = 2
    row = studio.gallery.items.children[0]
    row.children[2].children[1].click()
    assert studio.tabs.selected_index == 0
    assert studio.text.status.text.startswith(f"Filled in from the clip with seed {history.clips[0].seed}")
    assert "Text → music" in row.children[3].value


def _all_widgets(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _all_widgets(child)


def test_every_control_has_a_real_tooltip_and_save_buttons_name_their_clip(history):
    studio = _studio(history)
    for prompt in ("first tune", "second tune"):
        _fill_text(studio.text, prompt)
        studio.text.generate_button.click()
    controls = [
        w
        for w in _all_widgets(studio)
        if isinstance(w, (mg_widgets().Button, mg_widgets().FileUpload)) or getattr(w, "description", "")
    ]
    assert controls and all(w.tooltip for w in controls), [w.description for w in controls if not w.tooltip]
    # ipywidgets writes title="null" for a tooltip of None, even on hidden labels
    assert not [w for w in _all_widgets(studio) if "tooltip" in w.trait_names() and w.tooltip is None]
    saves = [w for w in _all_widgets(studio.gallery) if getattr(w, "description", "") == "Save"]
    assert len(saves) == 2 and len({w.tooltip for w in saves}) == 2 and "second tune" in saves[0].tooltip


def mg_widgets():
    import ipywidgets

    return ipywidgets


def test_labels_are_not_cut(history):
    studio = _studio(history)
    buttons = [
        w for w in _all_widgets(studio) if isinstance(w, (mg_widgets().Button, mg_widgets().FileUpload))
    ]
    assert all(w.layout.width == "auto" for w in buttons if w.layout.display != "none")
    assert studio.text.settings.seed.layout.width == "260px"  # a 10-digit seed and its label fit


def test_copy_audio_placeholder_and_strength_tooltip(history):
    panel = _audio_panel(history)
    assert ".png" not in panel.audio.path.placeholder and ".wav" in panel.audio.path.placeholder
    assert (
        panel.strength.min == 0.05 and "0:" not in panel.strength.tooltip and "0.05" in panel.strength.tooltip
    )


def test_paddle_family_warnings_stay_out_of_notebooks_but_mgtoolkits_show():
    """Notebook 02 printed paddle's colour-coded deprecations and setuptools' distutils notice."""
    import warnings

    from mgtoolkit.runtime import import_paddle

    import_paddle()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        import_paddle()  # installs the filters again on top
        for module in ("paddlenlp.transformers.qwen2.modeling", "paddle.utils.deprecated", "_distutils_hack"):
            warnings.warn_explicit(
                "\x1b[93mWarning: API is deprecated\x1b[0m", UserWarning, "x.py", 1, module=module
            )
        warnings.warn_explicit(
            "prompt cut", mg.PromptTruncatedWarning, "x.py", 2, module="mgtoolkit.tasks.text"
        )
        warnings.warn_explicit("a user's own", UserWarning, "x.py", 3, module="__main__")
    assert [str(w.message) for w in caught] == ["prompt cut", "a user's own"]


def test_the_loop_switch_reaches_generate(history):
    seen = []

    def generate(request, **kwargs):
        seen.append(kwargs.get("loop", False))
        return fake_generate(request, callback=kwargs.get("callback"), cancel=kwargs.get("cancel"))

    panel = TextPanel(generate, synchronous=True, history=history)
    _fill_text(panel)
    panel.generate_button.click()
    panel.loop.value = True
    panel.generate_button.click()
    assert seen == [False, True] and panel.loop.description.startswith("Loop")


def test_use_these_settings_keeps_a_loop_a_loop(history):
    def generate(request, *, loop=False, **kwargs):
        clips = fake_generate(request, callback=kwargs.get("callback"), cancel=kwargs.get("cancel"))
        return [
            c.with_extra(loop={"start_sample": 0, "end_sample": c.waveform.shape[0]}) if loop else c
            for c in clips
        ]

    studio = _studio(history)
    studio.text._generate = generate
    _fill_text(studio.text, "drum loop")
    studio.text.loop.value = True
    studio.text.generate_button.click()
    studio.text.loop.value = False
    _fill_text(studio.text, "plain tune")
    studio.text.generate_button.click()
    plain_row, loop_row = studio.gallery.items.children
    loop_row.children[2].children[1].click()  # Use these settings
    assert studio.text.prompt.value == "drum loop" and studio.text.loop.value is True
    plain_row.children[2].children[1].click()
    assert studio.text.prompt.value == "plain tune" and studio.text.loop.value is False


def test_extend_in_the_gallery_continues_the_clip_on_the_real_tiny_model(history, tiny_model):
    """History row -> Extend +10 s: the text tab runs mg.extend; the longer clip joins the history."""
    clip = mg.generate("calm piano", seed=3, audio_length_in_s=3.0, num_inference_steps=2, model="tiny")
    history.add([clip])
    s = Studio(synchronous=True, history=history, model="tiny")
    row = s.gallery._rows[id(clip)]
    extend_button = next(
        b
        for box in row.children
        if isinstance(box, widgets.HBox)
        for b in box.children
        if "Extend" in b.description
    )
    s.tabs.selected_index = 2
    extend_button.click()
    assert s.tabs.selected_index == 0 and len(history) == 2
    longer = history.clips[-1]
    assert longer.waveform.shape == (13 * 16000,)
    assert np.array_equal(longer.waveform[: clip.waveform.shape[0]], clip.waveform)
    assert "Done: 1 clip" in s.text.status.value


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
