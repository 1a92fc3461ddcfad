"""Notes as MIDI (issue 23): Basic Pitch's shipped model through onnxruntime, our note decoding,
standard MIDI files. Melodies and chords are built here with known notes."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import mgtoolkit as mg
from mgtoolkit.analysis import synth
from mgtoolkit.errors import InvalidInputError, ModelUnavailableError
from mgtoolkit.io import midi

pytest.importorskip("onnxruntime")
try:
    midi.model_path()
except ModelUnavailableError:
    pytest.skip("basic-pitch's model file is not installed (make install)", allow_module_level=True)


def onset_f1(found, expected, tolerance_s: float = 0.05) -> float:
    """Note-onset F1 (mir_eval's rule): same pitch, onset within 50 ms, one-to-one matching."""
    if not found or not expected:
        return 0.0
    hit = np.array(
        [[abs(f.start - e[0]) <= tolerance_s and f.pitch == e[2] for e in expected] for f in found]
    )
    rows, cols = linear_sum_assignment(-hit.astype(float))
    matched = hit[rows, cols].sum()
    precision, recall = matched / len(found), matched / len(expected)
    return 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)


MELODIES = [
    (60, 62, 64, 65, 67, 69, 71, 72),  # C major scale
    (57, 60, 64, 69, 67, 64, 62, 59, 55, 52),  # an arpeggiated line with leaps
    tuple(int(p) for p in np.random.default_rng(7).integers(45, 84, 12)),  # random pitches, A2 to B5
]


@pytest.mark.parametrize("pitches", MELODIES, ids=["scale", "leaps", "random"])
def test_melodies_transcribe_with_the_right_notes(pitches):
    y, sr, expected = synth.melody(pitches)
    notes = mg.transcribe((y, sr))
    assert onset_f1(notes.notes, expected) >= 0.9
    for start, end, pitch in expected:  # every note heard at its pitch, sounding through its length
        assert any(
            n.pitch == pitch and abs(n.start - start) < 0.05 and n.end > end - 0.1 for n in notes.notes
        )


def test_chords_are_polyphonic():
    y, sr = synth.chord_progression(tonic=0, mode="major", bpm=120, bars=2)  # C, F from 0.25 s
    notes = mg.transcribe((np.concatenate([np.zeros(sr // 4, np.float32), y]), sr))
    assert {60, 64, 67} <= {n.pitch for n in notes.notes if abs(n.start - 0.25) < 0.05}
    assert {65, 69, 72} <= {n.pitch for n in notes.notes if abs(n.start - 2.25) < 0.05}


def test_clip_to_midi_writes_the_tempo_and_notes(tmp_path):
    y, sr, expected = synth.melody((60, 64, 67, 72), note_s=0.5, gap_s=0.0)
    clip = mg.conform((y, sr), key="D")  # a clip; no bpm: 120 in the file
    path = clip.to_midi(tmp_path / "out" / "line.mid")
    song = mido.MidiFile(path)
    tempos = [m.tempo for m in song.tracks[0] if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(120)]
    pitches = [m.note for m in song.tracks[0] if m.type == "note_on" and m.velocity > 0]
    shift = clip.extra["conform"]["semitones"]
    assert pitches == [p + shift for p in (60, 64, 67, 72)]


def test_quantised_to_the_asked_tempo(tmp_path):
    y, sr, _ = synth.melody((60, 62, 64, 65), note_s=0.45, gap_s=0.05)  # starts 0.25 s apart... 0.5 s steps
    notes = midi.transcribe((y, sr), bpm=120)
    path = midi.write_midi(notes, tmp_path / "q.mid", quantize=4)
    song = mido.MidiFile(path)
    now, starts = 0, []
    for m in song.tracks[0]:
        now += m.time
        if m.type == "note_on" and m.velocity > 0:
            starts.append(now)
    step = song.ticks_per_beat // 4
    assert all(s % step == 0 for s in starts)
    assert np.diff(starts).tolist() == [song.ticks_per_beat] * 3  # 0.5 s apart at 120 BPM: one beat


def test_bad_input_and_a_missing_transcriber(monkeypatch, tmp_path):
    y, sr, _ = synth.melody((60,))
    with pytest.raises(InvalidInputError, match="^onset_threshold=1.5: must be between 0 and 1"):
        midi.transcribe((y, sr), onset_threshold=1.5)
    with pytest.raises(InvalidInputError, match="^quantize=0"):
        midi.write_midi(midi.Notes(notes=()), tmp_path / "x.mid", quantize=0)
    assert not (tmp_path / "x.mid").exists()
    monkeypatch.setattr(midi.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        ModelUnavailableError, match=r'^transcribing needs the midi extra: pip install "mgtoolkit\[midi\]"'
    ):
        mg.transcribe((y, sr))


def test_piano_roll_under_the_spectrogram():
    from mgtoolkit.notebook import display, plots

    y, sr, expected = synth.melody((60, 67, 64))
    clip = mg.conform((y, sr), key="C")
    notes = mg.transcribe(clip)
    fig = plots.clip_figure(clip, notes=notes)
    (roll,) = [ax for ax in fig.axes if ax.get_ylabel() == "MIDI note"]
    assert len(roll.collections[0].get_paths()) == len(notes) == 3
    assert len(plots.clip_figure(clip).axes) == len(fig.axes) - 1
    assert display.clips_html(clip, notes=True).count("<img") == 1
