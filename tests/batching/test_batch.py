"""``mg.batch`` (``mgtoolkit.batching``) on the local engine: names, seeds, sidecars, exactly-once files, reruns, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.batching import BatchSummary, plan_actors, read_rows
from mgtoolkit.errors import InvalidInputError, MgtoolkitError

QUICK = {"model": "tiny", "audio_length_in_s": 0.5, "num_inference_steps": 2, "progress": False}


def pcm(path) -> np.ndarray:
    return sf.read(path, dtype="int16")[0]


def listing(folder) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns) of every file, hidden ones included."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_model):
    """One batch of text, dict and request rows with a bad one in the middle."""
    out = tmp_path_factory.mktemp("batch")
    rows = [
        "calm piano",
        {"prompt": "rain on a roof", "seed": "7", "n": "2"},
        {"prompt": "too short", "seconds": "-1"},
        mg.GenerationRequest(
            prompt="fast drums", seed=3, model="tiny", audio_length_in_s=0.5, num_inference_steps=2
        ),
    ]
    return out, mg.batch(rows, out=out, seed=11, **QUICK)


def test_rows_become_named_files_with_their_seeds(made):
    out, summary = made
    assert isinstance(summary, BatchSummary)
    assert sorted(p.name for p in out.glob("*.wav")) == [
        "0001-calm-piano_seed11.wav",
        "0002-rain-on-a-roof_seed7.wav",
        "0002-rain-on-a-roof_seed8.wav",
        "0004-fast-drums_seed3.wav",
    ]
    meta = json.loads((out / "0002-rain-on-a-roof_seed8.json").read_text())
    assert meta["seed"] == 8 and meta["file"] == "0002-rain-on-a-roof_seed8.wav"
    assert meta["parameters"]["num_waveforms_per_prompt"] == 2 and meta["num_samples"] == 8000
    assert (summary.made, summary.skipped, summary.clips, summary.retries) == (3, 0, 4, 0)
    assert [p.rsplit("/", 1)[1] for p in summary.written][0] == "0001-calm-piano_seed11.wav"


def test_a_bad_row_is_reported_and_the_rest_go_on(made):
    _, summary = made
    assert len(summary.failed) == 1 and summary.failed[0].startswith("line 3: audio_length_in_s=-1.0")
    assert "3 made, 0 skipped, 1 failed" in str(summary) and "clips/min" in str(summary)


def test_a_rows_clips_are_what_generate_makes(made):
    out, _ = made
    clip = mg.generate(
        "rain on a roof",
        seed=7,
        num_waveforms_per_prompt=2,
        model="tiny",
        audio_length_in_s=0.5,
        num_inference_steps=2,
        rank=False,
    )[1]
    assert clip.seed == 8
    expected = np.round(np.clip(clip.waveform, -1, 1) * 32767).astype(np.int16)
    np.testing.assert_array_equal(pcm(out / "0002-rain-on-a-roof_seed8.wav"), expected)


def test_a_rerun_writes_nothing(made):
    out, _ = made
    before = listing(out)
    summary = mg.batch(
        ["calm piano", {"prompt": "rain on a roof", "seed": "7", "n": "2"}], out=out, seed=11, **QUICK
    )
    assert (summary.made, summary.skipped, summary.clips) == (0, 2, 0)
    assert listing(out) == before


def test_a_stopped_run_resumes_without_overwriting(tmp_path, tiny_model):
    # A run stopped after the first clip of a row, and after a sidecar whose WAV never came.
    (tmp_path / "0001-sea_seed0.wav").write_bytes(b"made by the first run")
    left = {"file": "0001-sea_seed1.wav", "mgtoolkit_version": "0", "parameters": {}, "seed": 9}
    (tmp_path / "0001-sea_seed1.json").write_text(json.dumps(left))  # a batch's own sidecar (issue 24)
    summary = mg.batch([{"prompt": "sea", "n": "2"}], out=tmp_path, **QUICK)
    assert summary.clips == 1 and summary.written[0].endswith("0001-sea_seed1.wav")
    assert (tmp_path / "0001-sea_seed0.wav").read_bytes() == b"made by the first run"
    assert json.loads((tmp_path / "0001-sea_seed1.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "0001-sea_seed0.wav",
        "0001-sea_seed1.json",
        "0001-sea_seed1.wav",
    ]


def test_a_full_disk_stops_the_job_in_one_line_and_a_rerun_finishes_it(tmp_path, tiny_model, monkeypatch):
    import mgtoolkit.batching as batch_module

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch_module.output, "wav_bytes", disk_full)
    with pytest.raises(MgtoolkitError, match="^line 1: cannot write to .*No space left on device"):
        mg.batch(["calm piano", "rain"], out=tmp_path, **QUICK)
    assert not list(tmp_path.glob("*.wav")) and not list(tmp_path.glob(".mg-*"))
    monkeypatch.undo()
    summary = mg.batch(["calm piano", "rain"], out=tmp_path, **QUICK)
    assert summary.clips == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "0001-calm-piano_seed0.json",
        "0001-calm-piano_seed0.wav",
        "0002-rain_seed0.json",
        "0002-rain_seed0.wav",
    ]


def test_output_to_an_fsspec_filesystem(tiny_model):
    import fsspec

    summary = mg.batch(["calm piano"], out="memory://mgtoolkit-test/clips", **QUICK)
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls("/mgtoolkit-test/clips", detail=False))
    assert names == ["0001-calm-piano_seed0.json", "0001-calm-piano_seed0.wav"]
    assert summary.written == ("memory://mgtoolkit-test/clips/0001-calm-piano_seed0.wav",)
    assert sf.info(fs.open("/mgtoolkit-test/clips/0001-calm-piano_seed0.wav")).frames == 8000
    again = mg.batch(["calm piano"], out="memory://mgtoolkit-test/clips", **QUICK)
    assert (again.skipped, again.clips) == (1, 0)


def test_text_and_csv_files_keep_their_line_numbers(tmp_path):
    base = mg.GenerationRequest(prompt="", seed=0, model="tiny")
    (tmp_path / "p.txt").write_text("# mine\n\ncalm piano\nrain\n")
    (tmp_path / "p.csv").write_text("prompt,seconds,tempo\ncalm,1,\n")
    assert [(r.number, r.request.prompt) for r in read_rows(tmp_path / "p.txt", base)] == [
        (3, "calm piano"),
        (4, "rain"),
    ]
    [row] = read_rows(tmp_path / "p.csv", base)
    assert row.number == 2 and str(row.error).startswith("column='tempo': is not a parameter")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"rows": ["x"], "engine": "spark"}, "engine="),
        ({"rows": 42}, "rows="),
        ({"rows": "missing.txt"}, "file="),
        ({"rows": ["x"], "seed": -1}, "seed="),
        ({"rows": ["x"], "engine": "ray", "actors": 0}, "actors="),
    ],
)
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path, call, field):
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match=f"^{field}"):
        mg.batch(call.pop("rows"), out=out, **{**QUICK, **call})
    assert not out.exists()


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MgtoolkitError, match=r"mgtoolkit\[cluster\]"):
        mg.batch(["x"], out=tmp_path / "o", engine="ray", **QUICK)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # seconds: a child process that generates (make test runs it)
def test_local_batch_never_imports_ray(tmp_path, tiny_model):
    code = (
        "import sys, mgtoolkit as mg\n"
        f"mg.batch(['x'], out={str(tmp_path)!r}, model='tiny', audio_length_in_s=0.5, "
        "num_inference_steps=2, progress=False)\n"
        "import mgtoolkit.batching\n"
        "assert mg.batch is mgtoolkit.batching.batch\n"
        "print('ray' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "0001-x_seed0.wav").exists()


def test_actor_plan_follows_the_nodes():
    cpu_nodes = [
        {"Alive": True, "NodeID": "a", "Resources": {"CPU": 8.0}},
        {"Alive": False, "NodeID": "b", "Resources": {"CPU": 8.0}},
        {"Alive": True, "NodeID": "c", "Resources": {"CPU": 4.0}},
    ]
    assert plan_actors(cpu_nodes) == [{"num_cpus": 8.0, "node": "a"}, {"num_cpus": 4.0, "node": "c"}]
    assert plan_actors(cpu_nodes, actors=3) == [{"num_cpus": 4.0}] * 3
    assert plan_actors(cpu_nodes, actor_cpus=2) == [{"num_cpus": 2}] * 6
    gpu_nodes = [{"Alive": True, "NodeID": "g", "Resources": {"CPU": 32.0, "GPU": 4.0}}]
    assert plan_actors(gpu_nodes) == [{"num_cpus": 1, "num_gpus": 1}] * 4
    assert plan_actors(gpu_nodes, actor_gpus=0.5, actor_cpus=4) == [{"num_cpus": 4, "num_gpus": 0.5}] * 8


@pytest.mark.parametrize(("nodes", "actors"), [([{"NodeID": "a", "Resources": {"CPU": 2.0}}], 3), ([], 0)])
def test_a_pool_that_cannot_start_is_one_line(nodes, actors):
    with pytest.raises(InvalidInputError, match="^actors="):
        plan_actors(nodes, actors=actors)
