"""Where and how models run: device, dtype, thread settings. Imports paddle only when asked."""

from __future__ import annotations

import os
import sys
import threading
from functools import cache

from .config import flag, setting
from .errors import InvalidInputError

__all__ = [
    "configure_cpu_env",
    "cpu_has_bfloat16",
    "import_paddle",
    "quiet_model_logs",
    "pick_device",
    "pick_dtype",
]


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def configure_cpu_env(environ: dict | None = None) -> dict[str, str]:
    """Fill in CPU thread/BLAS settings that paddle would otherwise default badly.

    Paddle sets ``OMP_NUM_THREADS=1`` when it is unset, and its bundled MKL takes a slow
    non-AVX2 path on AMD CPUs. Before paddle is imported, this sets ``OMP_NUM_THREADS`` to the
    number of usable cores and, on AMD, ``MKL_DEBUG_CPU_TYPE=5``. Values the user already set are
    kept. Returns what it set. Setting ``MGTOOLKIT_NO_THREAD_TUNING=1`` turns it off.
    """
    env = os.environ if environ is None else environ
    if flag("MGTOOLKIT_NO_THREAD_TUNING", environ=env) or "paddle" in sys.modules:
        return {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = {"OMP_NUM_THREADS": str(cores)}
    if _cpu_vendor() == "AuthenticAMD":
        wanted["MKL_DEBUG_CPU_TYPE"] = "5"
    applied = {k: v for k, v in wanted.items() if k not in env}
    env.update(applied)
    return applied


def import_paddle():
    """Import paddle after :func:`configure_cpu_env`; the one place mgtoolkit imports it."""
    configure_cpu_env()
    os.environ.setdefault("GLOG_minloglevel", "2")
    quiet_third_party_warnings()
    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    import contextlib
    import io
    import warnings

    # paddle prints a data-parallel warning whenever OMP_NUM_THREADS > 1, and warns about ccache
    # and distutils at import: noise for notebook users. Anything else it prints is passed on.
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(ccache|distutils).*")
        import paddle
    kept = [
        line for line in captured.getvalue().splitlines() if "OMP_NUM_THREADS" not in line and line.strip()
    ]
    if kept:
        print("\n".join(kept), file=sys.stderr)
    return paddle


_THIRD_PARTY = r"(paddle|paddlenlp|ppdiffusers|_distutils_hack)(\.|$)"


def quiet_third_party_warnings() -> None:
    """Keep paddle's, paddlenlp's and ppdiffusers' warnings (deprecations in terminal colours,
    setuptools' distutils notice) out of notebooks and panels; mgtoolkit's own warnings still show.

    Only warnings raised from inside those packages are filtered; ``MGTOOLKIT_VERBOSE=1`` keeps them.
    """
    if flag("MGTOOLKIT_VERBOSE"):
        return
    import warnings

    warnings.filterwarnings("ignore", category=Warning, module=_THIRD_PARTY)


def quiet_model_logs() -> None:
    """Keep paddlenlp's and ppdiffusers' INFO chatter out of notebooks (``MGTOOLKIT_VERBOSE=1`` keeps it)."""
    if flag("MGTOOLKIT_VERBOSE"):
        return
    try:
        from paddlenlp.utils.log import logger

        logger.set_level("WARNING")
        from ppdiffusers.utils import logging as pp_logging

        pp_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - reported when the model itself is imported
        pass


@cache
def _gpu_available() -> bool:
    paddle = import_paddle()
    try:
        return bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)
    except Exception:  # noqa: BLE001 - a broken CUDA setup means: use the CPU
        return False


def pick_device(device: str | None = None, *, gpu: bool | None = None) -> str:
    """``"gpu"`` if paddle has CUDA and sees a GPU, else ``"cpu"``; or check the one asked for.

    ``$MGTOOLKIT_DEVICE`` overrides the automatic choice. ``gpu`` says whether there is a GPU
    (default: ask paddle, importing it, unless ``"cpu"`` is asked for).
    """
    if device is not None and not isinstance(device, str):
        raise InvalidInputError("device", device, "is not a device name", "use 'auto', 'cpu' or 'gpu'")
    wanted = (device or setting("MGTOOLKIT_DEVICE")).strip().lower()
    has_gpu = _gpu_available if gpu is None else (lambda: gpu)
    if wanted == "auto":
        return "gpu" if has_gpu() else "cpu"
    if wanted in ("cpu",):
        return "cpu"
    if wanted in ("gpu", "cuda") or wanted.startswith(("gpu:", "cuda:")):
        if not has_gpu():
            raise InvalidInputError(
                "device",
                device,
                "asks for a GPU but paddle sees none",
                "install the paddlepaddle-gpu build for your CUDA, or use device='cpu'",
            )
        return wanted.replace("cuda", "gpu")
    raise InvalidInputError("device", device, "is not a device name", "use 'auto', 'cpu' or 'gpu'")


def cpu_has_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes in bfloat16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def pick_dtype(device: str, dtype: str | None = None, *, bf16_cpu: bool | None = None) -> str:
    """float16 on GPU, float32 on CPU; or check the one asked for.

    ``bfloat16`` on a CPU needs AVX512_BF16 or AMX (``bf16_cpu``; default: read from
    ``/proc/cpuinfo``): it runs through oneDNN predictors (see :mod:`mgtoolkit.accel`). With no
    dtype asked for, :func:`mgtoolkit.load_model` may still run bfloat16 predictors where they pay
    (rule 5 of :func:`mgtoolkit.models.plan.plan`).
    """
    if dtype is None:
        return "float16" if device.startswith("gpu") else "float32"
    if dtype not in ("float32", "float16", "bfloat16"):
        raise InvalidInputError("dtype", dtype, "is not supported", "use 'float32', 'float16' or 'bfloat16'")
    if device == "cpu" and dtype == "float16":
        raise InvalidInputError(
            "dtype", dtype, "has no CPU kernels in paddle", "use dtype='float32' (or 'bfloat16') on the CPU"
        )
    if device == "cpu" and dtype == "bfloat16" and not (cpu_has_bfloat16() if bf16_cpu is None else bf16_cpu):
        raise InvalidInputError(
            "dtype",
            dtype,
            "needs a CPU with AVX512_BF16 or AMX, and this one has neither",
            "use dtype='float32' on this CPU",
        )
    return dtype


PIPELINE_LOCK = threading.RLock()
"""Held while a pipeline's modules run, so two threads never drive one UNet at once (the model
cache, low-memory mode's stage swaps and the tasks all take it)."""
