"""Low-memory mode: the same waveform as the normal mode, one stage's weights in memory at a time,
chosen by itself under 4 GB (tiny models; no timings or RSS asserted here: ``benchmarks/``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_speed_equivalence import _plain_pipe, _waves

pytestmark = pytest.mark.filterwarnings("ignore")
GB = 1024**3


@pytest.fixture(scope="module")
def paddle():
    from mgtoolkit.runtime import import_paddle

    return import_paddle()


def _released(module) -> bool:
    return all(not p._is_initialized() for p in module.parameters())


def _resident(module) -> bool:
    return all(p._is_initialized() for p in module.parameters())


@pytest.mark.parametrize(
    ("memory", "expected"),
    [(2 * GB, True), (4 * GB - 1, True), (4 * GB, False), (16 * GB, False), (None, False)],
)
def test_auto_chooses_low_memory_under_4_gb(memory, expected):
    from mgtoolkit.accel.lowmem import choose

    assert choose("auto", memory_bytes=memory) is expected


@pytest.mark.parametrize(
    ("env", "argument", "expected"),
    [
        ({}, None, True),  # auto, with the 2 GB the test passes in
        ({"MGTOOLKIT_LOW_MEMORY": "0"}, None, False),
        ({"MGTOOLKIT_LOW_MEMORY": "off"}, None, False),
        ({"MGTOOLKIT_LOW_MEMORY": "1"}, None, True),
        ({"MGTOOLKIT_LOW_MEMORY": "1"}, False, False),  # the argument wins over the environment
        ({"MGTOOLKIT_LOW_MEMORY": "0"}, True, True),
    ],
)
def test_the_argument_beats_the_environment_default(monkeypatch, env, argument, expected):
    from mgtoolkit.accel.lowmem import choose

    monkeypatch.delenv("MGTOOLKIT_LOW_MEMORY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert choose(argument, memory_bytes=2 * GB) is expected


def test_a_small_cgroup_turns_it_on_by_itself(monkeypatch):
    from mgtoolkit.accel import lowmem, pieces

    monkeypatch.delenv("MGTOOLKIT_LOW_MEMORY", raising=False)
    monkeypatch.setattr(pieces, "memory_limit_bytes", lambda: 2 * GB)
    assert lowmem.choose() is True
    monkeypatch.setattr(pieces, "memory_limit_bytes", lambda: 32 * GB)
    assert lowmem.choose() is False


@pytest.mark.slow  # seconds of whole tiny-pipeline runs or a child process (make test runs it)
def test_low_memory_makes_the_same_waveform_with_one_stage_in_memory(paddle, tmp_path):
    from mgtoolkit.accel import lowmem

    plain, small = _plain_pipe(), _plain_pipe()
    assert lowmem.enable(small, cache=tmp_path) == ["text_encoder", "unet", "vae", "vocoder"]
    assert _released(small.unet) and _released(small.text_encoder) and _released(small.vocoder)
    assert _resident(small.vae.encoder)  # restyling encodes: the encoder is not swapped
    for seconds, seeds in ((1.0, [3]), (2.0, [4, 5])):
        np.testing.assert_array_equal(
            _waves(paddle, small, seconds, seeds), _waves(paddle, plain, seconds, seeds)
        )
        # after a call, the last stage (the vocoder) is the only one in memory
        assert _resident(small.vocoder)
        assert _released(small.unet) and _released(small.text_encoder) and _released(small.vae.decoder)
    assert small._mgtoolkit_lowmem.loads == 8  # four stages read back per call
    assert len(list(tmp_path.glob("*.safetensors"))) == 4


def test_low_memory_can_be_undone(paddle, tmp_path):
    from mgtoolkit.accel import lowmem

    plain, small = _plain_pipe(), _plain_pipe()
    lowmem.enable(small, cache=tmp_path)
    lowmem.disable(small)
    assert not lowmem.is_on(small)
    assert _resident(small.unet) and _resident(small.text_encoder) and _resident(small.vocoder)
    np.testing.assert_array_equal(_waves(paddle, small, 1.0, [2]), _waves(paddle, plain, 1.0, [2]))


def test_load_model_low_memory_generates_what_the_normal_mode_does(monkeypatch, tmp_path):
    import mgtoolkit as mg
    from mgtoolkit.tasks import text

    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("MGTOOLKIT_COMPILE", "0")
    normal = text.load_model("tiny", low_memory=False)
    small = text.load_model("tiny", low_memory=True)
    assert small.pipe is not normal.pipe  # cached apart
    assert small.pipe._mgtoolkit_optimizations["low_memory"] is True
    assert text.load_model("tiny", low_memory=True).pipe is small.pipe
    request = {"audio_length_in_s": 1.0, "num_inference_steps": 2, "seed": 11, "model": "tiny", "rank": False}
    monkeypatch.setenv("MGTOOLKIT_LOW_MEMORY", "1")
    got = mg.generate("soft rain", **request)
    monkeypatch.setenv("MGTOOLKIT_LOW_MEMORY", "0")
    want = mg.generate("soft rain", **request)
    np.testing.assert_array_equal(got.waveform, want.waveform)
    assert _released(small.pipe.unet)  # the low-memory pipeline made ``got``


@pytest.mark.slow
def test_musicldm_low_memory_swaps_its_clap_too(paddle, tmp_path):
    """MusicLDM's text encoder is a whole CLAP, called through ``get_text_features``."""
    from mgtoolkit.accel import lowmem
    from mgtoolkit.models.audioldm import import_ppdiffusers
    from mgtoolkit.models.tiny.pipelines import tiny_dir

    def load():
        pipe = import_ppdiffusers().MusicLDMPipeline.from_pretrained(str(tiny_dir("tiny-musicldm")))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def wave(pipe):
        latents = np.random.default_rng(2).standard_normal((1, 8, 50, 16)).astype("float32")
        with paddle.no_grad():
            out = pipe(prompt="a waltz", audio_length_in_s=2.0, num_inference_steps=2,
                       latents=paddle.to_tensor(latents), output_type="np")  # fmt: skip
        return np.asarray(out.audios, dtype=np.float32)

    plain, small = load(), load()
    lowmem.enable(small, cache=tmp_path)
    assert _released(small.text_encoder)
    np.testing.assert_array_equal(wave(small), wave(plain))
    assert small._mgtoolkit_lowmem.loads >= 4


