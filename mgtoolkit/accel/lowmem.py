"""Low-memory mode: only the stage that is running keeps its weights in memory.

A pipeline makes a clip in four stages, one after the other: the text encoder, the UNet (every
step), the VAE decoder and the vocoder. In low-memory mode each stage's weights are released after
loading and read back when the stage is called (those of the stage before are released then).
They are read back from the safetensors file they were loaded from (the converted copy of a hub
model, or the user's folder) when every tensor there is the one in memory, bit for bit (checked
once, at load): the disk then holds the download and one converted copy, nothing more. Otherwise
(a pipeline built in memory, weights changed after loading) they are written once to a safetensors
file in the cache (``<cache>/weights/<fingerprint>.safetensors``, never a pickle). Outputs are the
same, bit for bit: the same numbers go through the same kernels. The cost is reading each stage's
weights once per call (from the page cache after the first).

:func:`choose` says whether the mode is on: when asked, or (``auto``) when the machine or its cgroup
has less than :data:`AUTO_BELOW` of memory (a model load decides it in its plan,
:func:`mgtoolkit.models.plan.plan`, with the same rule). Low-memory mode also means no oneDNN predictors (they keep
every activation of a run).

Each stage is entered by hooks in the pipeline's :class:`~.hooks.HookRegistry`
(``low_memory/<stage>.<call>``, outermost of the speed-ups); :func:`disable` reads every stage back
and takes them off. The swapping itself is :mod:`.swap`'s, the stash files :mod:`.stash`'s. The
files the weights were loaded from (:func:`weights_source`) also hold the weights a oneDNN
predictor replaces (:mod:`.predictor`), so that a predictor that fails later can hand its module
back to dygraph.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import setting
from . import footprint
from .hooks import STAGE_SWAP, HookRegistry, ModelHook
from .pieces import give_back_free_memory
from .stash import PlainSafetensors, named_tensors, release, released, restore, save_weights, weights_name
from .swap import Swapper, make_room, stage_modules, stash_stage
from .tiling import BUFFER_BYTES, tile_convolutions

__all__ = [
    "AUTO_BELOW",
    "FEATURE",
    "PlainSafetensors",
    "Source",
    "Swapper",
    "choose",
    "small_machine",
    "switch",
    "enable",
    "disable",
    "enable_towers",
    "is_on",
    "make_room",
    "release",
    "released",
    "restore",
    "save_weights",
    "stashing_loads",
    "weights_name",
    "weights_source",
]

_tensors = named_tensors  # its name here before the split (tests use it)

AUTO_BELOW = 4 * 1024**3  # Binder gives about 2 GB; a laptop with 8 GB keeps the fast mode
STAGES = ("text_encoder", "unet", "vae", "vocoder")
FEATURE = "low_memory"
"""Low-memory mode's name in the :class:`~.hooks.HookRegistry` (hooks ``low_memory/<stage>.<call>``)."""


def choose(low_memory: bool | str | None = None, *, memory_bytes: int | None = None) -> bool:
    """Whether to run in low-memory mode.

    Parameters
    ----------
    low_memory : bool or str, optional
        ``True``/``False``, or ``"auto"``; ``None`` reads ``MGTOOLKIT_LOW_MEMORY`` (``auto``).
    memory_bytes : int, optional
        The memory this process may use; default :func:`mgtoolkit.accel.pieces.memory_limit_bytes`.

    Examples
    --------
    >>> choose("auto", memory_bytes=2 * 1024**3), choose("auto", memory_bytes=16 * 1024**3)
    (True, False)
    """
    asked = switch(setting("MGTOOLKIT_LOW_MEMORY") if low_memory is None else low_memory)
    if asked is not None:
        return asked
    if memory_bytes is None:
        from .pieces import memory_limit_bytes

        memory_bytes = memory_limit_bytes()
    return small_machine(memory_bytes)


def small_machine(memory_bytes: int | None) -> bool:
    """What ``auto`` means: under :data:`AUTO_BELOW` (``None``, unknown memory: not small)."""
    return memory_bytes is not None and memory_bytes < AUTO_BELOW


def switch(value: bool | str) -> bool | None:
    """A ``low_memory=`` / ``MGTOOLKIT_LOW_MEMORY`` value as ``True``/``False``, or ``None`` for ``auto``.

    Examples
    --------
    >>> switch("on"), switch(False), switch("auto")
    (True, False, None)
    """
    if isinstance(value, bool):
        return value
    value = str(value).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def is_on(pipe: Any) -> bool:
    """Whether :func:`enable` (or :func:`enable_towers`) was applied to ``pipe``."""
    return getattr(pipe, "_mgtoolkit_lowmem", None) is not None


