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

The same file format stashes the weights a oneDNN predictor replaces (:mod:`.onednn`), so that a
predictor that fails later can hand its module back to dygraph.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import private_dir, setting

__all__ = [
    "AUTO_BELOW",
    "PlainSafetensors",
    "choose",
    "small_machine",
    "switch",
    "enable",
    "release",
    "restore",
    "save_weights",
    "is_on",
]

log = logging.getLogger(__name__)

AUTO_BELOW = 4 * 1024**3  # Binder gives about 2 GB; a laptop with 8 GB keeps the fast mode
_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32"}
STAGES = ("text_encoder", "unet", "vae", "vocoder")


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
    """Whether :func:`enable` was applied to ``pipe``."""
    return getattr(pipe, "_mgtoolkit_lowmem", None) is not None


# ---------------------------------------------------------------------------------------------
# Weights to and from a safetensors file.
# ---------------------------------------------------------------------------------------------
def _tensors(modules: tuple[Any, ...]) -> Iterator[tuple[str, Any]]:
    for i, module in enumerate(modules):
        for name, tensor in module.named_parameters():
            yield f"{i}.p.{name}", tensor
        for name, tensor in module.named_buffers():
            yield f"{i}.b.{name}", tensor


def save_weights(modules: tuple[Any, ...], path: Path) -> None:
    """Write every parameter and buffer of ``modules`` to the safetensors file ``path``.

    Tensor by tensor (no second copy of the weights in memory), through a temporary file and a
    rename: the file is complete or absent.
    """
    from ..io import safetensors_io

    entries = {}
    for key, tensor in _tensors(modules):
        entries[key] = (_DTYPES[str(tensor.dtype).replace("paddle.", "")], list(tensor.shape))
    private_dir(path.parent)
    safetensors_io.write(path, entries, (_raw(tensor) for _, tensor in _tensors(modules)))


def _raw(tensor: Any):
    if "bfloat16" in str(tensor.dtype):
        return tensor.view("uint16").numpy() if hasattr(tensor, "view") else tensor.numpy()
    return tensor.numpy()


def weights_name(kind: str, modules: tuple[Any, ...]) -> str:
    """A file name that follows the weights of all ``modules`` (see :func:`.pieces.fingerprint`)."""
    import hashlib

    from .pieces import fingerprint

    if len(modules) == 1:
        return fingerprint(kind, modules[0])
    joined = "".join(fingerprint(kind, module) for module in modules)
    return f"{kind}-{hashlib.sha256(joined.encode()).hexdigest()[:20]}"


def release(modules: tuple[Any, ...], keep: frozenset[str] = frozenset()) -> None:
    """Free the data of every parameter and buffer of ``modules`` (their shapes and dtypes stay),
    except the tensors named in ``keep`` (keys as in the stash files)."""
    for key, tensor in _tensors(modules):
        if key not in keep:
            tensor._clear_data()


def restore(modules: tuple[Any, ...], path: Path) -> None:
    """Read the weights :func:`save_weights` wrote back into released ``modules``.

    Read with plain file reads, tensor by tensor (a memory map would count the whole file in the
    process's resident memory while it is read).

    Raises
    ------
    FileNotFoundError
        If the file is gone (the cache was cleared while the model was loaded): load the model again.
    """
    import paddle

    if not path.exists():
        raise FileNotFoundError(f"{path} is gone; load the model again (mg.unload(), then mg.load_model())")
    from ..io.safetensors_io import read_header, read_tensor

    place = paddle.CPUPlace()
    header = read_header(path)
    with open(path, "rb") as fh:
        for key, tensor in _tensors(modules):
            if tensor._is_initialized():
                continue
            array = read_tensor(fh, header, key, widen_bf16=False)  # bfloat16 as its uint16 bits
            tensor.get_tensor().set(array, place)


def released(modules: tuple[Any, ...]) -> bool:
    """Whether any tensor of ``modules`` has no data (released)."""
    return any(not tensor._is_initialized() for _, tensor in _tensors(modules))


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
        for key, tensor in _tensors(modules):
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
        for key, tensor in _tensors(parts):
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


