"""The history gallery in the studio: Save (inside the save root, by the umask, in the format, rate
and loudness picked), Use these settings, Extend.

Headless: set ``.value``, press ``Button.click()``; stand-ins from ``panel_standins.py``.
"""

from __future__ import annotations

import dataclasses

import ipywidgets as widgets
import numpy as np
import pytest
from panel_standins import (
    SR,
    _fill_text,
    _html,
    _studio,
    fake_generate,
)

import mgtoolkit as mg
from mgtoolkit.notebook.widgets import History, Studio


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


@pytest.mark.slow
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
