"""Seamless loops on the tiny AudioLDM (issue 12): the seam measure, long loops, the WAV loop chunk.

The tiny model has random weights, so its "music" is noise whose spectrum changes as much from
frame to frame as anywhere: the spectral flux at the wrap cannot tell a loop from a clip there.
What does tell them apart is the level at the wrap: a plain clip is decoded with silence beyond
both ends, so its level dips where its end meets its start; a loop is decoded wrapped round.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.cli import main
from mgtoolkit.errors import InvalidInputError
from mgtoolkit.models import inpaint

wavinfo = pytest.importorskip("wavinfo")

SR = 16000
KW = {"audio_length_in_s": 3.0, "num_inference_steps": 3, "model": "tiny"}


@pytest.fixture(scope="module")
def pairs():
    """(loop, plain clip) made from the same seeds."""
    return [
        (mg.generate("calm piano", seed=s, loop=True, **KW), mg.generate("calm piano", seed=s, **KW))
        for s in (0, 2, 3)
    ]


def test_the_seam_measure_tells_a_loop_from_a_plain_clip(pairs):
    for loop, plain in pairs:
        assert 0.75 <= inpaint.level_seam(loop.waveform, SR) <= 1.33  # the level runs on through the wrap
        assert inpaint.level_seam(plain.waveform, SR) < 0.7  # the plain clip dips where end meets start
        assert loop.extra["windows"]["level_seam"] == pytest.approx(
            inpaint.level_seam(loop.waveform, SR), abs=1e-3
        )
        assert "spectral_seam" in loop.extra["windows"]


def test_level_seam_of_a_join():
    steady = np.tile(np.sin(np.arange(160) / 160 * 2 * np.pi), 100)
    assert inpaint.level_seam(steady, SR, 8000) == pytest.approx(1.0, abs=0.01)
    gap = steady.copy()
    gap[7800:8200] = 0.0
    assert inpaint.level_seam(gap, SR, 8000) < 0.1
    assert inpaint.level_seam(steady, SR) == pytest.approx(1.0, abs=0.01)  # a sine of whole periods loops


def test_loop_shape_and_record(pairs):
    loop, _ = pairs[0]
    assert loop.waveform.shape == (3 * SR,)  # 75 whole latent frames
    assert loop.extra["loop"] == {"start_sample": 0, "end_sample": 3 * SR}
    assert loop.extra["windows"]["windows"] == 1
    again = mg.generate("calm piano", seed=0, loop=True, **KW)
    assert np.array_equal(again.waveform, loop.waveform)


def test_loop_length_is_whole_latent_frames():
    clip = mg.generate("x", seed=1, loop=True, **{**KW, "audio_length_in_s": 2.51})
    assert clip.waveform.shape[0] % 640 == 0 and clip.duration == 2.52


def test_the_last_step_wraps_the_middle():
    shifts = inpaint.loop_shifts(20, 75)
    assert shifts[-1] == 37 and len(set(shifts)) == 20 and all(0 <= s < 75 for s in shifts)


def test_wav_loop_chunk_read_back(pairs, tmp_path):
    loop, plain = pairs[0]
    wav = loop.save(tmp_path)
    info = wavinfo.WavInfoReader(str(wav))
    assert info.smpl is not None and len(info.smpl.sample_loops) == 1
    found = info.smpl.sample_loops[0]
    assert (found.start, found.end, found.loop_type) == (0, 3 * SR - 1, 0)  # end: the last sample played
    assert info.smpl.sample_period_ns == 62500  # 1 / 16 kHz
    assert info.data.frame_count == 3 * SR
    audio, rate = sf.read(str(wav), dtype="int16")  # the audio itself reads as before
    assert rate == SR and audio.shape == (3 * SR,)
    meta = json.loads(wav.with_suffix(".json").read_text())
    assert meta["extra"]["loop"] == {"start_sample": 0, "end_sample": 3 * SR}
    assert wavinfo.WavInfoReader(str(plain.save(tmp_path))).smpl is None


def test_long_loop_holds_its_last_window_to_its_start(monkeypatch):
    monkeypatch.setattr(inpaint, "WINDOW_S", 2.0)
    monkeypatch.setattr(inpaint, "OVERLAP_S", 0.5)
    clip = mg.generate(
        "calm piano", seed=5, loop=True, **{**KW, "audio_length_in_s": 4.0, "num_inference_steps": 2}
    )
    info = clip.extra["windows"]
    assert clip.waveform.shape == (4 * SR,)
    assert info["windows"] == 3 and sum(info["new_frames"]) == 100
    assert 0.75 <= info["level_seam"] <= 1.33


def test_extended_loop_keeps_the_input_and_wraps_to_it():
    t = np.arange(int(1.5 * SR)) / SR
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    clip = mg.extend(
        (tone, SR),
        2.0,
        "piano",
        loop=True,
        num_inference_steps=2,
        seed=1,
        window_s=2.0,
        overlap_s=0.5,
        model="tiny",
    )
    assert np.array_equal(clip.waveform[: tone.shape[0]], tone)
    assert clip.extra["loop"] == {"start_sample": 0, "end_sample": tone.shape[0] + 2 * SR}
    assert "spectral_seam" in clip.extra["windows"] and "level_seam" in clip.extra["windows"]


def test_too_short_a_loop_is_one_line():
    with pytest.raises(
        InvalidInputError, match=r"audio_length_in_s=1.0: is shorter than one window overlap \(2.5 s\)"
    ):
        mg.generate("x", loop=True, **{**KW, "audio_length_in_s": 1.0})
    with pytest.raises(InvalidInputError, match="loop='yes': is not True or False"):
        mg.generate("x", loop="yes", **KW)
    with pytest.raises(InvalidInputError, match="loop=True: needs an AudioLDM model"):
        mg.generate("x", loop=True, **{**KW, "model": "tiny-musicldm"})


def test_cli_loop_writes_loop_points(tmp_path):
    out = tmp_path / "o"
    args = [
        "generate",
        "drum loop",
        "--loop",
        "--seconds",
        "2.5",
        "--steps",
        "2",
        "--model",
        "tiny",
        "--seed",
        "1",
    ]
    lines = []

    class Out:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    assert main([*args, "--out", str(out)], out=Out(), err=Out()) == 0
    info = wavinfo.WavInfoReader("".join(lines).strip().splitlines()[-1])
    assert info.smpl.sample_loops[0].end == 62 * 640 - 1  # 2.5 s: 62 whole latent frames


def test_show_marks_the_loop_points_and_window_joins(pairs, monkeypatch):
    pytest.importorskip("matplotlib")
    from mgtoolkit.notebook.plots import clip_figure

    loop, plain = pairs[0]
    fig = clip_figure(loop)
    labels = [c.get_label() for c in fig.axes[0].collections]
    assert "loop points" in labels and "window joins" not in labels
    assert "loop points" not in [c.get_label() for c in clip_figure(plain).axes[0].collections]
    monkeypatch.setattr(inpaint, "WINDOW_S", 2.0)
    monkeypatch.setattr(inpaint, "OVERLAP_S", 0.5)
    long = mg.generate("calm piano", seed=5, **{**KW, "num_inference_steps": 1})
    joins = [c for c in clip_figure(long).axes[0].collections if c.get_label() == "window joins"][0]
    assert [seg[0][0] for seg in joins.get_segments()] == long.extra["windows"]["joins_s"] == [2.0]
