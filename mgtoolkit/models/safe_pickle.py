"""Read pickle-based weight files (``.bin``, ``.pt``, ``.pdparams``, ``.pdopt``) without running code.

A pickle is a small program: unpickling it may call any function the file names, which is how a
crafted ``pytorch_model.bin`` runs ``os.system``. The readers here unpickle through a
``pickle.Unpickler`` whose ``find_class`` hands out only what a state dict needs: stand-ins for
torch's tensor and storage rebuilders (torch itself is never imported), numpy's array
reconstructors, ``collections.OrderedDict`` and plain builtins such as ``dict``, ``tuple`` and
``int``. Any other name in the file stops the read with :class:`UnsafePickleError` before anything
it names is called. Tensors come back as numpy arrays.

The opt-out (``allow_unsafe=True``; ``allow_unsafe_pickle=`` in :func:`mgtoolkit.load_model`, or
``MGTOOLKIT_ALLOW_UNSAFE_PICKLE=1``) uses the full unpickler instead, for files the user trusts:
code in such a file runs.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from mgtoolkit.testing.torch_files import write_torch_bin
>>> path = Path(tempfile.mkdtemp()) / "pytorch_model.bin"
>>> write_torch_bin(path, {"w": np.arange(3, dtype=np.float32)})
>>> read_torch_bin(path)
{'w': array([0., 1., 2.], dtype=float32)}
"""

from __future__ import annotations

import builtins
import collections
import io
import pickle
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import flag
from ..errors import MgtoolkitWarning, ModelUnavailableError

__all__ = [
    "UnsafePickleError",
    "read_torch_bin",
    "read_pdparams",
    "read_pickled_weights",
    "resolve_allow_unsafe",
    "PICKLE_SUFFIXES",
]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pdparams", ".pdopt")
"""File endings that hold pickles; :func:`read_pickled_weights` reads any of them."""

_OPT_OUT = "pass allow_unsafe_pickle=True or set MGTOOLKIT_ALLOW_UNSAFE_PICKLE=1"
_CONVERT = {
    "torch": "safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')",
    "paddle": "safetensors.numpy.save_file(paddle.load(f, return_numpy=True), 'model.safetensors')",
}


class UnsafePickleError(ModelUnavailableError):
    """A weights pickle asked for something other than tensors and plain containers; nothing ran.

    Parameters
    ----------
    path : str or Path
        The file.
    requested : str
        What the pickle asked for (``"builtins.exec"``, ``"os.system"``, ...).
    framework : {"torch", "paddle"}
        Which kind of file it claims to be (chooses the conversion hint).
    """

    def __init__(self, path: str | Path, requested: str, framework: str = "torch"):
        self.path, self.requested = str(path), requested
        super().__init__(
            f"{path}: not loaded: its pickle asks for {requested}, and a weights file needs only "
            f"tensors and plain containers; no code from the file ran. Convert it to safetensors in "
            f"an environment you trust (e.g. {_CONVERT[framework]}), or if you trust whoever made "
            f"it, {_OPT_OUT}."
        )


def resolve_allow_unsafe(allow_unsafe: bool | None = None) -> bool:
    """``allow_unsafe`` itself, or with ``None`` the ``MGTOOLKIT_ALLOW_UNSAFE_PICKLE`` default (off).

    Examples
    --------
    >>> resolve_allow_unsafe(True), resolve_allow_unsafe(False)
    (True, False)
    """
    return flag("MGTOOLKIT_ALLOW_UNSAFE_PICKLE") if allow_unsafe is None else bool(allow_unsafe)


def _damaged(path: Path, what: str, exc: BaseException | str) -> ModelUnavailableError:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    detail = " ".join(str(detail).split())[:200]
    return ModelUnavailableError(
        f"{path}: cannot read it as {what} ({detail}); the file is damaged, truncated or of "
        "another kind: download it again, or convert it to safetensors where it was made."
    )


# --- What a restricted unpickler may build ------------------------------------------------------