# ---------------------------------------------------------------------------------------------
# One stage resident at a time.
# ---------------------------------------------------------------------------------------------
class _Stage:
    """A stage's modules and where their weights wait: a stash file (``path``) or the files they
    were loaded from (``source``)."""

    def __init__(self, name: str, modules: tuple[Any, ...], path: Path | None, source: Source | None = None):
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
        source: Source | None = None,
    ) -> None:
        """Swap ``modules`` as stage ``name``, read back from ``source`` (the files they were loaded
        from, see :func:`weights_source`) or ``path`` (where :func:`stashing_loads` stashed them);
        with neither, stashed into ``folder`` now."""
        if source is None and (path is None or not path.exists()):
            path = _stash(name, modules, folder)
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
                from .pieces import give_back_free_memory

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
                from .pieces import give_back_free_memory

                give_back_free_memory()

    def restore_all(self) -> None:
        with self._lock:
            for stage in self.stages.values():
                stage.restore()
            self.resident = None


def _wrap(module: Any, attr: str, swapper: Swapper, stage: str) -> None:
    if attr == "forward":  # a pre-hook: some models' __call__ does not go through an instance forward
        handle = module.register_forward_pre_hook(lambda layer, inputs: swapper.enter(stage))
        module.__dict__.setdefault("_mgtoolkit_lowmem_hooks", []).append(handle)
        return
    original = getattr(module, attr)

    def call(*args: Any, **kwargs: Any) -> Any:
        swapper.enter(stage)
        return original(*args, **kwargs)

    setattr(module, attr, call)
    module.__dict__.setdefault("_mgtoolkit_lowmem_originals", {})[attr] = original


def _parts(module: Any, name: str) -> tuple[Any, ...]:
    """The modules whose weights stage ``name`` holds."""
    if module is None or not hasattr(module, "parameters"):
        return ()
    if name == "vae":  # the decoder only: restyling encodes with the encoder, which stays
        return tuple(
            p for p in (getattr(module, "post_quant_conv", None), getattr(module, "decoder", None)) if p
        )
    return (module,)


def _stage_parts(pipe: Any, name: str) -> tuple[tuple[Any, ...], list[tuple[Any, str]]]:
    """The modules whose weights a stage holds, and the calls that enter it."""
    module = getattr(pipe, name, None)
    parts = _parts(module, name)
    if not parts:
        return (), []
    if name == "vae":
        return parts, [(module, "decode")]
    calls = [(module, "forward")]
    calls += [(module, a) for a in ("get_text_features", "get_audio_features") if hasattr(module, a)]
    return parts, calls


