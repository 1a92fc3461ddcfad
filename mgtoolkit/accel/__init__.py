"""Speed-ups for a loaded pipeline, as one explicit call that keeps every output.

:func:`optimize` is what :func:`mgtoolkit.load_model` calls (``optimize=True``, the default);
a user can call it on any ppdiffusers AudioLDM/MusicLDM pipeline, or load with ``optimize=False``
for the plain pipeline. The environment gives the defaults only (``MGTOOLKIT_OPTIMIZE``,
``MGTOOLKIT_COMPILE``; see :mod:`mgtoolkit.config`). On a CPU:

- :mod:`.threads` splits the UNet's guidance pair or candidates, the VAE's batch and the vocoder's
  batch or time over the cores (reversible with :func:`undo`);
- :mod:`.onednn` runs the VAE decoder and the vocoder (and, on request, the UNet) as verified
  oneDNN inference predictors on machines with room (once its dygraph weights are released, a
  module stays compiled until the model is loaded again).

GPUs are left as they are.
"""

from __future__ import annotations

from typing import Any

from ..config import flag

__all__ = ["optimize", "undo", "enabled"]


def enabled() -> bool:
    """The default of ``optimize``: ``False`` when ``MGTOOLKIT_OPTIMIZE`` is ``0``/``off``."""
    return flag("MGTOOLKIT_OPTIMIZE")


def optimize(
    pipe: Any,
    device: str = "cpu",
    *,
    threads: int | None = None,
    onednn: tuple[str, ...] | str | None = None,
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
        (full-size models on machines with room) or ``()``; default ``$MGTOOLKIT_COMPILE`` (``auto``).

    Returns
    -------
    dict
        ``{"device", "workers", "applied": [...]}``, also kept as ``pipe._mgtoolkit_optimizations``;
        a second call returns the first call's report and changes nothing.
    """
    from .onednn import compile_mode, compile_pipeline
    from .pieces import give_back_free_memory, usable_cores

    done = getattr(pipe, "_mgtoolkit_optimizations", None)
    if done:
        return done
    workers = usable_cores() if threads is None else int(threads)
    report: dict[str, Any] = {"device": device, "workers": workers, "applied": []}
    if device == "cpu":
        from .threads import split_threads

        report["applied"] += split_threads(pipe, workers=workers)
        modules = compile_mode() if onednn is None else ((onednn,) if isinstance(onednn, str) else onednn)
        # wraps the thread split, which stays as the fallback
        for name in compile_pipeline(pipe, device, modules=tuple(modules)):
            report["applied"].append(f"{name}: oneDNN inference predictor, verified on first use")
        give_back_free_memory()
    pipe._mgtoolkit_optimizations = report
    return report


def undo(pipe: Any) -> None:
    """Take the thread split off ``pipe`` and stop its threads.

    Raises
    ------
    RuntimeError
        If a module runs as a oneDNN predictor (its dygraph weights are gone): load the model
        again with ``optimize=False`` instead.
    """
    from .threads import undo_split

    engines = getattr(pipe, "_mgtoolkit_engines", None) or {}
    if any(engine.state == "ready" for engine in engines.values()):
        raise RuntimeError(
            "this pipeline runs oneDNN predictors whose dygraph weights were released; "
            "load it again with mg.load_model(..., optimize=False) for the plain pipeline"
        )
    undo_split(pipe)
    if hasattr(pipe, "_mgtoolkit_optimizations"):
        del pipe._mgtoolkit_optimizations