def _no_int_size(kind: type) -> Callable[..., Any]:
    """``bytes``/``bytearray`` without the ``bytes(10**12)`` form (a memory bomb, not data)."""

    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{kind.__name__}(<int>) is not data")
        return kind(*args)

    return build


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes`` (latin-1 only)."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not how bytes are pickled")
    return text.encode("latin1")


_PLAIN = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "slice")
_SAFE: dict[tuple[str, str], Any] = {
    **{(mod, n): getattr(builtins, n) for mod in ("builtins", "__builtin__") for n in _PLAIN},
    **{
        (mod, n): _no_int_size(getattr(builtins, n))
        for mod in ("builtins", "__builtin__")
        for n in ("bytes", "bytearray")
    },
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # numpy's own reconstructors, found the way pickle finds them (numpy 1 and 2 name them apart)
    **{
        (f"numpy.{core}.multiarray", "_reconstruct"): np.zeros(0).__reduce__()[0]
        for core in ("core", "_core")
    },
    **{(f"numpy.{core}.multiarray", "scalar"): np.float32(0).__reduce__()[0] for core in ("core", "_core")},
    **{
        (f"numpy.{core}.numeric", "_frombuffer"): np.zeros(1).__reduce_ex__(5)[0]
        for core in ("core", "_core")
    },
}
"""Every global a clean state-dict pickle names (besides torch's, which get stand-ins)."""


class _Unpickler(pickle.Unpickler):
    """``find_class`` from ``stand_ins`` first, then ``_SAFE``; anything else is refused.

    With ``unsafe=True`` only the stand-ins are kept (torch is not imported) and every other name
    is looked up the ordinary way: the full, code-running unpickler of the opt-out.
    """

    def __init__(self, file: Any, path: Path, framework: str, stand_ins: dict, unsafe: bool):
        super().__init__(file, encoding="latin1")
        self._path, self._framework, self._stand_ins, self._unsafe = path, framework, stand_ins, unsafe

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._stand_ins:
            return self._stand_ins[key]
        if self._unsafe:
            return super().find_class(module, name)
        if key in _SAFE:
            return _SAFE[key]
        raise UnsafePickleError(self._path, f"{module}.{name}", self._framework)


def _unpickle(
    data: bytes,
    path: Path,
    framework: str,
    what: str,
    stand_ins: dict,
    unsafe: bool,
    persistent_load: Callable | None = None,
) -> Any:
    """Run the unpickler over ``data``; damage becomes one error naming the file."""
    if unsafe:
        warnings.warn(
            f"{path}: unpickled with the full unpickler (allow_unsafe_pickle): code in this file can run.",
            MgtoolkitWarning,
            stacklevel=3,
        )
    unpickler = _Unpickler(io.BytesIO(data), path, framework, stand_ins, unsafe)
    if persistent_load is not None:
        unpickler.persistent_load = persistent_load
    try:
        return unpickler.load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged pickle raises, one message
        raise _damaged(path, what, exc) from exc


# --- Plain results ------------------------------------------------------------------------------


