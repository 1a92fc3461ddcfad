"""Continuing a clip and long pieces, window by window, on the tiny AudioLDM (issue 12).

Windows are made short here (2 s with 0.5 s held, i.e. 50 and 12 latent frames) so that several
windows cost little; the defaults (10 s, 2.5 s) are the same code with bigger numbers.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.cli import main
from mgtoolkit.errors import GenerationCancelled, InvalidInputError
from mgtoolkit.models import inpaint
from mgtoolkit.tasks import text

SR = 16000
SHORT = {"window_s": 2.0, "overlap_s": 0.5}
KW = {"num_inference_steps": 2, "seed": 11, "model": "tiny", **SHORT}


def _tone(seconds: float, freq: float = 330.0) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.2 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def tone():
    return _tone(1.3)


@pytest.fixture(scope="module")
def extended(tone):
    return mg.extend((tone, SR), 3.0, ["calm intro", "drums come in"], **KW)


@pytest.fixture
def short_windows(monkeypatch):
    """generate() with 2 s windows held 0.5 s (the module constants it reads at call time)."""
    monkeypatch.setattr(inpaint, "WINDOW_S", 2.0)
    monkeypatch.setattr(inpaint, "OVERLAP_S", 0.5)


def test_input_part_is_bit_identical(tone, extended):
    assert extended.waveform.dtype == np.float32
    assert np.array_equal(extended.waveform[: tone.shape[0]], tone)
    assert extended.waveform.shape[0] == tone.shape[0] + 3 * SR  # 3 s = 75 whole latent frames
    assert np.abs(extended.waveform[tone.shape[0] :]).max() > 0.01  # something was added


def test_a_clip_is_continued_unchanged_under_its_own_prompt():
    clip = mg.generate("soft rain", seed=4, audio_length_in_s=1.0, num_inference_steps=2, model="tiny")
    longer = mg.extend(clip, 1.0, num_inference_steps=2, seed=1, **SHORT)
    assert np.array_equal(longer.waveform[:SR], clip.waveform)
    assert longer.prompt == "soft rain" and longer.extra["windows"]["prompts"] == ["soft rain"]
    assert longer.duration == 2.0


def test_windows_and_overlap_as_documented(extended):
    info = extended.extra["windows"]
    # 75 new frames; each window holds 12 frames (0.48 s) and adds at most 50 - 12 = 38.
    assert info["window_s"] == 2.0 and info["overlap_s"] == 0.48
    assert info["new_frames"] == [38, 37] and info["windows"] == 2
    assert info["prompts"] == ["calm intro", "drums come in"]
    assert info["joins_s"] == [1.3, 2.82]  # the input end, then 38 frames (1.52 s) on
    assert info["input_s"] == 1.3 and info["added_s"] == 3.0
    assert info["held_to_input"] is True
    assert len(info["joins_spectral_seam"]) == 2
    assert extended.request.audio_length_in_s == 4.3


def test_sidecar_records_the_windows(extended, tmp_path):
    import json

    wav = extended.save(tmp_path)
    meta = json.loads(wav.with_suffix(".json").read_text())
    assert meta["extra"]["windows"]["windows"] == 2
    assert meta["extra"]["windows"]["prompts"] == ["calm intro", "drums come in"]
    assert sf.info(str(wav)).frames == extended.waveform.shape[0]


def test_plan_windows():
    assert inpaint.plan_windows(600, 250, 62, held=False, loop=False) == [250, 188, 162]
    assert inpaint.plan_windows(75, 50, 12, held=True, loop=False) == [38, 37]
    sizes = inpaint.plan_windows(3000, 250, 62, held=False, loop=False)  # 120 s in 10 s windows
    assert len(sizes) == 16 and sum(sizes) == 3000 and max(sizes) == 250
    for held, loop in ((False, False), (True, False), (False, True), (True, True)):
        for new in (1, 37, 38, 100, 777):
            sizes = inpaint.plan_windows(new, 50, 12, held=held, loop=loop)
            assert sum(sizes) == new
            heights = [(12 if (held or k) else 0) + n for k, n in enumerate(sizes)]
            if loop:
                heights[-1] += 12
            assert max(heights) <= 50, (held, loop, new, sizes)


def test_long_generate_goes_window_by_window(short_windows):
    kw = {"num_inference_steps": 2, "model": "tiny", "audio_length_in_s": 5.0}
    steps = []
    clip = mg.generate("calm piano", seed=21, callback=lambda i, n, lat: steps.append((i, n)), **kw)
    again = mg.generate("calm piano", seed=21, **kw)
    other = mg.generate("calm piano", seed=22, **kw)
    assert clip.waveform.shape == (5 * SR,)
    assert np.array_equal(clip.waveform, again.waveform)  # same seed, same long piece
    assert not np.allclose(clip.waveform, other.waveform)
    info = clip.extra["windows"]
    assert info["windows"] == 3 and info["new_frames"] == [50, 38, 37]
    assert info["joins_s"] == [2.0, 3.52] and info["held_to_input"] is False
    assert steps == [(i, 6) for i in range(6)]  # one progress bar over all windows
    assert clip.request.audio_length_in_s == 5.0


def test_window_joins_are_held_in_latent_space(tiny_model):
    """The overlap of window k is window k-1's end, exactly, after the last step."""
    paddle = pytest.importorskip("paddle")
    embeds = inpaint.embeddings(tiny_model, "piano", None, 2.5)
    noise = paddle.to_tensor(np.random.default_rng(0).standard_normal((1, 8, 20, 16)).astype("float32"))
    known = paddle.to_tensor(np.random.default_rng(1).standard_normal((1, 8, 20, 16)).astype("float32"))
    mask = np.zeros((1, 1, 20, 1), np.float32)
    mask[:, :, :6] = 1
    out = inpaint.inpaint(
        tiny_model,
        noise,
        embeds,
        num_inference_steps=3,
        guidance_scale=2.5,
        known=known,
        mask=paddle.to_tensor(mask),
    ).numpy()
    assert np.array_equal(out[:, :, :6], known.numpy()[:, :, :6])
    assert not np.allclose(out[:, :, 6:], known.numpy()[:, :, 6:])


