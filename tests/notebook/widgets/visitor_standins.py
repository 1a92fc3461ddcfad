"""Stand-in backends that count their calls, and a browser's doors into the panels (``set_state``,
the click message), for the tests of the studio as a Voilà visitor drives it. (Not a test module;
pytest puts this folder on ``sys.path``, so the tests import it by name.)
"""

from __future__ import annotations

import io
import threading

import ipywidgets as widgets
import numpy as np
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.notebook.widgets import (
    AudioPanel,
    History,
    ImagePanel,
    TextPanel,
)

SR = 16000
EVIL = 'x"><img src=x onerror=alert(1)>'
PNG = b"\x89PNG\r\n\x1a\n" + bytes(8)


# --- stand-ins that count what they were asked to do --------------------------------------------------


class Calls:
    def __init__(self):
        self.generate, self.describe, self.restyle, self.describe_audio = [], [], [], []
        self.gate: threading.Event | None = None  # set: generations wait for it

    def fake_generate(self, request, *, callback=None, cancel=None, **_):
        self.generate.append(request)
        if self.gate is not None:
            assert self.gate.wait(30)
        req = mg.validate_request(request)
        n = int(req.audio_length_in_s * SR)
        wave = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / SR)).astype(np.float32)
        return [
            mg.Clip(waveform=wave, sample_rate=SR, seed=req.seed, request=req, model_info={"name": req.model})
        ]

    def fake_describe(self, image):
        self.describe.append(image)
        if image is None:
            raise mg.InvalidInputError("image", None, "is missing", "upload an image")
        return "a lake"

    def fake_describe_audio(self, audio, *, clap=None):
        from mgtoolkit.analysis.describe import AudioDescription

        self.describe_audio.append(audio)
        if audio is None:
            raise mg.InvalidInputError("audio", None, "is missing", "upload a clip")
        return AudioDescription(
            duration_s=1.0,
            tempo_bpm=90.0,
            key="A",
            mode="minor",
            loudness_lufs=-18.0,
            tags={"genre": ((EVIL, 0.7),), "mood": (("calm", 0.6),)},
            tagged_by="clap=tiny",
        )

    def fake_restyle(self, audio, prompt, **kwargs):
        self.restyle.append(audio)
        raise AssertionError("restyle must not run")


def _text_panel(calls, limits, **kwargs):
    return TextPanel(calls.fake_generate, synchronous=True, history=History(), limits=limits, **kwargs)


def _audio_panel(calls, limits):
    return AudioPanel(
        calls.fake_restyle,
        describe=calls.fake_describe_audio,
        generate=calls.fake_generate,
        synchronous=True,
        history=History(),
        limits=limits,
        model="tiny",
    )


def _image_panel(calls, limits):
    return ImagePanel(
        calls.fake_describe, lambda caption: "soft pads", calls.fake_generate,
        synchronous=True, history=History(), limits=limits, model="tiny",
    )  # fmt: skip


def _browser_click(button: widgets.Button) -> None:
    """What the kernel runs when the browser says the button was clicked (disabled or not)."""
    button._handle_button_msg(None, {"event": "click"}, [])


def _browser_upload(file_input, name: str, content: bytes) -> None:
    """An upload as the browser sends it: the FileUpload's ``value`` through ``set_state``."""
    sent = {
        "name": name,
        "type": "",
        "size": len(content),
        "content": memoryview(content),
        "last_modified": 0,
    }
    file_input.upload.set_state({"value": [sent]})


def _wav(seconds=1.0, channels=1, rate=SR) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    wave = np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * channels, axis=1).astype(np.float32)
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _ran_nothing(calls) -> bool:
    return not (calls.generate or calls.describe or calls.restyle or calls.describe_audio)
