"""The one safetensors reader and writer of mgtoolkit: a checked header, plain file reads, atomic writes.

A safetensors file is an 8-byte little-endian header size, a JSON header and the tensors' bytes.
:func:`read_header` reads and checks the header before any tensor is read: a JSON object whose
entries each have a ``dtype`` from :data:`DTYPES`, a ``shape`` of non-negative ints and
``data_offsets`` inside the file that match shape x itemsize and do not overlap another tensor's,
plus an optional ``__metadata__`` of strings; the header itself is at most :data:`MAX_HEADER` bytes.
Anything else is one :class:`SafetensorsError` line naming the file. Tensors are read with plain
file reads, never a memory map (low-memory mode relies on that: a map counts the whole file in the
process's resident memory while it is read). numpy has no bfloat16: ``BF16`` tensors are widened to
float32 exactly (bfloat16 is the top half of a float32), or returned as their uint16 bits.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "w.safetensors"
>>> write_file(path, {"w": np.arange(3, dtype=np.float32)}, metadata={"format": "np"})
>>> read_header(path).metadata, read_file(path)
({'format': 'np'}, {'w': array([0., 1., 2.], dtype=float32)})
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import ModelUnavailableError

__all__ = [
    "DTYPES",
    "MAX_HEADER",
    "Header",
    "SafetensorsError",
    "TensorInfo",
    "read_file",
    "read_header",
    "read_tensor",
    "write",
    "write_file",
]

DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}  # fmt: skip
"""safetensors dtype name -> the numpy dtype of its stored bytes (``BF16``: its uint16 bits)."""

_NAMES = {np.dtype(v).str: k for k, v in DTYPES.items() if k != "BF16"}
MAX_HEADER = 100_000_000
"""The largest header read (safetensors' own limit)."""


class SafetensorsError(ModelUnavailableError):
    """A safetensors file that cannot be read as one; the message names the file and what to do."""

    def __init__(self, path: str | Path, detail: str):
        self.path = str(path)
        detail = " ".join(str(detail).split())[:160]
        path = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(path)
        )
        super().__init__(
            f"{path}: cannot read the weights ({detail}); the file is damaged or truncated (an "
            "interrupted download?): download the model again."
        )


@dataclass(frozen=True)
class TensorInfo:
    """One header entry: ``dtype`` (a :data:`DTYPES` key), ``shape``, byte range in the data part."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    """A checked header: the tensors in file order, ``metadata`` and where the data part starts."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int


def _entry(name: Any, value: Any, data_size: int) -> TensorInfo:
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"entry {str(name)[:60]!r} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"entry {name[:60]!r} has dtype {str(dtype)[:20]!r}, not one of {', '.join(DTYPES)}")
    if not (isinstance(shape, list) and len(shape) <= 64 and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f"entry {name[:60]!r} has a shape that is not a list of non-negative ints")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)):
        raise ValueError(f"entry {name[:60]!r} has data_offsets that are not two ints")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise ValueError(f"entry {name[:60]!r} has data_offsets {offsets} outside the {data_size} data bytes")
    if end - begin != math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize:
        raise ValueError(f"entry {name[:60]!r} holds {end - begin} bytes, not shape x itemsize")
    return TensorInfo(dtype, tuple(shape), begin, end)


def _parse(raw: bytes, data_size: int, data_start: int) -> Header:
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("__metadata__ is not an object of strings")
    tensors = {name: _entry(name, value, data_size) for name, value in header.items()}
    end = 0
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if info.begin < end:
            raise ValueError("two tensors' data_offsets overlap")
        end = info.end
    return Header(tensors, dict(metadata), data_start)