def test_crossfade_keeps_the_level_of_correlated_sides():
    a = np.ones(100)
    assert np.allclose(inpaint.crossfade(a, a), 1.0)
    ramp = inpaint.crossfade(np.zeros(100), np.ones(100))
    assert ramp[0] < 0.01 and ramp[-1] > 0.99 and np.all(np.diff(ramp) > 0)


def test_cancel_stops_between_windows(tone):
    cancel = threading.Event()

    def stop_after_first_window(i, n, lat):
        if i == 1:
            cancel.set()

    with pytest.raises(GenerationCancelled, match="after step 2 of 4"):
        mg.extend((tone, SR), 3.0, "x", callback=stop_after_first_window, cancel=cancel, **KW)


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda t: mg.extend((t, 22050), 2.0, "x", **KW), "audio='sample rate 22050 Hz': differs"),
        (lambda t: mg.extend((np.zeros(SR, np.float32), SR), 2.0, "x", **KW), "is silent"),
        (lambda t: mg.extend((t[:3000], SR), 2.0, "x", **KW), "is shorter than 0.5 s"),
        (lambda t: mg.extend((t[:12000], SR), 2.0, "x", loop=True, **KW), "is shorter than 1 s"),
        (lambda t: mg.extend((t, SR), 400.0, "x", **KW), "seconds=400.0: must be between 0.04 and 300 s"),
        (lambda t: mg.extend((t, SR), 299.5, "x", **KW), "seconds=299.5: makes a 300.8 s piece"),
        (lambda t: mg.extend((t, SR), 2.0, **KW), "prompt=None: is needed when the input is not a Clip"),
        (lambda t: mg.extend((t, SR), 2.0, ["a", 3], **KW), "prompt=['a', 3]: is not text"),
        (
            lambda t: mg.extend((t, SR), 2.0, "x", window_s=2.0, overlap_s=1.5),
            "overlap_s=1.5: is more than half",
        ),
        (lambda t: mg.generate("x", audio_length_in_s=301.0, model="tiny"), "at most 300 s for tiny"),
        (lambda t: mg.generate("x", audio_length_in_s=61.0, model="tiny-musicldm"), "at most 60 s"),
        (
            lambda t: mg.extend((t, SR), 2.0, "x", model="tiny-musicldm"),
            "model='tiny-musicldm': is a MusicLDM",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_field(tone, call, field):
    with pytest.raises(InvalidInputError) as info:
        call(tone)
    message = str(info.value)
    assert field in message and "\n" not in message and message.endswith(".")


def test_cli_extend(tmp_path):
    tone = _tone(3.0)  # the CLI holds the default 2.5 s overlap
    src = tmp_path / "in.wav"
    sf.write(src, tone, SR, subtype="FLOAT")
    args = [
        "generate",
        "next part",
        "--extend",
        str(src),
        "--seconds",
        "1",
        "--steps",
        "2",
        "--model",
        "tiny",
    ]
    code = main([*args, "--seed", "3", "--out", str(tmp_path / "o")], out=(out := _Buf()), err=_Buf())
    assert code == 0
    written, rate = sf.read(out.text.strip(), dtype="float32")
    assert rate == SR and written.shape[0] == tone.shape[0] + SR
    assert np.max(np.abs(written[: tone.shape[0]] - tone)) <= 1 / 32767  # 16-bit WAV of the input
    err, unused = _Buf(), tmp_path / "unused"
    bad = [
        "generate",
        "x",
        "--extend",
        str(tmp_path / "missing.wav"),
        "--model",
        "tiny",
        "--out",
        str(unused),
    ]
    assert main(bad, _Buf(), err) == 2
    assert "--extend=" in err.text and "is not an existing file" in err.text
    assert not unused.exists()


def test_max_length_is_stated():
    assert text.max_length(mg.resolve_model("tiny")) == inpaint.MAX_SECONDS == 300.0
    assert text.max_length(mg.resolve_model("tiny-musicldm")) == 60.0


class _Buf:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass
