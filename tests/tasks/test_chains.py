"""Image → caption → musical prompt → music on the tiny models; stages alone; re-runs from any stage."""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections import Counter

import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.errors import GenerationCancelled, InvalidInputError
from mgtoolkit.models import captioners, writers
from mgtoolkit.models.tiny.llm import tiny_dir
from mgtoolkit.prompts import template_prompt
from mgtoolkit.tasks import image as chains

FAST = {"audio_length_in_s": 1.0, "num_inference_steps": 2, "model": "tiny"}


@pytest.fixture(scope="module")
def calls():
    """Count every captioner, writer and music call made in this module."""
    import mgtoolkit.tasks.text as core

    counts: Counter = Counter()

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(captioners, "caption", counting("caption", captioners.caption))
        mp.setattr(captioners, "load_captioner", counting("load_captioner", captioners.load_captioner))
        mp.setattr(writers, "complete", counting("write", writers.complete))
        mp.setattr(writers, "load_writer", counting("load_writer", writers.load_writer))
        mp.setattr(core, "generate_clips", counting("generate", core.generate_clips))
        yield counts


@pytest.fixture(scope="module")
def story(calls):
    with pytest.warns(chains.WriterFallbackWarning):
        result = mg.image_to_music(
            mg.example_image(),
            captioner="tiny",
            writer="tiny",
            negative_prompt="low quality",
            seed=120,
            **FAST,
        )
    return result


def test_defaults_follow_the_music_model(monkeypatch):
    monkeypatch.delenv("MGTOOLKIT_CAPTIONER", raising=False)
    monkeypatch.delenv("MGTOOLKIT_WRITER", raising=False)
    assert chains.default_captioner() == "tiny-clip" and chains.default_writer() == "tiny"
    # Binder-sized by default (CLIP tags + Qwen2-0.5B, about 1.6 GB), not the app's 28 GB pair
    assert chains.default_captioner("audioldm-s-full-v2") == "clip"
    assert chains.default_writer("audioldm-s-full-v2") == "qwen2-0.5b"
    monkeypatch.setenv("MGTOOLKIT_MODEL", "audioldm-s-full-v2")
    assert (chains.default_captioner(), chains.default_writer()) == ("clip", "qwen2-0.5b")
    monkeypatch.setenv("MGTOOLKIT_CAPTIONER", "minigpt4")
    monkeypatch.setenv("MGTOOLKIT_WRITER", "template")
    assert (chains.default_captioner(), chains.default_writer()) == ("minigpt4", "template")


def test_names_are_listed():
    assert {"minigpt4", "blip2", "tiny"} <= set(mg.CAPTIONERS)
    assert {"chatglm-6b", "chatglm2-6b", "qwen2-0.5b", "tiny", "template"} <= set(mg.WRITERS)


def test_every_stage_runs_on_tiny(story):
    assert isinstance(story.caption, str) and story.caption
    assert story.clip.prompt == story.music_prompt
    assert story.clip.request.negative_prompt == "low quality"
    assert story.clip.seed == 120 and story.clip.duration == pytest.approx(1.0)
    assert story.captioner == "tiny" and story.writer == "tiny"
    assert {"caption_s", "caption_load_s", "write_s", "write_load_s", "generate_s"} <= set(story.timings)
    assert all(v >= 0 for v in story.timings.values())
    assert story.image is not None and story.image.mode == "RGB"


def test_tiny_writer_babble_falls_back_to_the_template_and_says_so(story):
    assert story.music_prompt == template_prompt(story.caption)
    assert any("unusable" in n and "used template" in n for n in story.notes)


def test_sidecar_records_all_three_stages(story, tmp_path):
    wav = story.clip.save(tmp_path)
    extra = json.loads(wav.with_suffix(".json").read_text())["extra"]
    assert extra["caption"] == story.caption and extra["music_prompt"] == story.music_prompt
    assert extra["captioner"] == "tiny" and extra["writer"] == "tiny"
    assert set(extra["stage_timings"]) >= {"caption_s", "write_s", "generate_s"}
    assert extra["notes"] == list(story.notes)


def test_rerun_from_the_music_prompt_skips_caption_and_writer(story, calls):
    before = Counter(calls)
    again = story.rerun(music_prompt="Calm piano with soft rain.")
    assert calls["caption"] == before["caption"] and calls["load_captioner"] == before["load_captioner"]
    assert calls["write"] == before["write"] and calls["load_writer"] == before["load_writer"]
    assert calls["generate"] == before["generate"] + 1
    assert again.caption == story.caption and again.music_prompt == "Calm piano with soft rain."
    assert again.clip.prompt == "Calm piano with soft rain." and again.clip.seed == story.clip.seed
    assert "caption_s" not in again.timings and "write_s" not in again.timings
    assert "generate_s" in again.timings and "reused" in again.notes[0]


