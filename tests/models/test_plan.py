"""One load plan: settings survive between calls, and how a model runs is decided once.

The first tests load the tiny model (real paddle code); the plan table needs no paddle.
"""

from __future__ import annotations

import numpy as np
import pytest

import mgtoolkit as mg

FAST = {"audio_length_in_s": 1.0, "num_inference_steps": 2, "seed": 5, "rank": False}


@pytest.fixture()
def fresh(monkeypatch, tmp_path):
    """No cached pipelines before or after; a cache of its own; the environment's defaults."""
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    for name in ("LOW_MEMORY", "OPTIMIZE", "COMPILE", "DTYPE", "DEVICE", "ALLOW_UNSAFE_PICKLE"):
        monkeypatch.delenv(f"MGTOOLKIT_{name}", raising=False)
    mg.unload()
    yield
    mg.unload()


def _cached_pipelines() -> int:
    from mgtoolkit.models import audioldm

    return audioldm._load_cached.cache_info().currsize


def test_generate_uses_the_low_memory_model_loaded_before(fresh):
    loaded = mg.load_model("tiny", low_memory=True)
    clip = mg.generate("soft rain", model="tiny", **FAST)
    assert _cached_pipelines() == 1  # no second, full-memory pipeline
    assert mg.load_model("tiny", low_memory=True) is loaded
    assert clip.model_info["plan"]["low_memory"] is True


def test_generate_uses_the_plain_model_loaded_before(fresh):
    loaded = mg.load_model("tiny", optimize=False)
    clip = mg.generate("soft rain", model="tiny", **FAST)
    assert _cached_pipelines() == 1
    assert clip.model_info["plan"]["optimize"] is False
    assert loaded.report == {}  # nothing applied: the plain ppdiffusers pipeline


def test_generate_keeps_allow_unsafe_pickle(fresh):
    mg.load_model("tiny", allow_unsafe_pickle=True)
    clip = mg.generate("soft rain", model="tiny", **FAST)
    assert _cached_pipelines() == 1 and clip.model_info["allow_unsafe_pickle"] is True


def test_a_loaded_model_is_a_model_argument(fresh):
    loaded = mg.load_model("tiny", low_memory=True)
    clip = mg.generate("soft rain", model=loaded, **FAST)
    assert _cached_pipelines() == 1 and clip.request.model == "tiny"
    again = mg.generate("soft rain", model="tiny", **FAST)
    np.testing.assert_array_equal(clip.waveform, again.waveform)
    with pytest.raises(mg.InvalidInputError, match="device="):
        mg.generate("soft rain", model=loaded, device="cpu", **FAST)


def test_explicit_options_load_what_they_ask(fresh):
    small = mg.load_model("tiny", low_memory=True)
    plain = mg.load_model("tiny", low_memory=False)  # the latest load is the one tasks use
    assert plain.pipe is not small.pipe and plain.plan.low_memory is False
    clip = mg.generate("soft rain", model="tiny", **FAST)
    assert clip.model_info["plan"]["low_memory"] is False and _cached_pipelines() == 2
    # a task's own explicit option applies on top of the settings the model was loaded with
    mg.load_model("tiny", optimize=False)
    clip = mg.generate("soft rain", model="tiny", dtype="float32", **FAST)
    assert clip.model_info["plan"]["optimize"] is False


def test_unload_forgets_the_settings(fresh):
    from mgtoolkit.models.loading import unload

    mg.load_model("tiny", optimize=False)
    unload(forget=False)  # as the image chain makes room for its captioner: loaded again as before
    clip = mg.generate("soft rain", model="tiny", **FAST)
    assert clip.model_info["plan"]["optimize"] is False
    mg.unload()
    clip = mg.generate("soft rain", model="tiny", **FAST)
    assert clip.model_info["plan"]["optimize"] is True


def test_the_sidecar_records_the_plan(fresh, tmp_path):
    import json

    mg.load_model("tiny", low_memory=True)
    clip = mg.generate("soft rain", model="tiny", **FAST)
    sidecar = json.loads(clip.save(tmp_path / "rain.wav").with_suffix(".json").read_text())
    assert sidecar["model"]["plan"] == {
        "device": "cpu",
        "dtype": "float32",
        "optimize": True,
        "predictors": "off",
        "predictor_modules": [],
        "low_memory": True,
    }


