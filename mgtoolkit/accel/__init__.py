"""Speed-ups for a loaded pipeline, as one explicit call that keeps every output.

:func:`optimize` is what :func:`mgtoolkit.load_model` calls, with the settings its plan decided
(:func:`mgtoolkit.models.plan.plan`; the table of ``MGTOOLKIT_*`` variables is in
``docs/configuration.md``); a user can call it on any ppdiffusers AudioLDM/MusicLDM pipeline, or
load with ``optimize=False`` for the plain pipeline. On a CPU:

- :mod:`.threads` splits the UNet's guidance pair or candidates, the VAE's batch and the vocoder's
  batch or time over the cores;
- :mod:`.onednn` runs the VAE decoder and the vocoder (and, on request, the UNet) as verified
  oneDNN inference predictors (:mod:`.predictor`, exported by :mod:`.export`) on machines with
  room; their dygraph weights wait in the file they were loaded from (:mod:`.stash`), read back if
  a predictor fails later (the module then runs in dygraph);
- ``precision="bfloat16"`` runs the UNet, VAE decoder and vocoder predictors with oneDNN's
  bfloat16 kernels (CPUs with AVX512_BF16 or AMX; each verified within 1e-2 relative L2);
- with predictors on, :mod:`.idle` keeps the text encoder's weights in their file while the
  UNet runs (read back when called: the same waveform, bit for bit);
- :mod:`.lowmem` (``low_memory=True``, automatic under 4 GB) keeps only the running stage's
  weights in memory (:mod:`.swap`) and builds no float32 predictors.

Each speed-up wraps module calls as hooks in the pipeline's one :class:`~.hooks.HookRegistry`, in
a fixed order (thread split innermost, then predictors, then low-memory mode's stage swap), and
each comes off again: :func:`undo` for all of them, or one by one through the loaded model
(``model.disable_threads()``, ``disable_predictors()``, ``disable_low_memory()``), after which the
pipeline computes exactly what it computed without that speed-up.

GPUs are left as they are.
"""

from __future__ import annotations

from typing import Any

from ..config import flag

__all__ = ["optimize", "undo", "enabled", "applied"]


def enabled() -> bool:
    """The default of ``optimize``: ``False`` when ``MGTOOLKIT_OPTIMIZE`` is ``0``/``off``."""
    return flag("MGTOOLKIT_OPTIMIZE")


def optimize(
    pipe: Any,
    device: str = "cpu",
    *,
    threads: int | None = None,
    onednn: tuple[str, ...] | str | None = None,
    precision: str = "float32",
    low_memory: bool = False,
) -> dict[str, Any]:
    """Apply the CPU speed-ups to ``pipe`` in place; return what was applied.

    Parameters
    ----------
    pipe : AudioLDMPipeline or MusicLDMPipeline
        A loaded pipeline.
    device : str
        ``"cpu"`` or a GPU name; nothing is done off the CPU.
    threads : int, optional
        Threads to split work over (``1`` turns the split off); default: the usable cores.
    onednn : str or tuple of str, optional
        Modules to run as oneDNN predictors: any of ``"unet"``, ``"vae"``, ``"vocoder"``, ``"auto"``
        (full-size models on machines with room) or ``()``; default ``$MGTOOLKIT_COMPILE`` (``auto``),
        all three with ``precision="bfloat16"``, none in low-memory mode.
    precision : {"float32", "bfloat16", "auto"}
        The predictors' arithmetic (``bfloat16``: CPUs with AVX512_BF16 or AMX; dygraph modules
        stay float32: paddle has no bfloat16 CPU kernels for all their layers). ``auto``:
        :func:`.onednn.auto_precision` (bfloat16 where it pays, float32 elsewhere); the report
        says which.
    low_memory : bool
        Keep only the running stage's weights in memory (:func:`.lowmem.enable`); same output.

    Returns
    -------
    dict
        ``{"device", "workers", "precision", "low_memory", "predictors": [...], "applied": [...]}``
        (``predictors``: the modules routed through oneDNN predictors), also kept as
        ``pipe._mgtoolkit_optimizations``; a second call returns the first call's report and
        changes nothing.
    """
    from .onednn import auto_precision, compile_mode, compile_pipeline
    from .pieces import give_back_free_memory, usable_cores

    done = getattr(pipe, "_mgtoolkit_optimizations", None)
    if done:
        return done
    if precision == "auto":
        cpu_auto = device == "cpu" and not low_memory and onednn is None and threads != 1
        precision = auto_precision(pipe) if cpu_auto else "float32"
    workers = usable_cores() if threads is None else int(threads)
    report: dict[str, Any] = {"device": device, "workers": workers, "precision": precision}
    if device == "cpu":
        from .threads import split_threads

        split_threads(pipe, workers=workers)
        if onednn is None:
            onednn = (
                ("unet", "vae", "vocoder")
                if precision == "bfloat16"
                else ()
                if low_memory
                else compile_mode()
            )
        modules = (onednn,) if isinstance(onednn, str) else tuple(onednn)
        # wraps the thread split, which stays as the fallback
        compile_pipeline(pipe, device, modules=modules, precision=precision)
        if low_memory:
            from .lowmem import enable

            enable(pipe)
        elif getattr(pipe, "_mgtoolkit_engines", None):
            from . import idle

            idle.enable(pipe, getattr(pipe, "name_or_path", None))
        give_back_free_memory()
    report.update(applied(pipe))
    pipe._mgtoolkit_optimizations = report
    return report


def applied(pipe: Any) -> dict[str, Any]:
    """What runs on ``pipe`` now: ``{"low_memory", "predictors", "applied"}`` (see :func:`optimize`),
    read from its hook registry."""
    from .hooks import HookRegistry
    from .idle import FEATURE as IDLE
    from .lowmem import FEATURE as LOW_MEMORY
    from .lowmem import is_on
    from .onednn import FEATURE as PREDICTORS
    from .threads import FEATURE as THREADS

    registry = getattr(pipe, "_mgtoolkit_hooks", None) or HookRegistry()
    lines = [line for f in (THREADS, PREDICTORS, IDLE, LOW_MEMORY) for line in registry.applied.get(f, [])]
    predictors = sorted(getattr(pipe, "_mgtoolkit_engines", None) or {})
    return {"low_memory": is_on(pipe), "predictors": predictors, "applied": lines}


def undo(pipe: Any) -> None:
    """Give ``pipe`` back its plain modules: every hook off (low-memory swaps, predictors, the
    thread split) and the threads stopped; the modules compute exactly what they did before.

    Modules that ran as oneDNN predictors read their dygraph weights back and run in dygraph.

    Raises
    ------
    RuntimeError
        If a predictor's weights file is gone from the cache: load the model again instead.
    """
    from . import idle
    from .lowmem import disable
    from .onednn import remove_predictors
    from .threads import undo_split

    idle.disable(pipe)
    disable(pipe)
    remove_predictors(pipe, "undo() was called")
    undo_split(pipe)
    if hasattr(pipe, "_mgtoolkit_optimizations"):
        del pipe._mgtoolkit_optimizations