def test_rerun_from_an_edited_caption_rewrites_but_does_not_recaption(story, calls):
    before = Counter(calls)
    again = story.rerun(caption="A quiet forest at dawn.", writer="template")
    assert calls["caption"] == before["caption"] and calls["generate"] == before["generate"] + 1
    assert again.music_prompt == template_prompt("A quiet forest at dawn.")
    assert "caption_s" not in again.timings and "write_s" in again.timings


def test_rerun_with_a_new_writer_reuses_the_caption(story, calls):
    before = Counter(calls)
    again = story.rerun(writer="tiny-chatglm2")
    assert calls["caption"] == before["caption"] and calls["write"] == before["write"] + 1
    assert again.caption == story.caption and again.writer == "tiny-chatglm2"


def test_rerun_with_the_same_settings_makes_the_same_music(story, calls):
    before = Counter(calls)
    again = story.rerun()
    assert calls["caption"] == before["caption"] and calls["write"] == before["write"]
    np.testing.assert_array_equal(again.clip.waveform, story.clip.waveform)


def test_rerun_with_another_seed_changes_only_the_music(story):
    again = story.rerun(seed=7)
    assert again.clip.seed == 7 and again.music_prompt == story.music_prompt
    assert not np.array_equal(again.clip.waveform, story.clip.waveform)


def test_rerun_with_a_new_captioner_recaptions(story, calls):
    before = Counter(calls)
    again = story.rerun(captioner="tiny-blip2", writer="template")
    assert calls["caption"] == before["caption"] + 1
    assert again.captioner == "tiny-blip2"


def test_rerun_refuses_unknown_arguments(story):
    with pytest.raises(InvalidInputError) as err:
        story.rerun(temperature=0.5)
    assert err.value.field == "temperature"


def test_typed_description_is_a_valid_first_stage(calls):
    before = Counter(calls)
    story = mg.image_to_music(
        None, captioner="text:a crowded nightclub with neon lights", writer="template", seed=3, **FAST
    )
    assert calls["caption"] == before["caption"]
    assert story.caption == "a crowded nightclub with neon lights" and story.captioner == "text"
    assert story.music_prompt.startswith("Energetic electronic dance music")
    assert story.timings["caption_s"] == 0.0


def test_describe_image_alone():
    assert isinstance(mg.describe_image(mg.example_image(), "tiny"), str)
    assert mg.describe_image(None, "text:  a  foggy harbour ") == "a foggy harbour"
    for captioner in ("tiny-blip2", str(tiny_dir("minigpt4"))):  # a preset, and a local folder
        text = mg.describe_image(mg.example_image(), captioner, question="a photo of")
        assert isinstance(text, str) and text.isprintable() and "\ufffd" not in text


def test_write_music_prompt_alone():
    assert mg.write_music_prompt("A sunny beach.", "template").startswith("Relaxed tropical pop")
    text = mg.write_music_prompt("A sunny beach.", "tiny-chatglm2", instruction="Music for {description}:")
    assert isinstance(text, str) and text and "\n" not in text


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            'Sure! Here\'s a musical style sentence that fits the scene: "Dark pulsing techno." Enjoy!',
            "Dark pulsing techno.",
        ),
        (
            "<|im_start|>assistant\nMusical style: Warm jazz trio, brushed drums.<|im_end|>",
            "Warm jazz trio, brushed drums.",
        ),
    ],
)
def test_the_writers_answer_is_cleaned(monkeypatch, answer, expected):
    monkeypatch.setattr(writers, "complete", lambda *a, **k: answer)
    assert mg.write_music_prompt("a club", "tiny-chatglm2") == expected


@pytest.mark.parametrize("answer", ["", "   ", "<|im_end|>", "Sure!"])
def test_an_empty_answer_falls_back_to_the_template_with_a_warning(monkeypatch, answer):
    monkeypatch.setattr(writers, "complete", lambda *a, **k: answer)
    with pytest.warns(chains.WriterFallbackWarning, match="used template"):
        text = mg.write_music_prompt("A quiet forest.", "tiny-chatglm2")
    assert text == template_prompt("A quiet forest.")