# ---------------------------------------------------------------------------------------------
# The plan's table: every combination of the four switches and the machine facts, no paddle.
# ---------------------------------------------------------------------------------------------
GB = 1024**3
SWITCHES = {
    "MGTOOLKIT_OPTIMIZE": ("1", "0"),
    "MGTOOLKIT_COMPILE": ("auto", "0", "1", "unet,vae"),
    "MGTOOLKIT_LOW_MEMORY": ("auto", "1", "0"),
    "MGTOOLKIT_DTYPE": ("auto", "float32", "bfloat16"),
}
MACHINES = [
    (memory, bf16, gpu) for memory in (2 * GB, 32 * GB) for bf16 in (True, False) for gpu in (True, False)
]
CASES = [
    (opt, comp, low, dtype, machine)
    for opt in SWITCHES["MGTOOLKIT_OPTIMIZE"]
    for comp in SWITCHES["MGTOOLKIT_COMPILE"]
    for low in SWITCHES["MGTOOLKIT_LOW_MEMORY"]
    for dtype in SWITCHES["MGTOOLKIT_DTYPE"]
    for machine in MACHINES
]


def _expected(opt, comp, low, dtype, memory, bf16, gpu):
    """docs/configuration.md's rules, written out case by case: (device, dtype, predictors, modules,
    full_size_only, low_memory), or the field of the error."""
    if gpu:  # rule 2: the weights in the dtype asked (auto: float16); nothing CPU-only
        return ("gpu", "float16" if dtype == "auto" else dtype, "off", (), False, False)
    if dtype == "bfloat16" and not bf16:
        return "dtype"
    small = low == "1" or (low == "auto" and memory < 4 * GB)
    cpu = ("cpu", "float32")
    if dtype == "bfloat16":  # rule 4: bfloat16 is predictors, whatever else is asked
        return (*cpu, "bfloat16", ("unet", "vae", "vocoder"), False, small)
    if opt == "0" or small:  # rule 6: no speed-ups, or low-memory: no float32 predictors
        return (*cpu, "off", (), False, small)
    if comp == "0":
        return (*cpu, "off", (), False, False)
    if comp == "1":
        return (*cpu, "float32", ("vae", "vocoder"), False, False)
    if comp == "unet,vae":
        return (*cpu, "float32", ("unet", "vae"), False, False)
    if memory < 12 * GB:  # auto predictors need room
        return (*cpu, "off", (), False, False)
    if dtype == "auto" and bf16:  # rule 5: bfloat16 where it pays (the weights tell the size)
        return (*cpu, "bfloat16", ("unet", "vae", "vocoder"), True, False)
    return (*cpu, "float32", ("vae", "vocoder"), True, False)


@pytest.mark.parametrize(("opt", "comp", "low", "dtype", "machine"), CASES)
def test_the_plan_table(opt, comp, low, dtype, machine):
    from mgtoolkit.models.plan import LoadOptions, Machine, plan
    from mgtoolkit.models.registry import resolve_model

    memory, bf16, gpu = machine
    env = {
        "MGTOOLKIT_OPTIMIZE": opt,
        "MGTOOLKIT_COMPILE": comp,
        "MGTOOLKIT_LOW_MEMORY": low,
        "MGTOOLKIT_DTYPE": dtype,
    }
    options = LoadOptions().with_defaults(env)
    facts = Machine(memory_bytes=memory, bf16_cpu=bf16, gpu=gpu, cores=4)
    want = _expected(opt, comp, low, dtype, memory, bf16, gpu)
    spec = resolve_model("audioldm-s-full-v2")
    if isinstance(want, str):
        with pytest.raises(mg.InvalidInputError, match=f"^{want}="):
            plan(spec, options, facts)
        return
    got = plan(spec, options, facts)
    assert (got.device, got.dtype, got.predictors, got.modules, got.full_size_only, got.low_memory) == want
    assert got.optimize is (opt == "1")
    # the same switches as arguments (the environment only gives defaults) make the same plan
    explicit = LoadOptions(optimize=opt == "1", predictors=comp, low_memory=low, dtype=dtype)
    assert plan(spec, explicit.with_defaults({}), facts) == got


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"dtype": "float16", "device": "cpu"}, "dtype"),
        ({"dtype": "int8"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"device": "gpu"}, "device"),  # no GPU on the machine
        ({"low_memory": "sometimes"}, "low_memory"),
        ({"predictors": "encoder"}, "predictors"),
    ],
)
def test_bad_options_get_one_line_naming_the_field(options, field):
    from mgtoolkit.models.plan import LoadOptions, Machine, plan
    from mgtoolkit.models.registry import resolve_model

    with pytest.raises(mg.InvalidInputError, match=f"^{field}="):
        plan(resolve_model("tiny"), LoadOptions(**options).with_defaults({}), Machine(memory_bytes=8 * GB))


