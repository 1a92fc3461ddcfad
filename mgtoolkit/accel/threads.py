"""CPU speed-ups applied once to a loaded AudioLDM pipeline, none of which changes what it makes.

Paddle's CPU kernels are mostly single-threaded: only the BLAS matrix multiplies inside them use
every core, so on a 2-core machine a second thread gains paddle only 1.3-1.4× per stage (UNet step
1.8 → 1.3 s, VAE 5.9 → 4.2 s, vocoder 9.1 → 7.1 s in the project's PERF_NOTES).
:func:`split_threads` gets the cores back with data parallelism over Python threads (paddle releases the
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
Called through :func:`mgtoolkit.accel.optimize` (or ``model.enable_threads()``); each split is a
hook in the pipeline's :class:`~.hooks.HookRegistry` (``threads/<module>``, innermost of the
speed-ups) that :func:`undo_split` takes off again. GPUs are left untouched.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .hooks import SPLIT, HookRegistry, ModelHook
from .pieces import blas_on_all_cores, chunks, stitch, time_windows, usable_cores, vocoder_receptive_frames

__all__ = ["split_threads", "undo_split", "FEATURE"]

FEATURE = "threads"
"""The split's name in the pipeline's :class:`~.hooks.HookRegistry` (its hooks: ``threads/<module>``)."""


def split_threads(pipe: Any, *, workers: int | None = None) -> list[str]:
    """Split the UNet, VAE decoder and vocoder work of ``pipe`` over ``workers`` threads, in place.

    Parameters
    ----------
    pipe : AudioLDMPipeline or MusicLDMPipeline
        A loaded pipeline on the CPU (its ``unet``, ``vae`` and ``vocoder`` are wrapped if present).
    workers : int, optional
        Threads to split work over; default :func:`~mgtoolkit.accel.pieces.usable_cores`. Fewer
        than two does nothing.

    Returns
    -------
    list of str
        What was wrapped, e.g. ``["unet: batch/time split over 2 threads", ...]``. A pipeline that is
        already split is left as it is (its earlier list is returned).

    The threads belong to the pipeline: :func:`undo_split` (or the pipeline being freed) stops them.
    """
    registry = HookRegistry.of(pipe)
    if FEATURE in registry.applied:  # splitting twice would split work that is already split
        return registry.applied[FEATURE]
    workers = usable_cores() if workers is None else int(workers)
    applied: list[str] = []
    if workers > 1:
        blas_on_all_cores()  # as every split call leaves it: the first call like the next
        pool = ThreadPoolExecutor(workers, thread_name_prefix="mgtoolkit-cpu")
        weakref.finalize(pipe, pool.shutdown, wait=False)
        for name, make in (("unet", UnetSplit), ("vae", VaeSplit), ("vocoder", VocoderSplit.for_vocoder)):
            module = getattr(pipe, name, None)
            hook = make(module, pool, workers) if module is not None else None
            if hook is not None:
                registry.register_hook(hook, f"{FEATURE}/{name}", module, hook.attr)
                applied.append(f"{name}: batch/time split over {workers} threads")
    registry.applied[FEATURE] = applied
    return applied


def undo_split(pipe: Any) -> None:
    """Give the modules their own ``forward``/``decode`` back and stop the pipeline's threads."""
    registry = HookRegistry.of(pipe)
    pools = {id(h.pool): h.pool for n in registry.names(f"{FEATURE}/") if (h := registry.get_hook(n))}
    registry.remove_hooks(f"{FEATURE}/")
    for pool in pools.values():
        pool.shutdown(wait=False)
    registry.applied.pop(FEATURE, None)


class _Split(ModelHook):
    """A module's call run in pieces on ``pool``'s ``workers`` threads."""

    order = SPLIT
    attr = "forward"

    def __init__(self, module: Any, pool: ThreadPoolExecutor, workers: int) -> None:
        self.pool, self.workers = pool, workers