def _header_of(fh: BinaryIO, file_size: int) -> Header:
    prefix = fh.read(8)
    if len(prefix) != 8:
        raise ValueError(f"{file_size} bytes: too short for a header")
    size = int.from_bytes(prefix, "little")
    if not 2 <= size <= min(MAX_HEADER, file_size - 8):
        raise ValueError(f"header size {size} for a file of {file_size} bytes")
    raw = fh.read(size)
    if len(raw) != size:
        raise ValueError("the header is cut short")
    return _parse(raw, file_size - 8 - size, 8 + size)


def read_header(path: str | Path) -> Header:
    """The checked header of the safetensors file ``path`` (no tensor is read).

    Raises
    ------
    SafetensorsError
        The file is missing, short, or its header is not a valid safetensors header.
    """
    try:
        with open(path, "rb") as fh:
            return _header_of(fh, os.fstat(fh.fileno()).st_size)
    except (OSError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise SafetensorsError(path, f"{type(exc).__name__}: {exc}") from None


def read_tensor(fh: BinaryIO, header: Header, name: str, *, widen_bf16: bool = True) -> np.ndarray:
    """One tensor of ``header``'s file, read from the open file ``fh`` (native order, owning its data).

    ``BF16`` comes back as float32 (exact) with ``widen_bf16``, else as its uint16 bits.
    """
    info = header.tensors[name]
    dtype = np.dtype(DTYPES[info.dtype])
    fh.seek(header.data_start + info.begin)
    raw = fh.read(info.end - info.begin)
    if len(raw) != info.end - info.begin:
        raise ValueError(f"tensor {name[:60]!r} is cut short")
    array = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))  # a writable copy
    if info.dtype == "BF16" and widen_bf16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.reshape(info.shape)


def read_file(path: str | Path, *, widen_bf16: bool = True) -> dict[str, np.ndarray]:
    """Every tensor of the safetensors file ``path``, by name (as ``safe_open().keys()``), read with file reads.

    Raises
    ------
    SafetensorsError
        The file is missing, damaged or truncated (one line naming it).
    """
    header = read_header(path)
    try:
        with open(path, "rb") as fh:
            return {
                name: read_tensor(fh, header, name, widen_bf16=widen_bf16) for name in sorted(header.tensors)
            }
    except (OSError, ValueError, MemoryError) as exc:
        raise SafetensorsError(path, f"{type(exc).__name__}: {exc}") from None


def write(
    path: str | Path,
    entries: Mapping[str, tuple[str, Iterable[int]]],
    chunks: Iterable[Any],
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a safetensors file from a header and the tensors' bytes, atomically.

    Parameters
    ----------
    path : str or Path
        The file; written through a temporary file in its folder and renamed into place, so it is
        complete or absent.
    entries : mapping of str to (dtype, shape)
        The tensors in file order: a :data:`DTYPES` name and a shape.
    chunks : iterable of bytes-like
        Each tensor's bytes, in the same order (produced one by one: no second copy in memory).
    metadata : mapping of str to str, optional
        The ``__metadata__``.
    """
    path, header, offset = Path(path), {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    sizes = []
    for name, (dtype, shape) in entries.items():
        size = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        sizes.append((name, size))
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little") + raw)
            for (name, size), chunk in zip(sizes, chunks, strict=True):
                data = memoryview(chunk)  # C-contiguous bytes-like (numpy arrays included)
                if data.nbytes != size:
                    raise ValueError(f"tensor {name!r}: {data.nbytes} bytes for a header of {size}")
                fh.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_file(
    path: str | Path, tensors: Mapping[str, np.ndarray], *, metadata: Mapping[str, str] | None = None
) -> None:
    """Write numpy arrays (dtypes of :data:`DTYPES`, little-endian) as a safetensors file, atomically."""
    arrays = {
        name: np.ascontiguousarray(a, dtype=np.dtype(a.dtype).newbyteorder("<"))
        for name, a in tensors.items()
    }
    entries = {name: (_NAMES[a.dtype.str], a.shape) for name, a in arrays.items()}
    write(path, entries, (a.reshape(-1) for a in arrays.values()), metadata=metadata)