@pytest.mark.slow  # seconds of whole tiny-pipeline runs or a child process (make test runs it)
def test_models_are_released_unless_kept(calls):
    captioners.release_captioners()
    writers.release_writers()
    mg.image_to_music(mg.example_image(), captioner="tiny", writer="tiny-chatglm2", seed=1, **FAST)
    assert captioners._load_cached.cache_info().currsize == 0
    assert writers._load_cached.cache_info().currsize == 0
    mg.image_to_music(
        mg.example_image(), captioner="tiny", writer="tiny-chatglm2", seed=1, keep_loaded=True, **FAST
    )
    assert captioners._load_cached.cache_info().currsize == 1
    assert writers._load_cached.cache_info().currsize == 1
    captioners.release_captioners()
    writers.release_writers()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image": b""}, "image"),
        ({"image": b"not an image"}, "image"),
        ({"image": None}, "image"),
        ({"captioner": "gpt-vision"}, "captioner"),
        ({"captioner": "text:   "}, "captioner"),
        ({"writer": "gpt-5"}, "writer"),
        ({"instruction": "no placeholder"}, "instruction"),
        ({"audio_length_in_s": -1}, "audio_length_in_s"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_input_fails_before_any_model_loads(calls, tmp_path, monkeypatch, kwargs, field):
    monkeypatch.chdir(tmp_path)
    before = Counter(calls)
    args = {"image": mg.example_image(), "captioner": "tiny", "writer": "tiny", "seed": 1, **FAST, **kwargs}
    with pytest.raises(InvalidInputError) as err:
        mg.image_to_music(args.pop("image"), **args)
    assert err.value.field == field
    assert "\n" not in str(err.value)
    assert Counter(calls) == before
    assert list(tmp_path.iterdir()) == []


def test_cancel_before_start_and_callback(calls):
    before = Counter(calls)
    stop = threading.Event()
    stop.set()
    with pytest.raises(GenerationCancelled):
        mg.image_to_music(
            mg.example_image(), captioner="tiny", writer="template", cancel=stop, seed=1, **FAST
        )
    assert calls["caption"] == before["caption"]
    steps = []
    mg.image_to_music(
        None,
        captioner="text:a beach",
        writer="template",
        seed=1,
        callback=lambda i, n, lat: steps.append((i, n, lat.shape)),
        **FAST,
    )
    assert [s[:2] for s in steps] == [(0, 2), (1, 2)]


def test_public_names_load_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, mgtoolkit as mg; mg.image_to_music; mg.restyle; mg.CAPTIONERS; mg.WRITERS; "
        "import mgtoolkit.appflow; print(sorted(m for m in ('paddle', 'paddlenlp', 'ppdiffusers', 'PIL', "
        "'librosa') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_story_shows_itself_briefly(story):
    text = repr(story)
    assert text.startswith("Story(caption=") and "music_prompt=" in text and "\n" not in text
    assert len(text) < 600
    page = story._repr_html_()
    assert "<table>" in page and "music prompt" in page


# Real weights: run only where they are on disk, e.g.
#   MGTOOLKIT_TEST_CAPTIONER=/models/minigpt4 MGTOOLKIT_TEST_WRITER=/models/chatglm-6b pytest -m slow
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MGTOOLKIT_TEST_WRITER"), reason="MGTOOLKIT_TEST_WRITER not set")
def test_real_writer_answers_without_falling_back():
    with warnings.catch_warnings():
        warnings.simplefilter("error", chains.WriterFallbackWarning)
        prompt = mg.write_music_prompt(
            "The image shows a crowded nightclub with people dancing.", os.environ["MGTOOLKIT_TEST_WRITER"]
        )
    assert 3 <= len(prompt.split()) <= 77


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MGTOOLKIT_TEST_CAPTIONER"), reason="MGTOOLKIT_TEST_CAPTIONER not set")
def test_real_captioner_sees_the_example_scene():
    caption = mg.describe_image(mg.example_image(), os.environ["MGTOOLKIT_TEST_CAPTIONER"]).lower()
    assert any(word in caption for word in ("danc", "people", "light", "stage", "club"))


def test_the_history_holds_the_finished_clip_of_a_story():
    from mgtoolkit.notebook.history import HISTORY

    HISTORY.clear()
    story = mg.image_to_music(
        None,
        captioner="text:a sunny beach",
        writer="template",
        audio_length_in_s=0.5,
        num_inference_steps=2,
        seed=1,
        model="tiny",
    )
    assert HISTORY.clips[-1] is story.clip and HISTORY.clips[-1].extra["caption"] == "a sunny beach"
    assert len(HISTORY) == 1  # not also the clip before the story's provenance was added