def test_a_small_model_and_the_settled_plan():
    from mgtoolkit.models.plan import LoadOptions, Machine, plan
    from mgtoolkit.models.registry import resolve_model

    big = Machine(memory_bytes=32 * GB, bf16_cpu=True)
    tiny = plan(resolve_model("tiny"), LoadOptions(device="cpu").with_defaults({}), big)
    assert (tiny.predictors, tiny.modules, tiny.run_dtype) == ("off", (), "float32")  # nothing to compile
    full = plan(resolve_model("audioldm-s-full-v2"), LoadOptions(device="cpu").with_defaults({}), big)
    assert full.run_dtype == "float32" and full.full_size_only  # the weights decide
    assert full.settled(True).run_dtype == "bfloat16" and full.settled(True).modules == (
        "unet",
        "vae",
        "vocoder",
    )
    assert full.settled(False).predictors == "off" and full.settled(False).modules == ()


def test_environment_variables_are_only_defaults():
    from mgtoolkit.models.plan import LoadOptions

    env = {"MGTOOLKIT_LOW_MEMORY": "1", "MGTOOLKIT_OPTIMIZE": "0", "MGTOOLKIT_DTYPE": "bfloat16"}
    got = LoadOptions(low_memory=False, dtype="float32").with_defaults(env)
    assert (got.low_memory, got.optimize, got.dtype) == (False, False, "float32")


def test_planning_imports_no_paddle():
    import subprocess
    import sys

    code = (
        "import sys; from mgtoolkit.models.plan import LoadOptions, Machine, plan;"
        "from mgtoolkit.models.registry import resolve_model;"
        "plan(resolve_model('tiny'), LoadOptions().with_defaults({}), Machine());"
        "plan(resolve_model('tiny'), LoadOptions(device='cpu').with_defaults(), Machine.detect(gpu=False));"
        "print(sorted(m for m in ('paddle', 'ppdiffusers', 'paddlenlp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_stub_lists_what_the_package_gives():
    """``mgtoolkit/__init__.pyi`` (what editors and type checkers see) names exactly the public
    names and submodules of ``mgtoolkit/__init__.py``, each from the module it is loaded from."""
    import ast
    from pathlib import Path

    stub = ast.parse((Path(mg.__file__).parent / "__init__.pyi").read_text(encoding="utf-8"))
    imported = {
        alias.asname or alias.name: (node.module or "", alias.name)
        for node in stub.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    declared = {node.target.id for node in stub.body if isinstance(node, ast.AnnAssign)}
    assert set(imported) | declared == set(mg.__all__) | set(mg._SUBMODULES) | {"__all__"}
    for name, module in mg._LAZY.items():
        assert "mgtoolkit." + imported[name][0] == module and imported[name][1] == name, name
    for name, module in mg._SUBMODULES.items():
        where, what = imported[name]
        assert ".".join(filter(None, ("mgtoolkit", where, what))) == module, name


@pytest.mark.slow  # seconds of whole tiny-pipeline runs or a child process (make test runs it)
def test_every_task_runs_on_the_model_loaded_before(fresh):
    """restyle, extend and audio_to_music take the name (its latest load) or the loaded model."""
    loaded = mg.load_model("tiny", low_memory=True)
    t = np.arange(16000) / 16000
    hum = (0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    steps = {"num_inference_steps": 2, "seed": 3}
    clips = [
        mg.restyle(hum, "jazz piano", strength=0.5, model="tiny", **steps),
        mg.restyle(hum, "jazz piano", strength=0.5, model=loaded, **steps),
        mg.extend(hum, 0.5, "piano", window_s=1.0, overlap_s=0.5, model=loaded, **steps),
        mg.audio_to_music(hum, writer="template", audio_length_in_s=1.0, model=loaded, **steps).clip,
    ]
    assert _cached_pipelines() == 1
    assert all(c.model_info["plan"]["low_memory"] is True and c.request.model == "tiny" for c in clips)
    np.testing.assert_array_equal(clips[0].waveform, clips[1].waveform)