# ---------------------------------------------------------------------------------------------
# Weights read back from the files they were loaded from (no second copy on disk).
# ---------------------------------------------------------------------------------------------
KEEP_RESIDENT_BYTES = 4 * 1024**2
"""Tensors of a stage that its file lacks or holds otherwise (buffers built by the model, such as
position ids) stay in memory when together they are smaller than this; more, and the stage is
stashed instead."""

_WEIGHT_FILES = ("diffusion_paddle_model.safetensors", "model.safetensors")


class Source:
    """Where each tensor of a stage's modules lies in the safetensors files it was loaded from.

    Parameters
    ----------
    places : dict
        ``{stash key: (file, tensor name in that file)}``.
    kept : frozenset of str
        Stash keys of the tensors the files lack: never released.
    stamps : dict
        ``{file: (size, mtime_ns)}`` when checked; a file changed since is refused.
    """

    def __init__(self, places: dict[str, tuple[Path, str]], kept: frozenset[str], stamps: dict):
        self.places, self.kept, self.stamps = places, kept, stamps

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(self.stamps)

    def restore(self, modules: tuple[Any, ...]) -> None:
        """Read the released tensors of ``modules`` back from the files (file reads, no map).

        Raises
        ------
        FileNotFoundError, RuntimeError
            If a file is gone or changed since loading: load the model again.
        """
        import paddle

        self._check()
        place = paddle.CPUPlace()
        by_file: dict[Path, list[tuple[Any, str]]] = {}
        for key, tensor in named_tensors(modules):
            if key in self.places and not tensor._is_initialized():
                path, name = self.places[key]
                by_file.setdefault(path, []).append((tensor, name))
        for path, items in by_file.items():
            with _reader(path) as reader:
                for tensor, name in items:
                    tensor.get_tensor().set(reader.get_tensor(name), place)

    def _check(self) -> None:
        again = "load the model again (mg.unload(), then mg.load_model())"
        for path, stamp in self.stamps.items():
            try:
                now = path.stat()
            except FileNotFoundError:
                raise FileNotFoundError(f"{path} is gone; {again}") from None
            if (now.st_size, now.st_mtime_ns) != stamp:
                raise RuntimeError(f"{path} changed after the model was loaded; {again}")


def _reader(path: Path) -> PlainSafetensors:
    from safetensors import safe_open

    return PlainSafetensors(path, "np", mapped=safe_open)


def _weight_map(folder: Path) -> dict[str, Path]:
    """``{tensor name: file}`` of the paddle safetensors weights in ``folder`` (single or sharded)."""
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            with _reader(folder / name) as reader:
                return dict.fromkeys(reader.keys(), folder / name)
        index = folder / f"{name}.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            return {key: folder / shard for key, shard in weight_map.items()}
    return {}


def _same(reader: PlainSafetensors, name: str, tensor: Any) -> bool:
    """Whether ``reader``'s tensor ``name`` is ``tensor``, bit for bit (dtype, shape and bytes)."""
    import numpy as np

    if "bfloat16" in str(tensor.dtype) or name not in reader.keys():
        return False
    stored, held = reader.get_tensor(name), tensor.numpy()
    if stored.dtype != held.dtype or stored.shape != held.shape:
        return False
    unsigned = f"u{held.dtype.itemsize}"
    return bool(np.array_equal(stored.view(unsigned), held.view(unsigned)))


def weights_source(component: Any, parts: tuple[Any, ...], folder: Path) -> Source | None:
    """Where ``parts`` (modules of ``component``, just loaded from ``folder``) can be read back from.

    Every tensor is compared with the file, bit for bit, once; tensors the files lack or hold
    otherwise stay in memory up to :data:`KEEP_RESIDENT_BYTES`. ``None`` when that is exceeded or
    ``folder`` holds no paddle safetensors: then the stage is stashed.
    """
    weight_map = _weight_map(folder) if folder.is_dir() else {}
    if not weight_map:
        return None
    prefixes = {id(m): f"{n}." if n else "" for n, m in component.named_sublayers(include_self=True)}
    places: dict[str, tuple[Path, str]] = {}
    kept, kept_bytes = set(), 0
    readers: dict[Path, PlainSafetensors] = {}
    try:
        for key, tensor in named_tensors(parts):
            index, _, name = key.split(".", 2)
            prefix = prefixes.get(id(parts[int(index)]))
            full = None if prefix is None else prefix + name
            path = weight_map.get(full) if full is not None else None
            if path is not None and path not in readers:
                readers[path] = _reader(path)
            if path is not None and _same(readers[path], full, tensor):
                places[key] = (path, full)
                continue
            kept.add(key)
            kept_bytes += int(tensor.numel()) * tensor.element_size()
            if kept_bytes > KEEP_RESIDENT_BYTES:
                return None
    finally:
        for reader in readers.values():
            reader.__exit__(None, None, None)
    stamps = {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in readers}
    return Source(places, frozenset(kept), stamps)


