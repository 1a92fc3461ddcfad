"""The image panel, driven headless: editable stages, its request, bad input, Cancel, uploads, and
the real chain.

Headless: set ``.value``, press ``Button.click()``; stand-ins from ``panel_standins.py``.
"""

from __future__ import annotations

import pytest
from panel_standins import (
    _EPOCH,
    PNG,
    _html,
    _image_panel,
    _ready,
    _upload,
    fake_generate,
)

import mgtoolkit as mg
from mgtoolkit.notebook.widgets import ImagePanel


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
