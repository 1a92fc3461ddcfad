"""One stage's weights in memory at a time: the :class:`Swapper` behind low-memory mode.

A stage (the text encoder, the UNet, the VAE decoder, the vocoder; a CLAP tower) holds the weights
of a few modules. :meth:`Swapper.enter` reads the entering stage's weights back and releases the
one before; :func:`make_room` releases every idle low-memory model's resident stage, so that the
music model and a CLAP model hold one stage between them, not two. Which calls enter a stage is
:mod:`.lowmem`'s business (its hooks).
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

from .pieces import give_back_free_memory
from .stash import release, restore, save_weights, weights_name

__all__ = ["Swapper", "make_room", "stage_modules", "stash_stage"]


class _Stage:
    """A stage's modules and where their weights wait: a stash file (``path``) or the files they
    were loaded from (``source``)."""

    def __init__(self, name: str, modules: tuple[Any, ...], path: Path | None, source: Any = None):
        self.name, self.modules, self.path, self.source = name, modules, path, source
        self.keep = source.kept if source is not None else frozenset()

    def restore(self) -> None:
        if self.source is not None:
            self.source.restore(self.modules)
        else:
            restore(self.modules, self.path)

    def release(self) -> None:
        release(self.modules, self.keep)


_SWAPPERS: weakref.WeakSet[Swapper] = weakref.WeakSet()
"""Every live swapper of the process: a stage that enters releases the others' resident stages, so
that the music model and a CLAP model in low-memory mode hold one stage between them, not two."""


def make_room(but: Swapper | None = None) -> None:
    """Release the resident stage of every idle low-memory model (except ``but``): call before
    loading or running another model in a small machine. A model running in another thread (its
    ``guard`` lock held there) keeps its stage."""
    for other in list(_SWAPPERS):
        if other is not but:
            other.release_all(if_idle=True)


class Swapper:
    """Keeps the weights of one stage in memory at a time; the others wait in their files."""

    def __init__(self, guard: Any = None) -> None:
        self.stages: dict[str, _Stage] = {}
        self.resident: str | None = None
        self.loads = 0  # how many times a stage's weights were read back (for tests and reports)
        self.guard = guard  # the lock held while the model runs (another thread must not release it)
        self._lock = threading.RLock()
        _SWAPPERS.add(self)

    def add(
        self,
        name: str,
        modules: tuple[Any, ...],
        folder: Path,
        path: Path | None = None,
        source: Any = None,
    ) -> None:
        """Swap ``modules`` as stage ``name``, read back from ``source`` (a :class:`.lowmem.Source`:
        the files they were loaded from) or ``path`` (where :func:`.lowmem.stashing_loads` stashed
        them); with neither, stashed into ``folder`` now."""
        if source is None and (path is None or not path.exists()):
            path = stash_stage(name, modules, folder)
        stage = _Stage(name, modules, None if source is not None else path, source)
        self.stages[name] = stage
        stage.release()

    def enter(self, name: str) -> None:
        """Make ``name`` the resident stage: release the one before (and any other low-memory
        model's), read this one back."""
        if self.resident != name:
            make_room(but=self)
        with self._lock:
            if self.resident == name:
                return
            if self.resident is not None:
                self.stages[self.resident].release()
                give_back_free_memory()
            self.stages[name].restore()
            self.loads += 1
            self.resident = name

    def release_all(self, *, if_idle: bool = False) -> None:
        """Release the resident stage too (another model is about to need the memory); with
        ``if_idle``, only if the model is not running in another thread."""
        if if_idle and self.guard is not None:
            if not self.guard.acquire(blocking=False):
                return
            try:
                self.release_all()
            finally:
                self.guard.release()
            return
        with self._lock:
            if self.resident is not None:
                self.stages[self.resident].release()
                self.resident = None
                give_back_free_memory()

    def restore_all(self) -> None:
        """Read every stage's weights back (low-memory mode is being turned off)."""
        with self._lock:
            for stage in self.stages.values():
                stage.restore()
            self.resident = None


def stage_modules(module: Any, name: str) -> tuple[Any, ...]:
    """The modules whose weights stage ``name`` holds."""
    if module is None or not hasattr(module, "parameters"):
        return ()
    if name == "vae":  # the decoder only: restyling encodes with the encoder, which stays
        return tuple(
            p for p in (getattr(module, "post_quant_conv", None), getattr(module, "decoder", None)) if p
        )
    return (module,)


def stash_stage(name: str, modules: tuple[Any, ...], folder: Path) -> Path:
    """The stash file of ``modules`` in ``folder`` (named by their weights), written if missing."""
    path = folder / f"{weights_name(name, modules)}.safetensors"
    if not path.exists():
        save_weights(modules, path)
    return path
