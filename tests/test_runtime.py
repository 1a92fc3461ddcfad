"""Thread and BLAS settings: filled in before paddle is imported, never over the user's own values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mgtoolkit import runtime


@pytest.fixture()
def no_paddle(monkeypatch):
    """Pretend paddle is not imported yet (configure_cpu_env does nothing once it is)."""
    monkeypatch.delitem(sys.modules, "paddle", raising=False)


def test_fills_in_threads_and_amd_mkl_path(no_paddle, monkeypatch):
    monkeypatch.setattr(runtime, "_cpu_vendor", lambda: "AuthenticAMD")
    env: dict[str, str] = {}
    applied = runtime.configure_cpu_env(env)
    assert env == applied
    assert int(env["OMP_NUM_THREADS"]) >= 1
    assert env["MKL_DEBUG_CPU_TYPE"] == "5"


def test_no_mkl_override_on_intel(no_paddle, monkeypatch):
    monkeypatch.setattr(runtime, "_cpu_vendor", lambda: "GenuineIntel")
    env: dict[str, str] = {}
    runtime.configure_cpu_env(env)
    assert "MKL_DEBUG_CPU_TYPE" not in env


def test_user_values_are_kept(no_paddle, monkeypatch):
    monkeypatch.setattr(runtime, "_cpu_vendor", lambda: "AuthenticAMD")
    env = {"OMP_NUM_THREADS": "1", "MKL_DEBUG_CPU_TYPE": "0"}
    assert runtime.configure_cpu_env(env) == {}
    assert env == {"OMP_NUM_THREADS": "1", "MKL_DEBUG_CPU_TYPE": "0"}


def test_opt_out(no_paddle):
    env = {"MGTOOLKIT_NO_THREAD_TUNING": "1"}
    assert runtime.configure_cpu_env(env) == {}
    assert env == {"MGTOOLKIT_NO_THREAD_TUNING": "1"}


def test_too_late_once_paddle_is_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "paddle", object())
    env: dict[str, str] = {}
    assert runtime.configure_cpu_env(env) == {}
    assert env == {}


def _env_after_import(extra: dict[str, str]) -> dict[str, str | None]:
    """OMP/MKL settings seen after ``import_paddle`` in a fresh interpreter."""
    code = (
        "import json, os; from mgtoolkit.runtime import import_paddle; import_paddle(); "
        "print(json.dumps({k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'MKL_DEBUG_CPU_TYPE')}))"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "MGTOOLKIT_NO_THREAD_TUNING")
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, **extra},
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_paddle_uses_every_core_unless_told():
    seen = _env_after_import({})
    assert seen["OMP_NUM_THREADS"] == str(len(os.sched_getaffinity(0)))
    assert _env_after_import({"OMP_NUM_THREADS": "1"})["OMP_NUM_THREADS"] == "1"


def test_optimiser_respects_the_thread_setting(monkeypatch):
    from mgtoolkit.accel import pieces as fast

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert fast.usable_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert fast.usable_cores() == len(os.sched_getaffinity(0))
