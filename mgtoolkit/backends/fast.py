"""CPU speed-ups applied once to a loaded AudioLDM pipeline, none of which changes what it makes.

Paddle's CPU kernels are mostly single-threaded: only the BLAS matrix multiplies inside them use
every core, so on a 2-core machine a second thread gains paddle only 1.3-1.4× per stage (UNet step
1.8 → 1.3 s, VAE 5.9 → 4.2 s, vocoder 9.1 → 7.1 s in the project's PERF_NOTES).
:func:`optimize` gets the cores back with data parallelism over Python threads (paddle releases the
GIL inside its kernels), each thread running its share with one BLAS thread:

- the UNet runs the halves of its batch (the classifier-free-guidance pair, or the candidates)
  side by side;
- the HiFi-GAN vocoder splits a batch the same way, and a single mel spectrogram into overlapping
  pieces along time: every output sample depends only on a window of mel frames (its receptive
  field, computed from the config), so pieces that overlap by more than that window and are cropped
  give the same samples as one long run;
- the VAE decoder splits only a batch (its group norms and attention see the whole spectrogram).

Each output is computed from the same inputs by the same kernels, so results equal the plain
pipeline's to float rounding (a different GEMM blocking changes the summation order, ~1e-6 relative).
GPUs are left untouched. ``MGTOOLKIT_OPTIMIZE=0`` turns all of it off (checked by the loader).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["optimize", "enabled", "usable_cores", "vocoder_receptive_frames", "time_windows", "stitch"]

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def enabled(environ: dict | None = None) -> bool:
    """False when ``MGTOOLKIT_OPTIMIZE`` is ``0``/``false``/``no``/``off``."""
    value = (environ if environ is not None else os.environ).get("MGTOOLKIT_OPTIMIZE", "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


def usable_cores() -> int:
    """Cores this process may run on (``OMP_NUM_THREADS`` caps it when set)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", cores))
    except ValueError:
        cap = cores
    return max(1, min(cores, cap))


def optimize(pipe: Any, device: str, *, workers: int | None = None) -> dict[str, Any]:
    """Apply the CPU speed-ups to ``pipe`` in place; return what was applied.

    Parameters
    ----------
    pipe : AudioLDMPipeline
        A loaded pipeline (its ``unet``, ``vae`` and ``vocoder`` are patched if present).
    device : str
        ``"cpu"`` or a GPU name; nothing is done off the CPU.
    workers : int, optional
        Threads to split work over; default :func:`usable_cores`.

    Returns
    -------
    dict
        ``{"device", "workers", "applied": [...]}``, also stored as ``pipe._mgtoolkit_optimizations``.
    """
    done = getattr(pipe, "_mgtoolkit_optimizations", None)
    if done:  # once per pipeline: patching twice would split work that is already split
        return done
    workers = usable_cores() if workers is None else workers
    report: dict[str, Any] = {"device": device, "workers": workers, "applied": []}
    if device == "cpu" and workers > 1:
        for name, patch in (("unet", _patch_unet), ("vae", _patch_vae), ("vocoder", _patch_vocoder)):
            module = getattr(pipe, name, None)
            if module is not None and patch(module, workers):
                report["applied"].append(f"{name}: batch/time split over {workers} threads")
    if device == "cpu":
        from .compiled import compile_pipeline

        for name in compile_pipeline(pipe, device):  # wraps the patches above, kept as the fallback
            report["applied"].append(f"{name}: oneDNN inference predictor, verified on first use")
        give_back_free_memory()
    pipe._mgtoolkit_optimizations = report
    return report