def test_the_plain_reader_gives_what_safetensors_gives(tmp_path):
    """Low-memory loads read ppdiffusers' weights with file reads, not a memory map: same arrays."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from mgtoolkit.accel.lowmem import PlainSafetensors

    rng = np.random.default_rng(3)
    tensors = {
        "unet.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "half": rng.standard_normal((5, 2)).astype(np.float16),
        "steps": np.arange(7, dtype=np.int64),
        "scalar": np.asarray(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path), metadata={"format": "pd"})
    with safe_open(str(path), framework="np") as want, PlainSafetensors(path, "np", mapped=safe_open) as got:
        assert got.metadata() == want.metadata() == {"format": "pd"}
        assert sorted(got.keys()) == sorted(want.keys())
        for key in want.keys():
            array = got.get_tensor(key)
            assert array.dtype == want.get_tensor(key).dtype and array.shape == want.get_tensor(key).shape
            np.testing.assert_array_equal(array, want.get_tensor(key))


def test_a_low_memory_load_reads_ppdiffusers_weights_without_a_memory_map(monkeypatch, tmp_path):
    from ppdiffusers.models import modeling_utils

    from mgtoolkit.accel import lowmem
    from mgtoolkit.tasks import text

    mapped = modeling_utils.safe_open
    opened = []

    class Spy(lowmem.PlainSafetensors):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lowmem, "PlainSafetensors", Spy)
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("MGTOOLKIT_COMPILE", "0")
    text.unload()  # a load, not the pipeline an earlier test left in the cache
    text.load_model("tiny", low_memory=True)
    assert any("unet" in str(p) for p in opened) and any("vae" in str(p) for p in opened), opened
    assert modeling_utils.safe_open is mapped  # put back after the load


def test_low_memory_reads_the_file_it_loaded_from_and_writes_no_second_copy(monkeypatch, tmp_path):
    """Disk: the model folder (the download's converted copy) and nothing more."""
    from mgtoolkit.models.tiny.pipelines import tiny_audioldm_dir
    from mgtoolkit.tasks import text

    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("MGTOOLKIT_COMPILE", "0")
    text.unload()
    small = text.load_model("tiny", low_memory=True)
    folder = tiny_audioldm_dir(tmp_path)
    swapper = small.pipe._mgtoolkit_lowmem
    assert sorted(swapper.stages) == ["text_encoder", "unet", "vae", "vocoder"]
    for name, stage in swapper.stages.items():
        assert stage.path is None and [f.parent for f in stage.source.files] == [folder / name]
    assert not list(tmp_path.glob("weights/*"))  # no stash
    assert _released(small.pipe.unet) and _released(small.pipe.vocoder)
    text.unload()


def test_weights_changed_after_loading_are_never_read_from_the_file(paddle, monkeypatch, tmp_path):
    from mgtoolkit.accel import lowmem
    from mgtoolkit.models.tiny.pipelines import tiny_audioldm_dir

    pipe = _plain_pipe()
    folder = tiny_audioldm_dir() / "unet"
    parts = (pipe.unet,)
    source = lowmem.weights_source(pipe.unet, parts, folder)
    assert source is not None and not source.kept and len(source.places) == len(list(lowmem._tensors(parts)))
    weight = pipe.unet.conv_in.weight
    weight.set_value(weight * 2)  # a fine-tune after loading: the file no longer holds it
    changed = lowmem.weights_source(pipe.unet, parts, folder)
    assert changed.kept == {"0.p.conv_in.weight"} and "0.p.conv_in.weight" not in changed.places
    monkeypatch.setattr(lowmem, "KEEP_RESIDENT_BYTES", 0)
    assert lowmem.weights_source(pipe.unet, parts, folder) is None  # too much differs: stashed instead
    swapper = lowmem.Swapper()
    swapper.add("unet", parts, tmp_path, None, changed)
    assert weight._is_initialized() and not pipe.unet.conv_out.weight._is_initialized()  # kept resident
    swapper.enter("unet")
    np.testing.assert_array_equal(weight.numpy(), 2 * _plain_pipe().unet.conv_in.weight.numpy())


def test_a_file_changed_since_loading_is_refused(paddle, tmp_path):
    import shutil

    from mgtoolkit.accel import lowmem
    from mgtoolkit.models.tiny.pipelines import tiny_audioldm_dir

    folder = tmp_path / "vocoder"
    shutil.copytree(tiny_audioldm_dir() / "vocoder", folder)
    pipe = _plain_pipe()
    parts = (pipe.vocoder,)
    source = lowmem.weights_source(pipe.vocoder, parts, folder)
    lowmem.release(parts)
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes() + b" ")
    with pytest.raises(RuntimeError, match="changed after the model was loaded; load the model again"):
        source.restore(parts)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="is gone; load the model again"):
        source.restore(parts)


