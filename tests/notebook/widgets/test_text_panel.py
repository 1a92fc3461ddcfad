"""The text panel, driven headless: its request, runs on the tiny AudioLDM, busy state, bad input,
Cancel, reroll, load, the loop switch.

Headless: set ``.value``, press ``Button.click()``; stand-ins from ``panel_standins.py``.
"""

from __future__ import annotations

import threading
import time

import pytest
from panel_standins import (
    _expected_error,
    _fill_text,
    _html,
    _ready,
    fake_generate,
)

import mgtoolkit as mg
from mgtoolkit.notebook.widgets import TextPanel


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


def test_worker_thread_is_used_by_default(history):
    started = []
    panel = TextPanel(
        lambda r, **kw: started.append(threading.current_thread()) or fake_generate(r, **kw), history=history
    )
    _fill_text(panel)
    panel.generate_button.click()
    panel.wait(30)
    assert started and started[0] is not threading.main_thread() and len(history) == 1


def test_a_browser_length_gives_exactly_round_seconds_times_rate_samples_on_tiny(history, in_tmp):
    panel = TextPanel(synchronous=True, history=history)
    _fill_text(panel, steps=2)
    panel.settings.duration.value = 1.4999999999999998
    panel.generate_button.click()
    clip = panel.result[0]
    assert clip.waveform.shape == (round(1.5 * clip.sample_rate),), panel.status.text
    assert clip.request.audio_length_in_s == 1.5


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
