"""In the default mode, the text encoder's weights wait in their file while the UNet runs.

With the oneDNN predictors on, a call runs the text encoder (the prompt, and the negative prompt),
then the UNet's steps, the VAE decoder and the vocoder as predictors. The text encoder's weights
(CLAP's text tower: 479 MiB on the full-size AudioLDM-S) sat idle through the rest of the call, at
its memory peak. Here they are read back when it is called (file reads, from the page cache after
the first) and released when the UNet next runs, from the safetensors file the model was loaded
from, where they are the same bit for bit (:func:`.lowmem.weights_source`, checked once): the same
numbers go through the same kernels, so the waveform is the same, bit for bit. Nothing is written:
weights that wait nowhere else stay in memory.

Low-memory mode swaps every stage itself (:mod:`.lowmem`) and turns this off first
(:func:`disable`). Hooks ``idle/<stage>.<call>`` and ``idle/unet.forward`` in the pipeline's
:class:`~.hooks.HookRegistry`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .hooks import STAGE_SWAP, HookRegistry, ModelHook
from .pieces import give_back_free_memory
from .stash import release

__all__ = ["FEATURE", "STAGES", "enable", "disable", "is_on"]

FEATURE = "idle"
"""This feature's name in the :class:`~.hooks.HookRegistry` (hooks ``idle/<stage>.<call>``)."""
STAGES = ("text_encoder",)
"""The stages released while the UNet runs. Not the VAE encoder (restyling only, 86 MiB): the VAE
decoder's export and fingerprint read every weight of the VAE."""


class _Waiting:
    """One stage's modules and where their weights wait; in memory from a call of the stage until
    the UNet next runs."""

    def __init__(self, name: str, modules: tuple[Any, ...], source: Any) -> None:
        self.name, self.modules, self.source = name, modules, source
        self.loads = 0  # how many times the weights were read back (for tests and reports)
        self.resident = True
        self.running = 0  # calls of the stage under way (another thread's): not released meanwhile
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if not self.resident:
                self.source.restore(self.modules)
                self.loads += 1
                self.resident = True
            self.running += 1

    def leave(self) -> None:
        with self._lock:
            self.running -= 1

    def release(self) -> None:
        with self._lock:
            if self.resident and not self.running:
                release(self.modules, self.source.kept)
                self.resident = False
                give_back_free_memory()


class _Stages(dict):
    """``{stage: _Waiting}``, kept as ``pipe._mgtoolkit_idle``; :mod:`.lowmem` turns it off through
    :meth:`take_back` (without importing this module, which imports it)."""

    def take_back(self, pipe: Any) -> None:
        disable(pipe)


class _EnterHook(ModelHook):
    """The stage's weights read back before its call."""

    order = STAGE_SWAP

    def __init__(self, waiting: _Waiting) -> None:
        self.waiting = waiting

    def new_forward(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        self.waiting.enter()
        try:
            return call(*args, **kwargs)
        finally:
            self.waiting.leave()


class _ReleaseHook(ModelHook):
    """Every waiting stage released before a UNet step (a flag test once resident)."""

    order = STAGE_SWAP

    def __init__(self, stages: dict[str, _Waiting]) -> None:
        self.stages = stages

    def new_forward(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        for stage in self.stages.values():
            if stage.resident:
                stage.release()
        return call(*args, **kwargs)


def enable(pipe: Any, folder: Path | str | None) -> list[str]:
    """Keep ``pipe``'s :data:`STAGES` out of memory while the UNet runs; return those stages.

    Parameters
    ----------
    pipe : AudioLDMPipeline or MusicLDMPipeline
        A loaded pipeline, not in low-memory mode.
    folder : Path or str, optional
        The folder ``pipe`` was loaded from (``<folder>/<stage>``). A stage whose weights are
        not there bit for bit (or ``None``: a pipeline built in memory) stays in memory.

    A second call changes nothing.
    """
    from .lowmem import _stage_calls, weights_source
    from .lowmem import is_on as low_memory

    unet = getattr(pipe, "unet", None)
    if is_on(pipe) or low_memory(pipe) or folder is None or unet is None:
        return sorted(getattr(pipe, "_mgtoolkit_idle", {}))
    registry, waiting = HookRegistry.of(pipe), _Stages()
    for name in STAGES:
        modules, calls = _stage_calls(pipe, name)
        if not modules:
            continue
        source = weights_source(getattr(pipe, name), modules, Path(folder) / name)
        if source is None:
            continue
        stage = waiting[name] = _Waiting(name, modules, source)
        for module, attr in calls:
            registry.register_hook(_EnterHook(stage), f"{FEATURE}/{name}.{attr}", module, attr)
        stage.release()
    if waiting:
        registry.register_hook(_ReleaseHook(waiting), f"{FEATURE}/unet.forward", unet)
        pipe._mgtoolkit_idle = waiting
        registry.applied[FEATURE] = [
            f"idle weights: {', '.join(sorted(waiting))} read back when called, released while the UNet runs"
        ]
    return sorted(waiting)


def is_on(pipe: Any) -> bool:
    """Whether ``pipe``'s idle stages are kept out of memory while the UNet runs."""
    return bool(getattr(pipe, "_mgtoolkit_idle", None))


def disable(pipe: Any) -> None:
    """Read the released stages back and take the hooks off ``pipe`` (its modules compute what
    they did before)."""
    waiting = getattr(pipe, "_mgtoolkit_idle", None)
    if waiting is None:
        return
    for stage in waiting.values():
        stage.enter()
        stage.leave()
    registry = HookRegistry.of(pipe)
    registry.remove_hooks(f"{FEATURE}/")
    registry.applied.pop(FEATURE, None)
    del pipe._mgtoolkit_idle