def _leaf(value: Any) -> np.ndarray | None:
    """A numeric array from a state-dict value, or ``None`` for metadata (names, strings, ...)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        value = value[1]  # paddle 2.1 saved a tensor as (name, ndarray)
    if isinstance(value, (bool, int, float, complex, np.generic)) and not isinstance(value, str):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return value
    return None


def _flatten(state: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Numeric leaves of a (possibly nested) dict, nested keys joined with ``.``."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif (array := _leaf(value)) is not None:
            out[name] = array
    return out


def _expect_dict(obj: Any, path: Path, what: str) -> dict:
    if not isinstance(obj, dict):
        raise _damaged(path, what, f"it holds a {type(obj).__name__}, not a dict of tensors")
    return obj


# --- PyTorch ------------------------------------------------------------------------------------

_TORCH_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # widened to float32 below
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
}
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the legacy (pre-1.6, non-zip) torch.save format


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its name and dtype."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_TORCH_DTYPES[self.name])


@dataclass(frozen=True)
class _Storage:
    """A storage read from the file: a 1-D array of its elements (bfloat16 already float32)."""

    array: np.ndarray


class _TensorClass:
    """Stands in for ``torch.Tensor`` / ``torch.nn.Parameter`` in ``_rebuild_from_type_v2``."""


def _storage_array(raw: bytes, storage_type: _StorageType, numel: int, big_endian: bool) -> np.ndarray:
    dtype = storage_type.dtype.newbyteorder(">") if big_endian else storage_type.dtype
    array = np.frombuffer(raw, dtype=dtype, count=numel).astype(storage_type.dtype.newbyteorder("="))
    if storage_type.name == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor(_v2)``: a copied, bounds-checked strided view of a storage."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor's storage is not a storage record")
    size, stride = tuple(size), tuple(stride)
    numbers = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(type(n) is int and n >= 0 for n in numbers):
        raise pickle.UnpicklingError(
            f"bad tensor geometry offset={storage_offset} size={size} stride={stride}"
        )
    base = storage.array
    if 0 not in size:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= base.size:
            raise pickle.UnpicklingError(f"tensor reaches element {last} of a storage of {base.size}")
    else:
        return np.zeros(size, dtype=base.dtype)
    strides = tuple(s * base.itemsize for s in stride)
    view = np.lib.stride_tricks.as_strided(base[storage_offset:], shape=size, strides=strides)
    return np.array(view, copy=True, order="C")


def _rebuild_from_type_v2(func: Callable, new_type: Any, args: tuple, state: Any) -> Any:
    """``torch._tensor._rebuild_from_type_v2`` for plain tensors and parameters only."""
    if new_type is not _TensorClass:
        raise pickle.UnpicklingError("a tensor subclass is not a plain tensor")
    return func(*args)


def _torch_stand_ins() -> dict[tuple[str, str], Any]:
    """Stand-ins for the torch names a state dict pickle uses (torch is never imported)."""
    return {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
        ("torch._utils", "_rebuild_parameter_with_state"): lambda data, *_: data,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): _TensorClass,
        ("torch.nn.parameter", "Parameter"): _TensorClass,
        **{("torch", name): _StorageType(name) for name in _TORCH_DTYPES},
    }


def _zip_prefix(names: list[str]) -> str:
    """The archive's top folder: the one holding ``data.pkl`` (torch names it after the file)."""
    tops = [n[: -len("data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(tops) != 1:
        raise ValueError("no single <folder>/data.pkl in the archive (a TorchScript or other zip?)")
    return tops[0]


def _read_torch_zip(path: Path, unsafe: bool) -> Any:
    """The zip layout ``torch.save`` writes since 1.6: ``data.pkl`` plus one record per storage."""
    with zipfile.ZipFile(path) as archive:
        prefix = _zip_prefix(archive.namelist())
        big_endian = (
            f"{prefix}byteorder" in archive.namelist()
            and archive.read(f"{prefix}byteorder").strip() == b"big"
        )
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:60]}")
            _, storage_type, key, _location, numel = pid
            if not isinstance(storage_type, _StorageType) or type(numel) is not int or numel < 0:
                raise pickle.UnpicklingError(f"bad storage record {str(pid)[:60]}")
            if str(key) not in storages:
                info = archive.getinfo(f"{prefix}data/{key}")
                nbytes = numel * storage_type.dtype.itemsize
                if info.file_size < nbytes:
                    raise pickle.UnpicklingError(f"storage {key} holds {info.file_size} bytes, not {nbytes}")
                with archive.open(info) as record:
                    raw = record.read(nbytes)
                storages[str(key)] = _Storage(_storage_array(raw, storage_type, numel, big_endian))
            return storages[str(key)]

        data = archive.read(f"{prefix}data.pkl")
        return _unpickle(
            data, path, "torch", "a PyTorch checkpoint", _torch_stand_ins(), unsafe, persistent_load
        )


@dataclass(frozen=True)
class _StorageRef:
    """A legacy-layout storage: its bytes come after the pickle, so tensors are built afterwards."""

    key: str


@dataclass(frozen=True)
class _PendingTensor:
    key: str
    args: tuple


def _pending_tensor(storage: Any, *args: Any) -> _PendingTensor:
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("a tensor's storage is not a storage record")
    return _PendingTensor(storage.key, args)


def _build_pending(obj: Any, storages: dict[str, _Storage]) -> Any:
    """Turn the legacy pickle's pending tensors into arrays, now that the storages are read."""
    if isinstance(obj, _PendingTensor):
        return _rebuild_tensor(storages[obj.key], *obj.args)
    if isinstance(obj, dict):
        return type(obj)((k, _build_pending(v, storages)) for k, v in obj.items())
    return obj


def _read_legacy_storages(stream: io.BytesIO, keys: Any, records: dict) -> dict[str, _Storage]:
    """The storages after the pickles: per key, an int64 element count and the raw elements."""
    storages = {}
    for key in keys:
        storage_type, numel = records[str(key)]
        (count,) = struct.unpack("<q", stream.read(8))
        raw = stream.read(count * storage_type.dtype.itemsize)
        if count != numel or len(raw) != numel * storage_type.dtype.itemsize:
            raise ValueError(f"storage {key} is cut short or mislabelled")
        storages[str(key)] = _Storage(_storage_array(raw, storage_type, numel, False))
    return storages


def _read_torch_legacy(path: Path, unsafe: bool) -> Any:
    """The pre-1.6 layout: magic, version and system pickles, the object, its keys, the storages."""
    stream, what = io.BytesIO(path.read_bytes()), "a PyTorch checkpoint"
    records: dict[str, tuple[_StorageType, int]] = {}

    def persistent_load(pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and pid[5] is None):
            raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:60]}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType) or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError(f"bad storage record {str(pid)[:60]}")
        records.setdefault(key, (storage_type, numel))
        return _StorageRef(key)

    def plain(data: bytes) -> Any:
        return _unpickle(data, path, "torch", what, {}, False)

    header = [plain(_next_pickle(stream, path)) for _ in range(3)]
    if header[0] != _TORCH_MAGIC or header[1] != 1001:
        raise _damaged(path, what, "neither a zip archive nor the legacy torch.save layout")
    stand_ins = {**_torch_stand_ins(), **{("torch._utils", n): _pending_tensor for n in _REBUILDERS}}
    result = _unpickle(_next_pickle(stream, path), path, "torch", what, stand_ins, unsafe, persistent_load)
    keys = plain(_next_pickle(stream, path))
    try:
        return _build_pending(result, _read_legacy_storages(stream, keys, records))
    except (KeyError, ValueError, TypeError, struct.error, pickle.UnpicklingError) as exc:
        raise _damaged(path, what, exc) from exc


