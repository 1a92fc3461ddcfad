"""``mg.batch(engine="ray")`` on a local Ray cluster: same files as the local batch, a killed
actor's row retried, every row written exactly once, a rerun writing nothing. Needs ``mgtoolkit[cluster]``."""

from __future__ import annotations

import io
import json
import os

import pytest
import soundfile as sf

import mgtoolkit as mg
from mgtoolkit.cli import main

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a local Ray cluster: minutes

QUICK = {"model": "tiny", "audio_length_in_s": 0.5, "num_inference_steps": 2, "progress": False}
# 12 rows: 3 prompts x 2 seeds x 2 lengths
GRID = [
    {"prompt": prompt, "seed": seed, "audio_length_in_s": seconds}
    for prompt in ("calm piano", "rain on a roof", "fast drums")
    for seed in (0, 41)
    for seconds in (0.5, 0.25)
]


@pytest.fixture(scope="module")
def cluster(tiny_model):
    """A local Ray of two CPUs for this module (the tiny model is built in the cache first)."""
    for attempt in range(3):  # Ray gives its raylet a fixed 30 s to start: too short on a loaded machine
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


def listing(folder) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_a_grid_on_ray_makes_the_files_of_the_local_batch(cluster, tmp_path):
    local = mg.batch(GRID, out=tmp_path / "local", **QUICK)
    spread = mg.batch(GRID, out=tmp_path / "ray", engine="ray", actors=2, **QUICK)
    assert (spread.engine, spread.actors, spread.made, spread.clips, spread.failed) == ("ray", 2, 12, 12, ())
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len(names) == 24 and names == sorted(p.name for p in (tmp_path / "ray").iterdir())
    for name in names:
        if name.endswith(".wav"):
            here, there = (sf.read(tmp_path / d / name, dtype="int16")[0] for d in ("local", "ray"))
            assert here.tolist() == there.tolist(), name
        else:
            here, there = (json.loads((tmp_path / d / name).read_text()) for d in ("local", "ray"))
            assert (
                here["parameters"] == there["parameters"]
                and here["file"] == there["file"] == name[:-5] + ".wav"
            )
    assert local.clips == 12


def test_a_killed_actor_loses_nothing_and_makes_nothing_twice(cluster, tmp_path):
    marker = tmp_path / "killed"

    def kill_once_on_row_5(number: int) -> None:  # runs inside the actor
        if number == 5 and not marker.exists():
            marker.touch()
            os._exit(1)  # the actor's process dies mid-row, as under the OOM killer

    out = tmp_path / "out"
    summary = mg.batch(GRID, out=out, engine="ray", actors=2, _fault=kill_once_on_row_5, **QUICK)
    assert marker.exists()
    assert (summary.made, summary.retries, summary.failed, summary.clips) == (12, 1, (), 12)
    names = sorted(p.name for p in out.iterdir())  # no temporary, half-written or "-1" files
    expected = sorted(f"{r.stem(r.request.seed)}{s}" for r in _rows() for s in (".wav", ".json"))
    assert names == expected
    assert sorted(os.path.basename(p) for p in summary.written) == [n for n in expected if n.endswith(".wav")]

    before = listing(out)
    again = mg.batch(GRID, out=out, engine="ray", actors=2, **QUICK)
    assert (again.made, again.skipped, again.clips) == (0, 12, 0)
    assert listing(out) == before


def test_cli_batch_with_ray(cluster, tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,seed\ncalm piano,3\nrain,4\n")
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "batch",
        str(prompts),
        "--ray",
        "--actors",
        "1",
        "--model",
        "tiny",
        "--seconds",
        "0.5",
        "--steps",
        "2",
    ]
    code = main([*argv, "--out", str(tmp_path / "o")], out=out, err=err)
    assert code == 0
    assert sorted(os.path.basename(p) for p in out.getvalue().split()) == [
        "0002-calm-piano_seed3.wav",
        "0003-rain_seed4.wav",
    ]
    assert "batch: 2 made, 0 skipped, 0 failed" in err.getvalue() and "on ray with 1 actor," in err.getvalue()


def _rows():
    from mgtoolkit.batching import read_rows

    return read_rows(GRID, mg.GenerationRequest(prompt="", seed=0, model="tiny", audio_length_in_s=0.5))