_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def stashing_loads(cache: Path | None = None) -> Iterator[None]:
    """While a ppdiffusers pipeline loads in this thread, release each stage's weights as soon as
    its component is loaded, so that a load never holds the whole model (2.5 GB peak for
    AudioLDM-S, more than Binder's 2 GB). They are read back from the file the component was loaded
    from (:func:`weights_source`: checked bit for bit), or stashed where that file does not hold
    them; :func:`enable` then finds them. The resident stage of any other low-memory model (a CLAP
    tower) is released first.

    Components loaded in other threads meanwhile are left alone.

    paddle is imported through :func:`mgtoolkit.runtime.import_paddle` before ppdiffusers: imported
    first by ppdiffusers, it sets ``OMP_NUM_THREADS=1``, and the whole process then ran with one
    BLAS thread and no thread split (the benchmark's low-memory road, a paddle folder).
    """
    from ..runtime import import_paddle

    import_paddle()  # before ppdiffusers: the thread settings hold only if set before paddle loads
    from ppdiffusers.pipelines import pipeline_utils

    folder = cache if cache is not None else _default_cache()
    me = threading.get_ident()
    make_room()  # another low-memory model's resident stage (a CLAP tower) is not needed meanwhile
    with _LOAD_LOCK:
        original = pipeline_utils.load_sub_model

        def load_sub_model(*args: Any, **kwargs: Any) -> Any:
            component = original(*args, **kwargs)
            name = kwargs.get("name")
            parts = stage_modules(component, name) if name in STAGES and threading.get_ident() == me else ()
            if parts:
                source = weights_source(component, parts, Path(kwargs.get("cached_folder") or "") / name)
                if source is not None:  # read back from the file it was loaded from: no second copy
                    component.__dict__["_mgtoolkit_source"] = source
                else:
                    component.__dict__["_mgtoolkit_stash"] = stash_stage(name, parts, folder)
                release(parts, source.kept if source is not None else frozenset())
                # ppdiffusers then casts each component to the dtype it was loaded in (float32
                # here): a no-op that released tensors cannot take, so skipped while loading
                component.__dict__["to"] = lambda *args, **kwargs: component
                stashed.append(component)
                give_back_free_memory()
            return component

        stashed: list[Any] = []
        pipeline_utils.load_sub_model = load_sub_model
        modeling_utils = importlib.import_module("ppdiffusers.models.modeling_utils")
        mapped = getattr(modeling_utils, "safe_open", None)
        if mapped is not None:  # ppdiffusers' own models (the UNet, the VAE) read without a memory map
            modeling_utils.safe_open = functools.partial(PlainSafetensors, mapped=mapped)
        try:
            yield
        finally:
            pipeline_utils.load_sub_model = original
            if mapped is not None:
                modeling_utils.safe_open = mapped
            for component in stashed:
                component.__dict__.pop("to", None)


def _default_cache() -> Path:
    from ..config import cache_root

    return cache_root() / "weights"