_REBUILDERS = ("_rebuild_tensor_v2", "_rebuild_tensor")


def _next_pickle(stream: io.BytesIO, path: Path) -> bytes:
    """The bytes of the next pickle in ``stream`` (found with pickletools, nothing is built)."""
    import pickletools

    start = stream.tell()
    try:
        for opcode, _arg, _pos in pickletools.genops(stream):
            if opcode.name == "STOP":
                break
    except Exception as exc:  # noqa: BLE001
        raise _damaged(path, "a PyTorch checkpoint", exc) from exc
    end = stream.tell()
    stream.seek(start)
    return stream.read(end - start)


def read_torch_bin(path: str | Path, *, allow_unsafe: bool | None = False) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch checkpoint (``pytorch_model.bin``, ``.pt``), read without torch.

    Reads the zip layout ``torch.save`` writes since PyTorch 1.6 and the older non-zip layout,
    through the restricted unpickler described in the module docstring.

    Parameters
    ----------
    path : str or Path
        The checkpoint.
    allow_unsafe : bool or None, default False
        ``True`` unpickles with the full unpickler (code in the file runs); ``None`` takes the
        ``MGTOOLKIT_ALLOW_UNSAFE_PICKLE`` default.

    Returns
    -------
    dict of str to numpy.ndarray
        Every tensor, C-contiguous and owning its memory (views of a shared storage are copied out),
        nested dicts flattened with ``.``; non-tensor entries are left out. numpy has no bfloat16:
        **bfloat16 tensors come back as float32** (exactly, bfloat16 is a prefix of float32).

    Raises
    ------
    UnsafePickleError
        The pickle names something other than tensors and plain containers.
    ModelUnavailableError
        The file is damaged, truncated or not a torch checkpoint.
    """
    path = Path(path)
    unsafe = resolve_allow_unsafe(allow_unsafe)
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise _damaged(path, "a PyTorch checkpoint", exc) from exc
    try:
        obj = _read_torch_zip(path, unsafe) if is_zip else _read_torch_legacy(path, unsafe)
    except (UnsafePickleError, ModelUnavailableError):
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise _damaged(path, "a PyTorch checkpoint", exc) from exc
    return _flatten(_expect_dict(obj, path, "a PyTorch checkpoint"))


# --- Paddle -------------------------------------------------------------------------------------


def _paddle_eval(path: Path) -> Callable[..., Any]:
    """``builtins.eval`` as ``paddle.save`` uses it for a DenseTensor: ``eval('data', {'data': a})``.

    Only that exact form is accepted, and nothing is evaluated: the array is returned.
    """

    def data_only(expression: Any, namespace: Any = None, *_: Any) -> Any:
        if expression == "data" and isinstance(namespace, dict) and set(namespace) == {"data"}:
            return namespace["data"]
        raise UnsafePickleError(path, f"builtins.eval({str(expression)[:40]!r})", "paddle")

    return data_only


def _join_big_params(state: dict) -> dict:
    """Undo ``paddle.save``'s split of parameters over 1 GiB (protocol 2 and 3)."""
    info = state.pop("UnpackBigParamInfor@@", None) or {}  # sic: paddle's spelling
    for key, value in info.items():
        slices = [np.asarray(state.pop(part)) for part in value["slices"]]
        state[key] = np.concatenate(slices).reshape(value["OriginShape"])
    return state


