"""PyTorch checkpoints (``torch.save``'s zip layout and the legacy one), read without torch."""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelUnavailableError
from .limits import _Budget, _damaged, _file_size, resolve_allow_unsafe
from .machine import _describe, _flatten, _result, _unpickle
from .standins import _TENSOR, _TORCH_DTYPES, _Call, _PendingTensor, _Storage, _StorageType

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the legacy (pre-1.6, non-zip) torch.save format
_TORCH_WHAT = "a PyTorch checkpoint"


def _storage_array(raw: bytes, storage_type: _StorageType, numel: int, big_endian: bool) -> np.ndarray:
    dtype = storage_type.dtype.newbyteorder(">") if big_endian else storage_type.dtype
    array = np.frombuffer(raw, dtype=dtype, count=numel).astype(storage_type.dtype.newbyteorder("="))
    if storage_type.name == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_tensor(budget: _Budget) -> Callable[..., np.ndarray]:
    """``torch._utils._rebuild_tensor(_v2)``: a copied, bounds-checked strided view of a storage."""

    def rebuild(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
        if not isinstance(storage, _Storage):
            raise budget.refuse(f"a tensor whose storage is a {_describe(storage)}")
        if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))):
            raise budget.refuse("a tensor whose size or stride is not a tuple")
        size, stride = tuple(size), tuple(stride)
        numbers = (storage_offset, *size, *stride)
        if len(size) != len(stride) or len(size) > 32 or not all(type(n) is int and n >= 0 for n in numbers):
            raise pickle.UnpicklingError(
                f"bad tensor geometry: {len(size)} sizes and {len(stride)} strides, not all non-negative ints"
            )
        base, count = storage.array, math.prod(size)
        budget.tensor(count * base.itemsize, f"a tensor of {count:,} elements")
        if count == 0:
            return np.zeros(size, dtype=base.dtype)
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= base.size:
            raise pickle.UnpicklingError(f"tensor reaches element {last} of a storage of {base.size}")
        strides = tuple(s * base.itemsize for s in stride)
        view = np.lib.stride_tricks.as_strided(
            base[storage_offset:], shape=size, strides=strides, writeable=False
        )
        return np.array(view, copy=True, order="C")

    return rebuild


def _rebuild_from_type_v2(budget: _Budget) -> Callable[..., Any]:
    """``torch._tensor._rebuild_from_type_v2`` for plain tensors and parameters only."""

    def rebuild(func: Any, new_type: Any, args: Any, state: Any) -> Any:
        if new_type is not _TENSOR:
            raise budget.refuse("a tensor subclass, not a plain tensor")
        if not (isinstance(func, _Call) and func.name in _REBUILDERS and type(args) is tuple):
            raise budget.refuse(f"a tensor rebuilt by a {_describe(func)}")
        return func.fn(*args)

    return rebuild


def _torch_stand_ins(budget: _Budget, rebuild: Callable | None = None) -> dict[tuple[str, str], Any]:
    """Stand-ins for the torch names a state dict pickle uses (torch is never imported)."""
    rebuild = rebuild or _rebuild_tensor(budget)
    return {
        **{("torch._utils", name): _Call(name, rebuild) for name in _REBUILDERS},
        ("torch._utils", "_rebuild_parameter"): _Call("_rebuild_parameter", lambda data, *_: data),
        ("torch._utils", "_rebuild_parameter_with_state"): _Call("_rebuild_parameter", lambda data, *_: data),
        ("torch._tensor", "_rebuild_from_type_v2"): _Call(
            "_rebuild_from_type_v2", _rebuild_from_type_v2(budget)
        ),
        ("torch", "Tensor"): _TENSOR,
        ("torch.nn.parameter", "Parameter"): _TENSOR,
        **{("torch", name): _StorageType(name) for name in _TORCH_DTYPES},
    }


_REBUILDERS = ("_rebuild_tensor_v2", "_rebuild_tensor")