def give_back_free_memory() -> None:
    """Return the heap pages freed while loading to the system (glibc only; else nothing)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is not None:
        trim(0)


# ---------------------------------------------------------------------------------------------
# Running pieces side by side.
# ---------------------------------------------------------------------------------------------
def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mgtoolkit-cpu")
        return _POOLS[workers]


def _side_by_side(tasks: list[Callable[[], Any]], workers: int) -> list[Any]:
    """Run ``tasks`` on ``workers`` threads with one BLAS/OpenMP thread each; results in order."""
    import paddle
    from paddle.base import core

    grad = paddle.is_grad_enabled()  # thread-local in paddle: carry the caller's no_grad over

    def one_thread(task: Callable[[], Any]) -> Any:
        core.set_num_threads(1)
        with paddle.set_grad_enabled(grad):
            return task()

    try:
        return list(_pool(workers).map(one_thread, tasks))
    finally:
        core.set_num_threads(usable_cores())


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (start, stop) ranges covering ``range(n)`` as evenly as possible."""
    parts = max(1, min(parts, n))
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _replace_forward(module: Any, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Swap ``module.forward`` for ``make(original_forward)`` (hooks on the module still fire)."""
    original = module.forward
    module.forward = make(original)
    module._mgtoolkit_original_forward = original


# ---------------------------------------------------------------------------------------------
# UNet: split the batch.
# ---------------------------------------------------------------------------------------------
_UNET_BATCHED = ("encoder_hidden_states", "class_labels")


def _patch_unet(unet: Any, workers: int) -> bool:
    def make(forward: Callable[..., Any]) -> Callable[..., Any]:
        def split_forward(sample, timestep, *args, **kwargs):
            batch = int(sample.shape[0])
            if (
                args
                or batch < 2
                or not _only_known(kwargs, _UNET_BATCHED + ("return_dict", "cross_attention_kwargs"))
            ):
                return forward(sample, timestep, *args, **kwargs)
            return_dict = kwargs.pop("return_dict", True)
            tasks = [
                _unet_task(forward, sample, timestep, kwargs, batch, lo, hi)
                for lo, hi in _chunks(batch, workers)
            ]
            return _join_unet(_side_by_side(tasks, workers), return_dict)

        return split_forward

    _replace_forward(unet, make)
    return True


def _only_known(kwargs: dict[str, Any], known: tuple[str, ...]) -> bool:
    return all(k in known or v is None for k, v in kwargs.items())


def _unet_task(forward, sample, timestep, kwargs, batch, lo, hi):
    def cut(value):
        shape = getattr(value, "shape", None)
        return value[lo:hi] if shape and int(shape[0]) == batch else value

    piece = {k: cut(v) for k, v in kwargs.items()}
    return lambda: forward(cut(sample), cut(timestep), return_dict=True, **piece)


def _join_unet(outputs: list[Any], return_dict: bool):
    """One output like the pieces' (``UNet2DConditionOutput``), or a tuple."""
    import paddle

    sample = paddle.concat([out.sample for out in outputs], axis=0)
    return type(outputs[0])(sample=sample) if return_dict else (sample,)


# ---------------------------------------------------------------------------------------------
# VAE decoder: split the batch.
# ---------------------------------------------------------------------------------------------
def _patch_vae(vae: Any, workers: int) -> bool:
    original = vae.decode

    def decode(z, return_dict: bool = True, *args, **kwargs):
        batch = int(z.shape[0])
        if args or kwargs or batch < 2:
            return original(z, return_dict, *args, **kwargs)
        import paddle

        tasks = [
            (lambda lo=lo, hi=hi: original(z[lo:hi], return_dict=True)) for lo, hi in _chunks(batch, workers)
        ]
        outputs = _side_by_side(tasks, workers)
        sample = paddle.concat([out.sample for out in outputs], axis=0)
        return type(outputs[0])(sample=sample) if return_dict else (sample,)

    vae.decode = decode
    return True


# ---------------------------------------------------------------------------------------------
# Vocoder: split the batch, or one spectrogram along time with overlap.
# ---------------------------------------------------------------------------------------------
def vocoder_receptive_frames(config: Any) -> int:
    """Mel frames on either side that can reach one output sample of the HiFi-GAN vocoder.

    Every convolution is "same"-padded, so the reach of each layer is half its (dilated) kernel,
    counted at that layer's sample rate and divided back to mel frames; the sum over layers, rounded
    up, bounds how far one output sample looks. A few frames are added for safety.
    """
    reach = (7 - 1) / 2  # conv_pre, kernel 7, at the frame rate
    rate = 1
    kernels, dilations = config.resblock_kernel_sizes, config.resblock_dilation_sizes
    for up, up_kernel in zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True):
        reach += up_kernel / rate  # transposed conv: at most its kernel, in input samples
        rate *= up
        block = max(
            sum((k - 1) // 2 * (d + 1) for d in dil) for k, dil in zip(kernels, dilations, strict=True)
        )
        reach += block / rate
    reach += (7 - 1) / 2 / rate  # conv_post
    return int(math.ceil(reach)) + 4


def _patch_vocoder(vocoder: Any, workers: int) -> bool:
    config = vocoder.config
    try:
        hop = int(math.prod(config.upsample_rates))
        margin = vocoder_receptive_frames(config)
    except (AttributeError, TypeError):  # not a HiFi-GAN: leave it alone
        return False

    def make(forward: Callable[..., Any]) -> Callable[..., Any]:
        def split_forward(spectrogram):
            if spectrogram.ndim != 3:
                return forward(spectrogram)
            batch, frames = int(spectrogram.shape[0]), int(spectrogram.shape[1])
            if batch >= 2:
                return _vocode_batch(forward, spectrogram, workers)
            if frames >= 4 * margin * workers:
                return _vocode_time(forward, spectrogram, workers, margin, hop)
            return forward(spectrogram)

        return split_forward

    _replace_forward(vocoder, make)
    return True


def _vocode_batch(forward, spectrogram, workers: int):
    import paddle

    tasks = [
        (lambda lo=lo, hi=hi: forward(spectrogram[lo:hi]))
        for lo, hi in _chunks(int(spectrogram.shape[0]), workers)
    ]
    return paddle.concat(_side_by_side(tasks, workers), axis=0)


def _vocode_time(forward, spectrogram, workers: int, margin: int, hop: int):
    """Vocode overlapping time pieces side by side and keep each piece's own samples."""
    windows = time_windows(int(spectrogram.shape[1]), workers, margin)
    tasks = [(lambda a=a, b=b: forward(spectrogram[:, a:b])) for _, _, a, b in windows]
    return stitch(_side_by_side(tasks, workers), windows, hop)


def time_windows(frames: int, parts: int, margin: int) -> list[tuple[int, int, int, int]]:
    """``(lo, hi, a, b)`` per piece: frames ``lo:hi`` are its own, ``a:b`` what it is given."""
    return [(lo, hi, max(0, lo - margin), min(frames, hi + margin)) for lo, hi in _chunks(frames, parts)]


def stitch(waves: list, windows: list[tuple[int, int, int, int]], hop: int):
    """Join the vocoded windows, keeping from each only the samples of its own frames."""
    import paddle

    frames = windows[-1][1]
    kept = []
    for (lo, hi, a, _), wave in zip(windows, waves, strict=True):
        start = (lo - a) * hop
        stop = None if hi == frames else (hi - a) * hop  # the last piece keeps the tail past the frames
        kept.append(wave[:, start:stop])
    return paddle.concat(kept, axis=1)