def read_pdparams(path: str | Path, *, allow_unsafe: bool | None = False) -> dict[str, np.ndarray]:
    """The tensors of a ``paddle.save`` file (``.pdparams``, ``.pdopt``), read without paddle.

    ``paddle.save`` pickles a state dict as numpy arrays (``numpy.core.multiarray._reconstruct``)
    plus a ``StructuredToParameterName@@`` name table; other objects holding tensors pickle each
    tensor as ``(name, ndarray)`` (through ``builtins.tuple``) or as ``eval('data', {'data': a})``.
    The restricted unpickler accepts exactly those: its ``eval`` returns the array and evaluates
    nothing.

    Parameters
    ----------
    path : str or Path
        The file.
    allow_unsafe : bool or None, default False
        ``True`` unpickles with the full unpickler (code in the file runs); ``None`` takes the
        ``MGTOOLKIT_ALLOW_UNSAFE_PICKLE`` default.

    Returns
    -------
    dict of str to numpy.ndarray
        Every tensor, nested dicts (an optimizer's ``LR_Scheduler``) flattened with ``.`` and numbers
        as 0-d arrays; the name table and other non-numeric entries are left out. Paddle's bfloat16
        arrays are saved as uint16 and come back so.

    Raises
    ------
    UnsafePickleError
        The pickle names something other than arrays and plain containers.
    ModelUnavailableError
        The file is damaged, truncated or not a pickle.
    """
    path = Path(path)
    what = "a paddle.save file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _damaged(path, what, exc) from exc
    stand_ins = {(mod, "eval"): _paddle_eval(path) for mod in ("builtins", "__builtin__")}
    unsafe = resolve_allow_unsafe(allow_unsafe)
    obj = _unpickle(data, path, "paddle", what, {} if unsafe else stand_ins, unsafe)
    state = dict(_expect_dict(obj, path, what))
    state.pop("StructuredToParameterName@@", None)
    try:
        state = _join_big_params(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(path, what, exc) from exc
    return _flatten(state)


def read_pickled_weights(path: str | Path, *, allow_unsafe: bool | None = False) -> dict[str, np.ndarray]:
    """:func:`read_pdparams` for ``.pdparams``/``.pdopt``, :func:`read_torch_bin` for the rest."""
    reader = read_pdparams if Path(path).suffix in (".pdparams", ".pdopt") else read_torch_bin
    return reader(path, allow_unsafe=allow_unsafe)