def _zip_prefix(names: list[str]) -> str:
    """The archive's top folder: the one holding ``data.pkl`` (torch names it after the file)."""
    tops = [n[: -len("data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(tops) != 1:
        raise ValueError("no single <folder>/data.pkl in the archive (a TorchScript or other zip?)")
    return tops[0]


def _member(archive: zipfile.ZipFile, name: str, budget: _Budget, need: int | None = None) -> bytes:
    """A zip member's bytes (the first ``need``), its declared inflated size checked before reading."""
    info = archive.getinfo(name)
    if need is not None and info.file_size < need:
        raise pickle.UnpicklingError(f"{name} holds {info.file_size} bytes, not {need}")
    size = info.file_size if need is None else need
    if info.file_size > budget.cap and info.compress_type != zipfile.ZIP_STORED:
        raise budget.limit(f"its zip member {name[:80]} inflates to {info.file_size:,} bytes")
    budget.take(size, f"zip member {name[:80]} ({size:,} bytes)")
    with archive.open(info) as member:
        data = member.read(size)
    if len(data) != size:
        raise EOFError(f"{name} is cut short")
    return data


def _read_torch_zip(path: Path, budget: _Budget, unsafe: bool) -> Any:
    """The zip layout ``torch.save`` writes since 1.6: ``data.pkl`` plus one record per storage."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        prefix = _zip_prefix(names)
        order = f"{prefix}byteorder"
        if order in names and archive.getinfo(order).file_size > 16:
            raise ValueError(f"{order} is not a byte order")
        big_endian = order in names and _member(archive, order, budget).strip() == b"big"
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
                raise pickle.UnpicklingError(f"unknown persistent id (a {type(pid).__name__})")
            _, storage_type, key, _location, numel = pid
            if not isinstance(storage_type, _StorageType) or type(numel) is not int or numel < 0:
                raise budget.refuse("a storage record that is not (storage type, key, location, size)")
            if type(key) is not str or len(key) > 256:
                raise budget.refuse("a storage record whose key is not a short string")
            if key not in storages:
                budget.take(
                    numel * (storage_type.stored_bytes - storage_type.dtype.itemsize), f"storage {key}"
                )
                raw = _member(archive, f"{prefix}data/{key}", budget, numel * storage_type.dtype.itemsize)
                storages[key] = _Storage(_storage_array(raw, storage_type, numel, big_endian))
            return storages[key]

        data = _member(archive, f"{prefix}data.pkl", budget)
        obj = _unpickle(data, budget, _TORCH_WHAT, _torch_stand_ins(budget), unsafe, persistent_load)
        return _result(obj, budget, _TORCH_WHAT)


class _StorageRef:
    """A legacy-layout storage: its bytes come after the pickle, so tensors are built afterwards."""

    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key


def _pending_tensor(budget: _Budget) -> Callable[..., _PendingTensor]:
    def pending(storage: Any, *args: Any) -> _PendingTensor:
        if not isinstance(storage, _StorageRef):
            raise budget.refuse(f"a tensor whose storage is a {_describe(storage)}")
        return _PendingTensor(storage.key, args)

    return pending


def _read_legacy_storages(
    stream: io.BytesIO, keys: Any, records: dict, budget: _Budget
) -> dict[str, _Storage]:
    """The storages after the pickles: per key, an int64 element count and the raw elements."""
    if not isinstance(keys, (list, tuple)) or not all(type(k) is str for k in keys):
        raise ValueError("the storage key list is not a list of strings")
    storages = {}
    for key in keys:
        storage_type, numel = records[key]
        (count,) = struct.unpack("<q", stream.read(8))
        if count != numel:
            raise ValueError(f"storage {key} is mislabelled")
        budget.take(numel * storage_type.stored_bytes, f"storage {key}")
        raw = stream.read(count * storage_type.dtype.itemsize)
        if len(raw) != numel * storage_type.dtype.itemsize:
            raise ValueError(f"storage {key} is cut short")
        storages[key] = _Storage(_storage_array(raw, storage_type, numel, False))
    return storages


def _read_torch_legacy(path: Path, budget: _Budget, unsafe: bool) -> Any:
    """The pre-1.6 layout: magic, version and system pickles, the object, its keys, the storages."""
    stream = io.BytesIO(path.read_bytes())
    records: dict[str, tuple[_StorageType, int]] = {}

    def persistent_load(pid: Any) -> _StorageRef:
        if not (type(pid) is tuple and len(pid) == 6 and pid[0] == "storage" and pid[5] is None):
            raise pickle.UnpicklingError(f"unsupported persistent id (a {type(pid).__name__})")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(storage_type, _StorageType) or type(numel) is not int or numel < 0:
            raise budget.refuse("a storage record that is not (storage type, key, location, size)")
        if type(key) is not str or len(key) > 256:
            raise budget.refuse("a storage record whose key is not a short string")
        records.setdefault(key, (storage_type, numel))
        return _StorageRef(key)

    def plain(data: bytes) -> Any:
        return _unpickle(data, budget, _TORCH_WHAT, {}, False)

    header = [plain(_next_pickle(stream, path)) for _ in range(3)]
    if type(header[0]) is not int or header[0] != _TORCH_MAGIC or header[1] != 1001:
        raise _damaged(path, _TORCH_WHAT, "neither a zip archive nor the legacy torch.save layout")
    stand_ins = _torch_stand_ins(budget, _pending_tensor(budget))
    result = _unpickle(_next_pickle(stream, path), budget, _TORCH_WHAT, stand_ins, unsafe, persistent_load)
    keys = plain(_next_pickle(stream, path))
    try:
        storages = _read_legacy_storages(stream, keys, records, budget)
    except (KeyError, ValueError, TypeError, struct.error) as exc:
        raise _damaged(path, _TORCH_WHAT, exc) from None
    rebuild = _rebuild_tensor(budget)
    return _result(result, budget, _TORCH_WHAT, lambda t: rebuild(storages[t.key], *t.args))


def _next_pickle(stream: io.BytesIO, path: Path) -> bytes:
    """The bytes of the next pickle in ``stream`` (found with pickletools, nothing is built)."""
    start = stream.tell()
    try:
        for opcode, _arg, _pos in pickletools.genops(stream):
            if opcode.name == "STOP":
                break
    except Exception as exc:  # noqa: BLE001
        raise _damaged(path, _TORCH_WHAT, exc) from None
    end = stream.tell()
    stream.seek(start)
    return stream.read(end - start)


def read_torch_bin(
    path: str | Path, *, allow_unsafe: bool | None = False, max_bytes: int | None = None
) -> dict[str, np.ndarray]:
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
    max_bytes : int, optional
        The most memory the read may materialise (default :data:`MAX_BYTES`); the restricted
        reader also stops at 32 times the file's size plus 1 MiB.

    Returns
    -------
    dict of str to numpy.ndarray
        Every tensor, C-contiguous and owning its memory (views of a shared storage are copied out),
        nested dicts flattened with ``.``; non-tensor entries are left out. numpy has no bfloat16:
        **bfloat16 tensors come back as float32** (exactly, bfloat16 is a prefix of float32).

    Raises
    ------
    UnsafePickleError
        The pickle names or does something other than tensors and plain containers.
    PickleLimitError
        The read would go past a cap (memory, tensors, nesting).
    ModelUnavailableError
        The file is damaged, truncated or not a torch checkpoint.
    """
    path = Path(path)
    unsafe = resolve_allow_unsafe(allow_unsafe)
    budget = _Budget(path, "torch", _file_size(path, _TORCH_WHAT), max_bytes, unsafe)
    try:
        is_zip = zipfile.is_zipfile(path)
        obj = _read_torch_zip(path, budget, unsafe) if is_zip else _read_torch_legacy(path, budget, unsafe)
        return _flatten(obj, budget)
    except ModelUnavailableError:
        raise
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - zip, struct, OS errors...
        raise _damaged(path, _TORCH_WHAT, exc) from None