# ---------------------------------------------------------------------------------------------
# Running pieces side by side.
# ---------------------------------------------------------------------------------------------
def _side_by_side(tasks: list[Callable[[], Any]], pool: ThreadPoolExecutor) -> list[Any]:
    """Run ``tasks`` on ``workers`` threads with one BLAS/OpenMP thread each; results in order."""
    import paddle
    from paddle.base import core

    grad = paddle.is_grad_enabled()  # thread-local in paddle: carry the caller's no_grad over

    def one_thread(task: Callable[[], Any]) -> Any:
        core.set_num_threads(1)
        with paddle.set_grad_enabled(grad):
            return task()

    try:
        return list(pool.map(one_thread, tasks))
    finally:
        blas_on_all_cores()


# ---------------------------------------------------------------------------------------------
# UNet: split the batch (the classifier-free-guidance pair, or the candidates), side by side.
# This section is one unit: UnetSplit and the helpers under it.
# ---------------------------------------------------------------------------------------------
_UNET_BATCHED = ("encoder_hidden_states", "class_labels")


class UnetSplit(_Split):
    """The UNet's batch in pieces: the guidance pair's conditional and unconditional halves (or the
    candidates) run side by side, one piece per thread, and are joined back in order."""

    def new_forward(self, forward: Callable[..., Any], sample, timestep, *args, **kwargs):
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
            for lo, hi in chunks(batch, self.workers)
        ]
        return _join_unet(_side_by_side(tasks, self.pool), return_dict)


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
class VaeSplit(_Split):
    """The VAE decoder's batch in pieces, side by side."""

    attr = "decode"

    def new_forward(self, original: Callable[..., Any], z, return_dict: bool = True, *args, **kwargs):
        batch = int(z.shape[0])
        if args or kwargs or batch < 2:
            return original(z, return_dict, *args, **kwargs)
        import paddle

        tasks = [
            (lambda lo=lo, hi=hi: original(z[lo:hi], return_dict=True))
            for lo, hi in chunks(batch, self.workers)
        ]
        outputs = _side_by_side(tasks, self.pool)
        sample = paddle.concat([out.sample for out in outputs], axis=0)
        return type(outputs[0])(sample=sample) if return_dict else (sample,)


# ---------------------------------------------------------------------------------------------
# Vocoder: split the batch, or one spectrogram along time with overlap.
# ---------------------------------------------------------------------------------------------
class VocoderSplit(_Split):
    """The HiFi-GAN vocoder's batch in pieces, or one long spectrogram in overlapping time pieces."""

    def __init__(self, module: Any, pool: ThreadPoolExecutor, workers: int, *, hop: int, margin: int) -> None:
        super().__init__(module, pool, workers)
        self.hop, self.margin = hop, margin

    @classmethod
    def for_vocoder(cls, vocoder: Any, pool: ThreadPoolExecutor, workers: int) -> VocoderSplit | None:
        """The split for ``vocoder``, or ``None`` if it is not a HiFi-GAN (it is then left alone)."""
        config = vocoder.config
        try:
            hop = int(math.prod(config.upsample_rates))
            margin = vocoder_receptive_frames(config)
        except (AttributeError, TypeError):
            return None
        return cls(vocoder, pool, workers, hop=hop, margin=margin)

    def new_forward(self, forward: Callable[..., Any], spectrogram):
        if spectrogram.ndim != 3:
            return forward(spectrogram)
        batch, frames = int(spectrogram.shape[0]), int(spectrogram.shape[1])
        if batch >= 2:
            return _vocode_batch(forward, spectrogram, self.pool, self.workers)
        if frames >= 4 * self.margin * self.workers:
            return _vocode_time(forward, spectrogram, self.pool, self.workers, self.margin, self.hop)
        return forward(spectrogram)


def _vocode_batch(forward, spectrogram, pool: ThreadPoolExecutor, workers: int):
    import paddle

    tasks = [
        (lambda lo=lo, hi=hi: forward(spectrogram[lo:hi]))
        for lo, hi in chunks(int(spectrogram.shape[0]), workers)
    ]
    return paddle.concat(_side_by_side(tasks, pool), axis=0)


def _vocode_time(forward, spectrogram, pool: ThreadPoolExecutor, workers: int, margin: int, hop: int):
    """Vocode overlapping time pieces side by side and keep each piece's own samples."""
    windows = time_windows(int(spectrogram.shape[1]), workers, margin)
    tasks = [(lambda a=a, b=b: forward(spectrogram[:, a:b])) for _, _, a, b in windows]
    return stitch(_side_by_side(tasks, pool), windows, hop)
