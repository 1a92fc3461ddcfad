"""Where the oneDNN predictors run and in which precision: the machine facts, the environment and
the model's size decide (no predictor is built here but in the last test, on the tiny model).

No timings here.
"""

from __future__ import annotations

import pytest
from test_speed_equivalence import _plain_pipe

pytestmark = pytest.mark.filterwarnings("ignore")
ALL = ("unet", "vae", "vocoder")
needs_bf16 = pytest.mark.skipif(
    not __import__("mgtoolkit.runtime", fromlist=["x"]).cpu_has_bfloat16(), reason="no AVX512_BF16/AMX"
)


@pytest.fixture(scope="module")
def paddle():
    from mgtoolkit.runtime import import_paddle

    return import_paddle()


def _engines(pipe):
    return pipe._mgtoolkit_engines


def test_auto_leaves_small_models_small_machines_and_gpus_alone(tmp_path, monkeypatch):
    from mgtoolkit.accel import onednn as mod

    pipe = _plain_pipe()
    assert sum(int(p.numel()) for p in pipe.unet.parameters()) < mod.AUTO_MIN_PARAMS
    assert mod.compile_pipeline(pipe, "cpu", modules=("auto",), cache=tmp_path) == []
    monkeypatch.setattr(mod, "AUTO_MIN_PARAMS", 0)
    monkeypatch.setattr(mod, "memory_limit_bytes", lambda: 4 * 1024**3)  # a 4 GB Binder-like box
    assert mod.compile_pipeline(pipe, "cpu", modules=("auto",), cache=tmp_path) == []
    assert mod.compile_pipeline(pipe, "gpu:0", modules=ALL, cache=tmp_path) == []
    assert mod.compile_pipeline(pipe, "cpu", modules=(), cache=tmp_path) == []
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(mod, "memory_limit_bytes", lambda: 64 * 1024**3)
    assert mod.compile_pipeline(pipe, "cpu", modules=("auto",), cache=tmp_path) == ["vae", "vocoder"]


@pytest.mark.parametrize(
    ("value", "modules"),
    [
        (None, ("auto",)),
        ("auto", ("auto",)),
        ("0", ()),
        ("off", ()),
        ("Yes", ("vae", "vocoder")),
        ("1", ("vae", "vocoder")),
        ("unet, vocoder", ("unet", "vocoder")),
    ],
)
def test_compile_mode_reads_the_environment(value, modules):
    from mgtoolkit.accel.onednn import compile_mode

    assert compile_mode({} if value is None else {"MGTOOLKIT_COMPILE": value}) == modules


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        (None, None, 16 * 1024**3),  # no cgroup: the machine's memory
        ("max", None, 16 * 1024**3),  # cgroup v2 without a limit
        (str(2 * 1024**3), None, 2 * 1024**3),  # cgroup v2 limit (Binder)
        (None, str(2**31), 2**31),  # cgroup v1 limit
        (None, str(2**63 - 4096), 16 * 1024**3),  # cgroup v1 "no limit"
    ],
)
def test_memory_limit_is_the_lowest_of_machine_and_cgroup(tmp_path, v2, v1, expected):
    from mgtoolkit.accel.onednn import memory_limit_bytes

    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       {16 * 1024**2} kB\nMemFree:         1000 kB\n")
    paths = []
    for name, value in (("memory.max", v2), ("memory.limit_in_bytes", v1)):
        path = tmp_path / name
        if value is not None:
            path.write_text(value + "\n")
        paths.append(str(path))
    assert memory_limit_bytes(meminfo=str(meminfo), cgroup_files=tuple(paths)) == expected


def test_memory_limit_is_read_on_this_machine():
    from mgtoolkit.accel.onednn import memory_limit_bytes

    with open("/proc/meminfo") as fh:
        total = int(next(line for line in fh if line.startswith("MemTotal:")).split()[1]) * 1024
    limit = memory_limit_bytes()
    assert limit is not None and 256 * 1024**2 < limit <= total


@pytest.mark.parametrize(
    ("device", "dtype", "bf16", "expected"),
    [
        ("cpu", None, True, "float32"),  # float32 stays the CPU default (bfloat16 not measured quietly)
        ("cpu", "bfloat16", True, "bfloat16"),
        ("cpu", "float32", False, "float32"),
        ("gpu:0", None, False, "float16"),
    ],
)
def test_pick_dtype_allows_bfloat16_on_cpus_that_have_it(device, dtype, bf16, expected):
    from mgtoolkit.runtime import pick_dtype

    assert pick_dtype(device, dtype, bf16_cpu=bf16) == expected


