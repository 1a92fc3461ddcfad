"""Stand-ins for the panels' backends and helpers to drive the panels, shared by the widget tests.

The stand-ins are pure numpy, but validate with the core and honour ``callback`` and ``cancel``.
(Not a test module; pytest puts this folder on ``sys.path``, so the tests import it by name.)
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.errors import GenerationCancelled
from mgtoolkit.notebook.widgets import AudioPanel, ImagePanel, Studio

SR = 16000
PNG = b"\x89PNG\r\n\x1a\n" + bytes(8)  # a PNG signature: enough for the panel's preview
_EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


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


def _audio_panel(history, restyle=fake_restyle, **backends):
    backends = {"describe": fake_describe_audio, "write": fake_write, "generate": fake_generate, **backends}
    panel = AudioPanel(restyle, synchronous=True, history=history, **backends)
    panel.prompt.value = "lo-fi hip hop"
    panel.settings.steps.value = 4
    panel.settings.model.value = "tiny"
    return panel


def _wav_bytes() -> bytes:
    from mgtoolkit.io.audio import wav_bytes

    return wav_bytes((0.3 * np.sin(np.arange(SR) / 3.0)).astype(np.float32), SR)


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


def _all_widgets(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _all_widgets(child)
