"""A DAW's grid (issue 23): exact tempo, whole bars from a downbeat, a chosen key, loops on bar lines.

Every signal is built here with a known answer (click tracks, drum patterns, chord progressions);
the tempo that comes out is measured twice: by the project's own tracker and by an independent
check on the intervals between onsets found by a plain level threshold.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.analysis import conform as cf
from mgtoolkit.analysis import synth
from mgtoolkit.errors import InvalidInputError
from mgtoolkit.io.features import PITCH_CLASSES, estimate_key, estimate_tempo
from mgtoolkit.models import inpaint

SR = synth.SR


def onset_times(y: np.ndarray, sr: int, *, gap_s: float = 0.2) -> np.ndarray:
    """Independent of the tracker: where the level first crosses a third of the peak after a quiet gap."""
    env = np.abs(y)
    loud = np.flatnonzero(env > env.max() / 3)
    starts = loud[np.diff(loud, prepend=-(10**9)) > gap_s * sr]
    return starts / sr


def interval_bpm(onsets: np.ndarray, period_guess: float) -> tuple[float, float]:
    """Tempo and phase (s) of the straight line through the onsets, numbered by the guessed period."""
    numbers = np.round((onsets - onsets[0]) / period_guess)
    slope, intercept = np.polyfit(numbers, onsets, 1)
    return 60.0 / slope, intercept


CASES = [(90, 97), (120, 113), (124, 131)]  # (made at, asked for)


@functools.cache  # each case made once for the module's tests
def _conformed(kind: str, made: float, asked: float):
    make = synth.click_track if kind == "clicks" else synth.drum_pattern
    return asked, cf.conform(make(bpm=made, seconds=14), bpm=asked, bars=4, loop=kind == "drums")


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}to{c[1]}")
def clicks(request):
    return _conformed("clicks", *request.param)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}to{c[1]}")
def drums(request):
    return _conformed("drums", *request.param)


@pytest.fixture(scope="module", params=[(k, *c) for k in ("clicks", "drums") for c in CASES], ids=str)
def both(request):
    return (request.param[0], *_conformed(*request.param))


def test_tempo_length_and_first_beat(both):
    which, asked, clip = both
    y, sr = clip.waveform, clip.sample_rate
    # exactly 4 bars of 4 beats, to the sample
    assert y.shape[0] == round(4 * 4 * 60 / asked * sr)
    # the project's tracker
    tracked, _ = estimate_tempo(y, sr)
    assert tracked == pytest.approx(asked, abs=0.5)
    # the independent onset-interval check (the drums' hi-hats make eighths: half the period)
    period = 60 / asked / (2 if which == "drums" else 1)
    onsets = onset_times(y, sr, gap_s=0.8 * period)
    measured, phase = interval_bpm(onsets, period)
    assert measured * (0.5 if which == "drums" else 1) == pytest.approx(asked, abs=0.5)
    # the first sample is on a beat: the first onset is there, and the grid of onsets passes through it
    assert onsets[0] < 0.005 and abs(phase) < 0.005
    record = clip.extra["conform"]
    assert record["bpm"] == asked and record["bars"] == 4
    assert record["cut_end_sample"] - record["cut_start_sample"] == y.shape[0]
    assert record["stretch_ratio"] == pytest.approx(record["bpm_before"] / asked, rel=0.01)


def test_the_cut_starts_on_the_downbeat(clicks):
    asked, clip = clicks
    # the click track's downbeats are 1.5 kHz, its other beats 1 kHz: the first click is a downbeat
    head = clip.waveform[: int(0.02 * SR)]
    spectrum = np.abs(np.fft.rfft(head, 4096))
    peak_hz = np.argmax(spectrum) * SR / 4096
    assert peak_hz == pytest.approx(1500, abs=60)


def test_a_loops_end_flows_into_its_start_on_the_bar_line(drums):
    asked, clip = drums
    y, sr = clip.waveform, clip.sample_rate
    assert clip.extra["loop"] == {"start_sample": 0, "end_sample": y.shape[0]}
    # the wrap is no bigger a change than the music makes at its other bar lines, in level and spectrum
    bar = round(4 * 60 / asked * sr)
    levels = [inpaint.level_seam(y, sr, k * bar) for k in (1, 2, 3)]
    assert 0.75 * min(levels) <= inpaint.level_seam(y, sr) <= 1.33 * max(levels)
    inside = [inpaint.spectral_seam(y, sr, k * bar) for k in (1, 2, 3)]
    assert inpaint.spectral_seam(y, sr) <= 1.5 * max(inside)


KEYS = [(2, "major", "F major", "F major"), (4, "minor", "Gm", "G minor"), (9, "minor", "C minor", "C minor")]


@pytest.mark.parametrize(("tonic", "mode", "asked", "expected"), KEYS)
def test_chord_progressions_come_out_in_the_asked_key(tonic, mode, asked, expected):
    y, sr = synth.chord_progression(tonic=tonic, mode=mode, bpm=100, bars=4)
    before = estimate_key(y, sr)
    assert (before[0], before[1]) == (PITCH_CLASSES[tonic], mode)
    clip = cf.conform((y, sr), key=asked)
    found = estimate_key(clip.waveform, sr)
    assert f"{found[0]} {found[1]}" == expected
    record = clip.extra["conform"]
    assert record["key_after"]["key"] == expected and record["key_before"]["confidence"] > 0.5
    assert record["semitones"] == cf.key_shift(before, cf.parse_key(asked))
    assert clip.waveform.shape == y.shape  # a key alone keeps the length


def test_key_shift_takes_the_smallest_interval_and_relative_keys():
    assert cf.key_shift(("C", "major", 0.9), cf.parse_key("A minor")) == 0
    assert cf.key_shift(("A", "major", 0.9), cf.parse_key("A minor")) == 3  # F# minor -> A minor
    assert cf.key_shift(("C", "major", 0.9), cf.parse_key("B")) == -1
    assert cf.key_shift(("C", "major", 0.9), cf.parse_key("F#")) == -6
    assert cf.key_shift(("C", "major", 0.9), cf.parse_key("F")) == 5


@pytest.mark.parametrize(
    ("text", "tonic", "mode"),
    [
        ("A minor", 9, "minor"),
        ("Am", 9, "minor"),
        ("F#", 6, "major"),
        ("Gb major", 6, "major"),
        ("bbm", 10, "minor"),
    ],
)
def test_key_names(text, tonic, mode):
    key = cf.parse_key(text)
    assert (key.tonic, key.mode) == (tonic, mode)


def test_sidecar_and_file_name(tmp_path):
    clip = cf.conform(synth.example_loop(), bpm=120, bars=4, key="Am")
    wav = clip.save(tmp_path)
    assert wav.name == "audio_120bpm_Am_4bars_seed0.wav"
    meta = json.loads(wav.with_suffix(".json").read_text())["extra"]["conform"]
    for field in ("bpm_before", "bpm_after", "key_before", "key_after", "stretch_ratio", "semitones"):
        assert meta[field] is not None, field
    assert meta["cut_end_sample"] - meta["cut_start_sample"] == clip.waveform.shape[0]
    assert meta["key_after"]["key"] == "A minor"


def test_a_users_loop_from_a_file(tmp_path):
    import soundfile as sf

    y, sr = synth.drum_pattern(bpm=100, seconds=10, sr=44100)
    path = tmp_path / "my-loop.wav"
    sf.write(path, y, sr)
    clip = mg.conform(path, bpm=104, bars=2, loop=True)
    assert clip.sample_rate == 44100 and clip.waveform.shape[0] == round(2 * 4 * 60 / 104 * 44100)
    assert clip.prompt == "my-loop" and clip.extra["source"] == str(path)


BAD = [
    ({"bpm": 39}, "bpm=39: must be a number from 40 to 240"),
    ({"bpm": 241}, "bpm=241"),
    ({"bpm": 120, "bars": 0}, "bars=0: must be a whole number from 1 to 64"),
    ({"bpm": 120, "bars": 65}, "bars=65"),
    ({"bpm": 120, "bars": 2.5}, "bars=2.5"),
    ({"bpm": 120, "beats_per_bar": 13}, "beats_per_bar=13: must be a whole number from 1 to 12"),
    ({"bpm": 120, "beats_per_bar": 0}, "beats_per_bar=0"),
    (
        {"key": "H minor"},
        'key=\'H minor\': is not a key name; write it as one of "A minor", "Am", "F#", "Gb major"',
    ),
    ({"bars": 4}, "bars=4: needs a tempo"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD)
def test_bad_input_is_one_line_naming_the_field(kwargs, message, tmp_path):
    with pytest.raises(InvalidInputError) as err:
        cf.conform(synth.click_track(bpm=100, seconds=4), **kwargs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_too_far_a_stretch_and_no_pulse_are_refused():
    with pytest.raises(
        InvalidInputError,
        match=r"^bpm=160(\.0)?: would stretch the audio 0\.6\d times \(it is at 100\.0 BPM\)",
    ):
        cf.conform(synth.click_track(bpm=100, seconds=8), bpm=160)
    t = np.arange(4 * SR) / SR
    held = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with pytest.raises(InvalidInputError, match="^audio=.*has no clear pulse"):
        cf.conform((held, SR), bpm=120)
    with pytest.raises(InvalidInputError, match="^key='A minor': cannot be set: the audio has no clear key"):
        cf.conform((np.random.default_rng(0).standard_normal(4 * SR).astype(np.float32) * 0.1, SR), key="Am")
    with pytest.raises(InvalidInputError, match=r"^bars=8: need 16\.00 s after the first downbeat"):
        cf.conform(synth.click_track(bpm=120, seconds=6), bpm=120, bars=8)


# --- through mg.generate on the tiny model ----------------------------------------------------

KW = {"num_inference_steps": 2, "model": "tiny", "seed": 3}


def test_calls_without_a_grid_are_bit_identical():
    from mgtoolkit.tasks.text import generate_clips
    from mgtoolkit.types import GenerationRequest

    clip = mg.generate("calm piano", audio_length_in_s=2.0, **KW)
    (same,) = generate_clips(GenerationRequest(prompt="calm piano", audio_length_in_s=2.0, **KW))
    assert np.array_equal(clip.waveform, same.waveform) and "conform" not in clip.extra


def test_generate_checks_the_grid_before_the_model(monkeypatch):
    from mgtoolkit.tasks import text

    monkeypatch.setattr(text, "generate_clips", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(InvalidInputError, match="^bpm=300"):
        mg.generate("x", bpm=300, **KW)
    with pytest.raises(
        InvalidInputError, match=r"^audio_length_in_s=3\.0: contradicts bars=4 at bpm=120 \(8\.000 s\)"
    ):
        mg.generate("x", bpm=120, bars=4, audio_length_in_s=3.0, **KW)
    with pytest.raises(InvalidInputError, match="^key='Q'"):
        mg.generate("x", key="Q", **KW)


def test_generate_with_a_grid_makes_a_margin_and_conforms(monkeypatch):
    """The tiny model makes noise (no pulse): the margin is asked for, and no tempo is claimed."""
    from mgtoolkit.tasks import text

    asked = {}
    real = text.generate_clips

    def spy(request, **kwargs):
        asked.update(length=request.audio_length_in_s, loop=kwargs["loop"])
        clips = real(request.replace(audio_length_in_s=1.0), **kwargs)
        drums, sr = synth.drum_pattern(bpm=118, seconds=request.audio_length_in_s, sr=clips[0].sample_rate)
        return [c.__class__(**{**c.__dict__, "waveform": drums}) for c in clips]

    monkeypatch.setattr(text, "generate_clips", spy)
    clip = mg.generate("funky drum loop", bpm=120, bars=2, loop=True, **KW)
    assert asked == {"length": pytest.approx((4.0 + 2.0) / 0.7, abs=0.1), "loop": False}
    assert clip.waveform.shape[0] == 4 * clip.sample_rate
    assert clip.extra["loop"] == {"start_sample": 0, "end_sample": 4 * clip.sample_rate}
    assert clip.extra["conform"]["label"] == "120bpm_2bars"
    monkeypatch.setattr(text, "generate_clips", real)
    with pytest.raises(InvalidInputError, match="has no clear pulse"):
        mg.generate("x", bpm=120, bars=1, **KW)


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [(["--bpm", "20"], "bpm"), (["--bpm", "120", "--bars", "99"], "bars"), (["--key", "X#"], "key")],
)
def test_cli_bad_grid_is_one_line_and_writes_nothing(tmp_path, args, field):
    import io

    from mgtoolkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["generate", "x", *args, "--out", str(tmp_path / "out")], out, err)
    assert code == 2 and err.getvalue().startswith(f"mgtoolkit: error: {field}=")
    assert err.getvalue().count("\n") == 1 and not (tmp_path / "out").exists()


def test_cli_writes_the_grid_in_the_name_and_the_midi(tmp_path, monkeypatch):
    import io

    from mgtoolkit import cli
    from mgtoolkit.errors import ModelUnavailableError
    from mgtoolkit.io import midi

    try:
        midi.model_path()
    except ModelUnavailableError:
        pytest.skip("basic-pitch's model file is not installed (make install)")

    def made(request, **kwargs):  # a real grid to obey: the tiny model's noise has no pulse
        y, sr = synth.example_loop(bpm=118, bars=8, sr=16000)
        return [Clip(waveform=y, sample_rate=sr, seed=request.seed, request=request)]

    from mgtoolkit.types import Clip

    monkeypatch.setattr(cli, "generate_clips", made)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        [
            "generate",
            "funky drum loop",
            "--seed",
            "7",
            "--bpm",
            "120",
            "--bars",
            "4",
            "--key",
            "Am",
            "--loop",
            "--midi",
            "--model",
            "tiny",
            "--out",
            str(tmp_path),
        ],
        out,
        err,
    )
    assert code == 0, err.getvalue()
    wav, mid = (p.rsplit("/", 1)[1] for p in out.getvalue().split())
    assert (wav, mid) == (
        "funky-drum-loop_120bpm_Am_4bars_seed7.wav",
        "funky-drum-loop_120bpm_Am_4bars_seed7.mid",
    )
    import mido

    song = mido.MidiFile(tmp_path / mid)
    assert [m.tempo for m in song.tracks[0] if m.type == "set_tempo"] == [mido.bpm2tempo(120)]


# --- batch CSV columns ------------------------------------------------------------------------


def test_batch_rows_carry_a_grid_into_the_name(tmp_path, monkeypatch):
    from mgtoolkit import batching
    from mgtoolkit.types import Clip

    def made(request, **kwargs):  # a groove to conform (the tiny model's noise has no pulse)
        y, sr = synth.example_loop(bpm=118, bars=8, sr=16000)
        return [Clip(waveform=y, sample_rate=sr, seed=request.seed, request=request)]

    monkeypatch.setattr(batching.local_engine, "generate_clips", made)
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt,seed,bpm,bars,key\nfunky drums,7,120,2,Am\nplain,3,,,\nbad,1,120,99,\n")
    summary = mg.batch(rows, out=tmp_path / "out", model="tiny", progress=False)
    names = sorted(p.rsplit("/", 1)[1] for p in summary.written)
    assert names == ["0002-funky-drums_120bpm_Am_2bars_seed7.wav", "0003-plain_seed3.wav"]
    assert summary.failed == ("line 4: bars=99: must be a whole number from 1 to 64; pass e.g. bars=4.",)
    meta = json.loads((tmp_path / "out" / "0002-funky-drums_120bpm_Am_2bars_seed7.json").read_text())
    record = meta["extra"]["conform"]
    assert meta["num_samples"] == 4 * 16000 and (record["key"], record["semitones"]) == ("A minor", 2)