@pytest.mark.parametrize(
    ("dtype", "bf16", "problem"), [("bfloat16", False, "AVX512_BF16"), ("float16", True, "CPU")]
)
def test_pick_dtype_refuses_what_the_cpu_cannot_do(dtype, bf16, problem):
    from mgtoolkit.errors import InvalidInputError
    from mgtoolkit.runtime import pick_dtype

    with pytest.raises(InvalidInputError, match=f"dtype='{dtype}'.*{problem}"):
        pick_dtype("cpu", dtype, bf16_cpu=bf16)


def test_cpu_flags_are_read(tmp_path):
    from mgtoolkit.runtime import cpu_has_bfloat16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_bfloat16(str(info)) is True
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_bfloat16(str(info)) is False
    assert cpu_has_bfloat16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize(
    ("params", "memory_gb", "bf16_cpu", "compile_env", "expected"),
    [
        (185_000_000, 24, True, "auto", "bfloat16"),  # the full-size model on this kind of machine
        (185_000_000, 24, False, "auto", "float32"),  # no AVX512_BF16/AMX
        (185_000_000, 8, True, "auto", "float32"),  # too little memory for the predictors
        (1_000, 24, True, "auto", "float32"),  # a tiny model
        (185_000_000, 24, True, "0", "float32"),  # MGTOOLKIT_COMPILE=0
        (185_000_000, 24, True, "vae", "float32"),  # a chosen set of float32 predictors
    ],
)
def test_auto_precision_picks_bfloat16_only_where_it_pays(
    monkeypatch, params, memory_gb, bf16_cpu, compile_env, expected
):
    from mgtoolkit.accel import onednn as mod

    monkeypatch.setattr(mod, "_count", lambda module: params)
    monkeypatch.setattr(mod, "memory_limit_bytes", lambda: memory_gb * 1024**3)
    monkeypatch.setenv("MGTOOLKIT_COMPILE", compile_env)
    pipe = type("Pipe", (), {"unet": object()})()
    assert mod.auto_precision(pipe, bf16_cpu=bf16_cpu) == expected


@pytest.mark.parametrize(
    ("model", "dtype", "env", "optimize", "low_memory", "possible", "expected"),
    [
        ("full", None, None, True, False, True, "auto"),  # decided once the model is loaded
        ("full", None, "auto", True, False, True, "auto"),
        ("full", None, "float32", True, False, True, "float32"),  # MGTOOLKIT_DTYPE=float32
        ("full", "float32", None, True, False, True, "float32"),
        ("full", "bfloat16", None, True, False, True, "bfloat16"),
        ("full", None, None, True, False, False, "float32"),  # the machine rules bfloat16 out
        ("full", None, None, True, True, True, "float32"),  # low-memory mode: no predictors
        ("full", None, None, False, False, True, "float32"),  # speed-ups off
        ("tiny", None, None, True, False, True, "float32"),  # known small: the float32 cache entry
    ],
)
def test_cpu_precision_is_decided_before_loading_where_it_can_be(
    monkeypatch, model, dtype, env, optimize, low_memory, possible, expected
):
    from mgtoolkit.accel import onednn as mod
    from mgtoolkit.models.registry import resolve_model
    from mgtoolkit.tasks.text import cpu_precision

    monkeypatch.setattr(mod, "bfloat16_possible", lambda **kw: possible)
    monkeypatch.setattr("mgtoolkit.runtime.cpu_has_bfloat16", lambda *a: True)
    if env is None:
        monkeypatch.delenv("MGTOOLKIT_DTYPE", raising=False)
    else:
        monkeypatch.setenv("MGTOOLKIT_DTYPE", env)
    spec = resolve_model("tiny" if model == "tiny" else "audioldm-s-full-v2")
    assert cpu_precision(spec, dtype, optimize=optimize, low_memory=low_memory) == expected


@pytest.mark.slow
@needs_bf16
def test_optimize_auto_runs_bfloat16_predictors_where_they_pay(paddle, monkeypatch, tmp_path):
    from mgtoolkit import accel
    from mgtoolkit.accel import onednn as mod

    small = _plain_pipe()
    assert accel.optimize(small, "cpu", precision="auto")["precision"] == "float32"  # the tiny UNet
    monkeypatch.setattr(mod, "AUTO_MIN_PARAMS", 0)  # the tiny model stands for a full-size one
    monkeypatch.setattr(mod, "memory_limit_bytes", lambda: 64 * 1024**3)
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    pipe = _plain_pipe()
    report = accel.optimize(pipe, "cpu", precision="auto")
    assert report["precision"] == "bfloat16"
    assert {name: e.precision for name, e in _engines(pipe).items()} == dict.fromkeys(ALL, "bfloat16")
    monkeypatch.setattr(mod, "memory_limit_bytes", lambda: 8 * 1024**3)  # too small for predictors
    assert accel.optimize(_plain_pipe(), "cpu", precision="auto")["precision"] == "float32"
