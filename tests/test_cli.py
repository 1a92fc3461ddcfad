"""``python -m mgtoolkit``: paths on stdout, one-line errors on stderr, nothing written on bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from mgtoolkit.cli import TINY_NOTE, main

FAST = ["--seconds", "1", "--steps", "2", "--model", "tiny"]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_generate_prints_written_paths_and_says_tiny_is_noise(tmp_path, tiny_model):
    code, out, err = run("generate", "smooth jazz", "--seed", "3", "--n", "2", "--out", str(tmp_path), *FAST)
    assert code == 0
    paths = out.split()
    assert [p.rsplit("/", 1)[1] for p in paths] == ["smooth-jazz_seed3.wav", "smooth-jazz_seed4.wav"]
    assert TINY_NOTE in err
    meta = json.loads((tmp_path / "smooth-jazz_seed4.json").read_text())
    assert meta["parameters"]["audio_length_in_s"] == 1.0 and meta["seed"] == 4


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["", *FAST], "prompt"),
        (["x", "--seconds", "-1", "--model", "tiny"], "audio_length_in_s"),
        (["x", "--steps", "0", "--model", "tiny"], "num_inference_steps"),
        (["x", "--guidance", "nan", "--model", "tiny"], "guidance_scale"),
        (["x", "--n", "99", "--model", "tiny"], "num_waveforms_per_prompt"),
        (["x", "--model", "nope"], "model"),
        (["x", "--scheduler", "nope", "--model", "tiny"], "scheduler"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, field):
    out_dir = tmp_path / "out"
    code, out, err = run("generate", *args, "--out", str(out_dir))
    assert code == 2 and out == ""
    assert err.startswith(f"mgtoolkit: error: {field}=") and err.count("\n") == 1
    assert not out_dir.exists()


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    code, _, err = run("generate", "x", *FAST, "--out", str(tmp_path / "f" / "out"))
    assert code == 2 and err.startswith("mgtoolkit: error: --out=")


def test_batch_goes_on_after_a_bad_line_and_skips_on_rerun(tmp_path, tiny_model):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt,seconds,seed\ncalm piano,1,5\nbad length,-3,5\nfast drums,,6\n")
    out_dir = tmp_path / "out"
    code, out, err = run(
        "batch", str(prompts), "--steps", "2", "--model", "tiny", "--seconds", "0.5", "--out", str(out_dir)
    )
    assert code == 1
    assert "line 3: audio_length_in_s=-3.0" in err and "batch: 2 made, 0 skipped, 1 failed" in err
    names = sorted(p.name for p in out_dir.glob("*.wav"))
    assert names == ["0002-calm-piano_seed5.wav", "0004-fast-drums_seed6.wav"]
    import soundfile as sf

    assert sf.info(out_dir / names[1]).duration == pytest.approx(0.5)  # the default fills an empty cell
    code, out, err = run("batch", str(prompts), "--steps", "2", "--model", "tiny", "--out", str(out_dir))
    assert out == "" and "batch: 0 made, 2 skipped" in err
    assert sorted(p.name for p in out_dir.glob("*.wav")) == names


def test_batch_text_file_skips_comments_and_blank_lines(tmp_path, tiny_model):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# my prompts\n\ncalm piano\n  \nrain on a roof\n")
    code, out, err = run("batch", str(prompts), *FAST, "--seconds", "0.5", "--out", str(tmp_path / "o"))
    assert code == 0 and len(out.split()) == 2 and "2 made, 0 skipped, 0 failed" in err


def test_batch_unknown_column_is_reported(tmp_path, tiny_model):
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,tempo\ncalm,120\n")
    code, _, err = run("batch", str(prompts), *FAST, "--out", str(tmp_path / "o"))
    assert code == 1 and "column='tempo': is not a parameter" in err


def test_models_lists_presets():
    code, out, _ = run("models")
    assert code == 0 and "audioldm-s-full-v2" in out and "cvssp/audioldm-l-full" in out


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mgtoolkit", "generate", "  ", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("mgtoolkit: error: prompt=")