def _stash(name: str, modules: tuple[Any, ...], folder: Path) -> Path:
    path = folder / f"{weights_name(name, modules)}.safetensors"
    if not path.exists():
        save_weights(modules, path)
    return path


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
    """
    from ppdiffusers.pipelines import pipeline_utils

    folder = cache if cache is not None else _default_cache()
    me = threading.get_ident()
    make_room()  # another low-memory model's resident stage (a CLAP tower) is not needed meanwhile
    with _LOAD_LOCK:
        original = pipeline_utils.load_sub_model

        def load_sub_model(*args: Any, **kwargs: Any) -> Any:
            component = original(*args, **kwargs)
            name = kwargs.get("name")
            parts = _parts(component, name) if name in STAGES and threading.get_ident() == me else ()
            if parts:
                source = weights_source(component, parts, Path(kwargs.get("cached_folder") or "") / name)
                if source is not None:  # read back from the file it was loaded from: no second copy
                    component.__dict__["_mgtoolkit_source"] = source
                else:
                    component.__dict__["_mgtoolkit_stash"] = _stash(name, parts, folder)
                release(parts, source.kept if source is not None else frozenset())
                # ppdiffusers then casts each component to the dtype it was loaded in (float32
                # here): a no-op that released tensors cannot take, so skipped while loading
                component.__dict__["to"] = lambda *args, **kwargs: component
                stashed.append(component)
                from .pieces import give_back_free_memory

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


class PlainSafetensors:
    """``safetensors.safe_open(path, framework="np")`` that reads each tensor with file reads.

    safetensors maps the whole file: every page a load touches counts in the process's resident
    memory until the map closes, so loading the 740 MB UNet showed as 740 MB more peak RSS on top
    of its arrays (reclaimable, but a 2 GB Binder limit watches the total). Reading tensor by tensor
    gives the same arrays without that. Types numpy has no name for (bfloat16) and slices go to the
    memory-mapped reader ``mapped``.
    """

    _NUMPY = {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64", "I32": "int32",
              "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}  # fmt: skip

    def __init__(self, filename: str | os.PathLike, framework: str = "np", device: str = "cpu", *, mapped):
        self._path, self._framework, self._mapped = os.fspath(filename), framework, mapped
        from ..io.safetensors_io import read_header

        self._header = read_header(self._path)  # checked: one error line naming a damaged file
        self._fh = open(self._path, "rb")  # noqa: SIM115 - closed by __exit__

    def __enter__(self) -> PlainSafetensors:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._fh.close()

    def metadata(self) -> dict[str, str] | None:
        return self._header.metadata or None

    def keys(self) -> list[str]:
        return list(self._header.tensors)

    def get_tensor(self, key: str):
        from ..io.safetensors_io import read_tensor

        if self._header.tensors[key].dtype not in self._NUMPY:
            with self._mapped(self._path, framework=self._framework) as f:
                return f.get_tensor(key)
        return read_tensor(self._fh, self._header, key)

    def get_slice(self, key: str):
        return self._mapped(self._path, framework=self._framework).get_slice(key)


def _default_cache() -> Path:
    from ..config import cache_root

    return cache_root() / "weights"


def enable(pipe: Any, *, cache: Path | None = None) -> list[str]:
    """Put ``pipe`` in low-memory mode (in place); return the stages it swaps.

    Call it after the other speed-ups (its calls wrap theirs). A second call changes nothing.
    """
    if is_on(pipe):
        return sorted(pipe._mgtoolkit_lowmem.stages)
    if cache is None:
        cache = _default_cache()
    from ..runtime import PIPELINE_LOCK  # held while a pipeline's modules run

    swapper = Swapper(guard=PIPELINE_LOCK)
    engines = getattr(pipe, "_mgtoolkit_engines", None) or {}
    for name in STAGES:
        modules, calls = _stage_parts(pipe, name)
        if not modules or name in engines:  # a predictor holds that stage's weights itself
            continue
        module = getattr(pipe, name)
        stash, source = (getattr(module, f"_mgtoolkit_{a}", None) for a in ("stash", "source"))
        swapper.add(name, modules, cache, stash, source)
        for module, attr in calls:
            _wrap(module, attr, swapper, name)
    pipe._mgtoolkit_lowmem = swapper
    from .pieces import give_back_free_memory

    give_back_free_memory()
    return sorted(swapper.stages)


def disable(pipe: Any) -> None:
    """Read every stage's weights back and take the low-memory calls off ``pipe``."""
    swapper = getattr(pipe, "_mgtoolkit_lowmem", None)
    if swapper is None:
        return
    swapper.restore_all()
    for name in STAGES:
        module = getattr(pipe, name, None)
        for attr, original in (getattr(module, "_mgtoolkit_lowmem_originals", None) or {}).items():
            setattr(module, attr, original)
        for handle in getattr(module, "_mgtoolkit_lowmem_hooks", None) or []:
            handle.remove()
        for attr in ("_mgtoolkit_lowmem_originals", "_mgtoolkit_lowmem_hooks"):
            if module is not None and attr in module.__dict__:
                delattr(module, attr)
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
    for name, (attributes, methods) in towers.items():
        parts = tuple(getattr(model, a) for a in attributes if getattr(model, a, None) is not None)
        if not parts:
            continue
        source = weights_source(model, parts, Path(folder)) if folder is not None else None
        swapper.add(name, parts, cache if cache is not None else _default_cache(), None, source)
        for method in methods:
            _wrap(model, method, swapper, name)
    model._mgtoolkit_lowmem = swapper
    from .pieces import give_back_free_memory

    give_back_free_memory()
    return sorted(swapper.stages)