def test_a_stage_entering_releases_the_other_models_resident_stage(paddle, monkeypatch, tmp_path):
    """A low-memory AudioLDM and a low-memory CLAP hold one stage between them, never two."""
    from mgtoolkit.accel import lowmem
    from mgtoolkit.models import clap

    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("MGTOOLKIT_LOW_MEMORY", "1")
    music = _plain_pipe()
    lowmem.enable(music, cache=tmp_path)
    _waves(paddle, music, 1.0, [3])
    assert music._mgtoolkit_lowmem.resident == "vocoder" and _resident(music.vocoder)
    clap.release_clap()
    try:
        scorer = clap.load_clap("tiny")
        assert music._mgtoolkit_lowmem.resident is None and _released(music.vocoder)  # room made to load
        clap.text_embeddings(scorer, ["a waltz"])
        assert scorer.model._mgtoolkit_lowmem.resident == "clap_text"
        _waves(paddle, music, 1.0, [3])
        assert scorer.model._mgtoolkit_lowmem.resident is None and _released(scorer.model.text_model)
    finally:
        clap.release_clap()


def test_make_room_leaves_a_model_running_in_another_thread_alone(paddle, tmp_path):
    import threading

    from mgtoolkit.accel import lowmem

    music = _plain_pipe()
    lowmem.enable(music, cache=tmp_path)
    _waves(paddle, music, 1.0, [3])
    swapper = music._mgtoolkit_lowmem
    running, finish = threading.Event(), threading.Event()

    def generate_elsewhere():
        with swapper.guard:  # as a generation in another thread holds the pipeline lock
            running.set()
            finish.wait(30)

    worker = threading.Thread(target=generate_elsewhere)
    worker.start()
    running.wait(30)
    lowmem.make_room()
    assert swapper.resident == "vocoder" and _resident(music.vocoder)  # never released mid-run
    finish.set()
    worker.join()
    lowmem.make_room()
    assert swapper.resident is None and _released(music.vocoder)


@pytest.mark.slow  # seconds of whole tiny-pipeline runs or a child process (make test runs it)
@pytest.mark.parametrize("low_memory", [True, False])
def test_a_cpu_load_in_a_fresh_process_runs_on_every_core(tmp_path, low_memory):
    """A load must not import paddle before mgtoolkit sets its threads: paddle then sets
    ``OMP_NUM_THREADS=1`` and the whole process runs on one core, with no thread split. Low-memory
    loads with ``device="cpu"`` (no GPU probe first) did, the benchmarks' road: a UNet step 1.35 s
    instead of 0.65 s with the second core free."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, os; import mgtoolkit as mg; "
        f"m = mg.load_model('tiny', device='cpu', low_memory={low_memory}, predictors='off'); "
        "print(json.dumps({'omp': os.environ.get('OMP_NUM_THREADS'), 'workers': m.report['workers'], "
        "'low_memory': m.report['low_memory']}))"
    )
    skip = ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "MGTOOLKIT_NO_THREAD_TUNING", "MGTOOLKIT_LOW_MEMORY")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "MGTOOLKIT_CACHE": str(tmp_path)},
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=600,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert seen == {"omp": str(cores), "workers": cores, "low_memory": low_memory}