# ---------------------------------------------------------------------------------------------
# Low-memory mode on a pipeline, or on a model of towers: hooks that enter a stage.
# ---------------------------------------------------------------------------------------------
class StageHook(ModelHook):
    """Enter ``stage`` (its weights read back, the stage before released) before the call runs."""

    order = STAGE_SWAP

    def __init__(self, swapper: Swapper, stage: str) -> None:
        self.swapper, self.stage = swapper, stage

    def new_forward(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        self.swapper.enter(self.stage)
        return call(*args, **kwargs)


class TrimHook(ModelHook):
    """Give the heap freed by the call before back to the system before each call (the UNet's:
    its steps' activations would otherwise stay in the heap of the thread that ran them)."""

    order = STAGE_SWAP - 1  # inside the stage swap, outside the thread split: once per call

    def new_forward(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        footprint.trim_heap()
        return call(*args, **kwargs)


def _stage_calls(pipe: Any, name: str) -> tuple[tuple[Any, ...], list[tuple[Any, str]]]:
    """The modules whose weights a stage holds, and the calls that enter it."""
    module = getattr(pipe, name, None)
    parts = stage_modules(module, name)
    if not parts:
        return (), []
    if name == "vae":
        return parts, [(module, "decode")]
    calls = [(module, "forward")]
    calls += [(module, a) for a in ("get_text_features", "get_audio_features") if hasattr(module, a)]
    return parts, calls


def _hook_calls(registry: HookRegistry, swapper: Swapper, stage: str, calls: list[tuple[Any, str]]) -> None:
    for module, attr in calls:
        registry.register_hook(StageHook(swapper, stage), f"{FEATURE}/{stage}.{attr}", module, attr)


def enable(pipe: Any, *, cache: Path | None = None, folder: Path | None = None) -> list[str]:
    """Put ``pipe`` in low-memory mode (in place); return the stages it swaps.

    Parameters
    ----------
    pipe : AudioLDMPipeline or MusicLDMPipeline
        A loaded pipeline (loaded inside :func:`stashing_loads`, its stages know already where
        their weights wait).
    cache : Path, optional
        Where weights are stashed that wait nowhere else; default ``<mgtoolkit cache>/weights``.
    folder : Path, optional
        The folder ``pipe`` was loaded from (``<folder>/<stage>``): a stage whose weights are there
        bit for bit is read back from it (:func:`weights_source`) instead of being stashed.

    Its hooks sit outside the other speed-ups' whenever it is called. A second call changes nothing.
    """
    if is_on(pipe):
        return sorted(pipe._mgtoolkit_lowmem.stages)
    idle = getattr(pipe, "_mgtoolkit_idle", None)  # accel.idle's released stages: swapped here instead
    if idle is not None:
        idle.take_back(pipe)
    if cache is None:
        cache = _default_cache()
    from ..runtime import PIPELINE_LOCK  # held while a pipeline's modules run

    swapper = Swapper(guard=PIPELINE_LOCK)
    registry = HookRegistry.of(pipe)
    engines = getattr(pipe, "_mgtoolkit_engines", None) or {}
    tiled = 0
    for name in STAGES:
        modules, calls = _stage_calls(pipe, name)
        if not modules or name in engines:  # a predictor holds that stage's weights itself
            continue
        module = getattr(pipe, name)
        stash, source = (getattr(module, f"_mgtoolkit_{a}", None) for a in ("stash", "source"))
        if stash is None and source is None and folder is not None:
            source = weights_source(module, modules, Path(folder) / name)
        swapper.add(name, modules, cache, stash, source)
        _hook_calls(registry, swapper, name, calls)
        tiled += tile_convolutions(registry, module, name, feature=FEATURE)
        if name == "unet":
            registry.register_hook(TrimHook(), f"{FEATURE}/trim/unet.forward", module)
    pipe._mgtoolkit_lowmem = swapper
    stages = sorted(swapper.stages)
    capped = footprint.cap_arenas(1)
    registry.applied[FEATURE] = [
        f"low memory: {', '.join(stages)} weights in memory only while running",
        f"low memory: {tiled} convolutions run in row bands past {BUFFER_BYTES // 2**20} MiB of scratch",
    ] + (["low memory: one malloc arena, freed heap given back before each UNet call"] if capped else [])
    give_back_free_memory()
    return stages


def disable(pipe: Any) -> None:
    """Read every stage's weights back and take low-memory mode's hooks off ``pipe`` (or a model
    given :func:`enable_towers`)."""
    swapper = getattr(pipe, "_mgtoolkit_lowmem", None)
    if swapper is None:
        return
    swapper.restore_all()
    registry = HookRegistry.of(pipe)
    registry.remove_hooks(f"{FEATURE}/")
    registry.applied.pop(FEATURE, None)
    del pipe._mgtoolkit_lowmem


def enable_towers(
    model: Any,
    towers: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
    folder: Path | None,
    *,
    cache: Path | None = None,
    guard: Any = None,
) -> list[str]:
    """Low-memory mode for a model of separate towers called through methods (CLAP: a text tower
    behind ``get_text_features``, an audio tower behind ``get_audio_features``); in place.

    Parameters
    ----------
    model : paddle.nn.Layer
        The loaded model.
    towers : dict
        ``{stage: (attributes holding its sub-layers, methods that run it)}``, e.g.
        ``{"clap_text": (("text_model", "text_projection"), ("get_text_features",))}``.
    folder : Path or None
        The folder ``model`` was just loaded from: its weights are read back from there when they
        are the same bit for bit (:func:`weights_source`), else stashed into ``cache``.
    guard : lock, optional
        Held while the model runs: another thread's :func:`make_room` then leaves it alone.

    Returns
    -------
    list of str
        The stages swapped (one resident at a time, across every low-memory model of the process).
    """
    if is_on(model):
        return sorted(model._mgtoolkit_lowmem.stages)
    swapper = Swapper(guard=guard)
    registry = HookRegistry.of(model)
    for name, (attributes, methods) in towers.items():
        parts = tuple(getattr(model, a) for a in attributes if getattr(model, a, None) is not None)
        if not parts:
            continue
        source = weights_source(model, parts, Path(folder)) if folder is not None else None
        swapper.add(name, parts, cache if cache is not None else _default_cache(), None, source)
        _hook_calls(registry, swapper, name, [(model, method) for method in methods])
    model._mgtoolkit_lowmem = swapper
    give_back_free_memory()
    return sorted(swapper.stages)
