"""What a restricted unpickler may build: our stand-ins for numpy's, torch's and the builtins' names.

None of them builds a numpy object from the file's state; see :mod:`mgtoolkit.models.safe_pickle`.
"""

from __future__ import annotations

import collections
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .limits import _OBJECT_COST, _Budget

_DTYPES = {
    "b1": "?", "i1": "i1", "u1": "u1", "i2": "i2", "u2": "u2", "i4": "i4", "u4": "u4",
    "i8": "i8", "u8": "u8", "f2": "f2", "f4": "f4", "f8": "f8", "c8": "c8", "c16": "c16",
}  # fmt: skip
"""numpy dtype names a weights pickle may use (numpy's ``dtype.__reduce__`` spelling) -> dtype."""

_SCALARS = (str, bytes, int, float, complex, bool, type(None))


class _Call:
    """A table entry the pickle may call (REDUCE): a name and our own function."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable[..., Any]):
        self.name, self.fn = name, fn

    def __call__(self, *args: Any) -> Any:  # the opt-out's full unpickler calls it directly
        return self.fn(*args)


class _Token:
    """A table entry that is only a marker (``numpy.ndarray``, ``torch.Tensor``): never called."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


_NDARRAY = _Token("numpy.ndarray")
_TENSOR = _Token("torch.Tensor")


class _DTypeSpec:
    """What ``numpy.dtype(name, align, copy)`` plus its BUILD describe; never a numpy dtype object."""

    __slots__ = ("code", "order", "built")

    def __init__(self, code: str):
        self.code, self.order, self.built = code, "=", False

    @property
    def dtype(self) -> np.dtype:
        if not self.built:
            raise pickle.UnpicklingError("a numpy dtype used before its state")
        dtype = np.dtype(_DTYPES[self.code])
        return dtype.newbyteorder(self.order) if self.order in "<>" else dtype


class _ArraySpec:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: an array waiting for its BUILD."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None


def _native(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, native-order copy owning its memory (``type(result) is np.ndarray``)."""
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True, subok=False)


def _count(shape: Any, budget: _Budget) -> int:
    if not (isinstance(shape, (tuple, list)) and len(shape) <= 32):
        raise budget.refuse(f"an array shape that is a {type(shape).__name__}")
    if not all(type(n) is int and n >= 0 for n in shape):
        raise budget.refuse("an array shape with negative or non-integer sizes")
    return math.prod(shape)


def _array(raw: Any, spec: Any, shape: Any, fortran: Any, budget: _Budget) -> np.ndarray:
    """Validated raw bytes, dtype and shape to a new array (the BUILD of numpy's array pickle)."""
    if isinstance(raw, str):
        raw = raw.encode("latin1")  # protocol 0-2 pickles read with encoding="latin1"
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise budget.refuse(f"array data that is a {type(raw).__name__} (object arrays are not weights)")
    if not isinstance(spec, _DTypeSpec):
        raise budget.refuse(f"an array dtype that is a {type(spec).__name__}")
    if type(fortran) not in (bool, int):
        raise budget.refuse("an array order that is not a bool")
    dtype, count = spec.dtype, _count(shape, budget)
    nbytes = memoryview(raw).nbytes
    if nbytes != count * dtype.itemsize:
        raise pickle.UnpicklingError(f"array data of {nbytes} bytes for {count} x {dtype.itemsize}")
    budget.tensor(nbytes, f"an array of {nbytes:,} bytes")
    flat = np.frombuffer(raw, dtype=dtype, count=count)
    return _native(flat.reshape(tuple(shape), order="F" if fortran else "C"))


def _np_reconstruct(budget: _Budget) -> Callable[..., _ArraySpec]:
    def reconstruct(subtype: Any, shape: Any, typecode: Any) -> _ArraySpec:
        if subtype is not _NDARRAY or tuple(shape) != (0,) or typecode not in (b"b", "b"):
            raise budget.refuse("numpy.core.multiarray._reconstruct other than numpy's own array pickle")
        budget.take(_OBJECT_COST, "an array")
        return _ArraySpec()

    return reconstruct


def _np_dtype(budget: _Budget) -> Callable[..., _DTypeSpec]:
    def dtype(name: Any, align: Any = False, copy: Any = True) -> _DTypeSpec:
        if not (isinstance(name, str) and name in _DTYPES) or type(align) is not bool:
            shown = name if isinstance(name, str) else type(name).__name__
            raise budget.refuse(f"numpy.dtype({shown[:20]!r}), not a plain numeric dtype")
        budget.take(_OBJECT_COST, "a dtype")
        return _DTypeSpec(name)

    return dtype


def _np_scalar(budget: _Budget) -> Callable[..., np.generic]:
    def scalar(spec: Any, raw: Any = None) -> np.generic:
        return _array(raw, spec, (), False, budget)[()]

    return scalar


def _np_frombuffer(budget: _Budget) -> Callable[..., np.ndarray]:
    def frombuffer(buf: Any, spec: Any, shape: Any, order: Any) -> np.ndarray:
        if order not in ("C", "F"):
            raise budget.refuse("numpy _frombuffer with an order other than C or F")
        return _array(buf, spec, shape, order == "F", budget)

    return frombuffer


def _key_ok(value: Any) -> bool:
    """Whether ``value`` may be a dict key or set item: text, bytes, ``None``, a bool or an int
    below 2**60. Those hash apart (text and bytes with the process's random seed, such ints to
    themselves); floats, big ints and tuples hash by value to numbers a pickle can make collide,
    and 40,000 colliding keys take 20 s to insert, a few MB of them hours (refused, as deep tuples
    whose hashing overflows the C stack were)."""
    if value is None or type(value) is bool:
        return True
    if type(value) is int:
        return -(1 << 60) < value < 1 << 60
    return type(value) in (str, bytes) and len(value) <= 1 << 16


def _checked_keys(items: Any, budget: _Budget) -> Any:
    for item in items:
        if not _key_ok(item):
            raise budget.refuse(
                f"a dict key or set item that is a {type(item).__name__} (keys are text, bytes or small ints)"
            )
    return items


def _container(kind: type, budget: _Budget) -> Callable[..., Any]:
    """``dict``/``list``/``tuple``/``set``/``frozenset``/``OrderedDict`` of at most one plain iterable."""

    def build(*args: Any) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict, set, frozenset))):
            raise budget.refuse(f"{kind.__name__}() of something other than one list, tuple or dict")
        items = args[0] if args else ()
        if isinstance(items, (tuple, list)) and kind in (dict, collections.OrderedDict):
            if not all(isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in items):
                raise budget.refuse(f"{kind.__name__}() of something other than (key, value) pairs")
            _checked_keys([pair[0] for pair in items], budget)
        elif kind in (set, frozenset):
            _checked_keys(items, budget)
        budget.take(_OBJECT_COST + 16 * len(items), f"a {kind.__name__}")
        return kind(items)

    return build


_TEXT_CODECS = {"utf8", "latin1", "iso88591", "ascii", "usascii"}
"""Encodings ``str(b, enc)``/``bytes(s, enc)`` may name: others (``punycode`` decodes in quadratic
time, a few MB hold the read for hours) are never how weights are pickled."""


def _plain_codec(args: tuple, kind: type, budget: _Budget) -> None:
    for codec in args[1:2] if kind in (str, bytes, bytearray) else ():
        if not isinstance(codec, str) or codec.replace("-", "").replace("_", "").lower() not in _TEXT_CODECS:
            shown = codec[:20] if isinstance(codec, str) else type(codec).__name__
            raise budget.refuse(f"{kind.__name__}() with the encoding {shown!r}, not how text is pickled")


def _scalar_call(kind: type, budget: _Budget) -> Callable[..., Any]:
    """``int``/``float``/``complex``/``bool``/``str``/``slice`` of plain values only."""

    def build(*args: Any) -> Any:
        if len(args) > 3 or not all(isinstance(a, _SCALARS) for a in args):
            raise budget.refuse(f"{kind.__name__}() of something other than plain values")
        _plain_codec(args, kind, budget)
        result = kind(*args)
        budget.take(_OBJECT_COST + (len(result) if isinstance(result, str) else 0), f"a {kind.__name__}")
        return result

    return build


def _bytes_call(kind: type, budget: _Budget) -> Callable[..., Any]:
    """``bytes``/``bytearray`` of a string or bytes, never ``bytes(10**12)`` (a bomb, not data)."""

    def build(*args: Any) -> Any:
        if len(args) > 3 or not all(isinstance(a, (str, bytes, bytearray)) for a in args):
            raise budget.refuse(f"{kind.__name__}() of something other than text or bytes")
        _plain_codec(args, kind, budget)
        result = kind(*args)
        budget.take(_OBJECT_COST + 4 * len(result), f"a {kind.__name__}")
        return result

    return build


def _latin1_encode(budget: _Budget) -> Callable[..., bytes]:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes`` (latin-1 only)."""

    def encode(text: Any, encoding: Any = "latin1") -> bytes:
        if not isinstance(text, str) or not isinstance(encoding, str):
            raise budget.refuse("_codecs.encode of something other than text")
        if encoding.replace("-", "").lower() != "latin1":
            raise budget.refuse(f"_codecs.encode with {encoding[:20]!r}, not how bytes are pickled")
        return text.encode("latin1")

    return encode


_PLAIN = ("dict", "list", "tuple", "set", "frozenset")
_PLAIN_SCALARS = ("int", "float", "complex", "bool", "str", "slice")
_NUMPY_CORES = ("core", "_core")  # numpy 1 and 2 name the module apart


def _safe_table(budget: _Budget) -> dict[tuple[str, str], Any]:
    """Every global a clean state-dict pickle names (besides torch's), as our own stand-ins."""
    import builtins

    table: dict[tuple[str, str], Any] = {}
    for mod in ("builtins", "__builtin__"):
        for name in _PLAIN:
            table[mod, name] = _Call(name, _container(getattr(builtins, name), budget))
        for name in _PLAIN_SCALARS:
            table[mod, name] = _Call(name, _scalar_call(getattr(builtins, name), budget))
        for name in ("bytes", "bytearray"):
            table[mod, name] = _Call(name, _bytes_call(getattr(builtins, name), budget))
    table["_codecs", "encode"] = _Call("_codecs.encode", _latin1_encode(budget))
    table["collections", "OrderedDict"] = _Call("OrderedDict", _container(collections.OrderedDict, budget))
    table["numpy", "ndarray"] = _NDARRAY
    table["numpy", "dtype"] = _Call("numpy.dtype", _np_dtype(budget))
    for core in _NUMPY_CORES:
        table[f"numpy.{core}.multiarray", "_reconstruct"] = _Call("_reconstruct", _np_reconstruct(budget))
        table[f"numpy.{core}.multiarray", "scalar"] = _Call("scalar", _np_scalar(budget))
        table[f"numpy.{core}.numeric", "_frombuffer"] = _Call("_frombuffer", _np_frombuffer(budget))
    return table


# --- torch's storages, as the machine sees them ---------------------------------------------------

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


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its name and dtype."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_TORCH_DTYPES[self.name])

    @property
    def stored_bytes(self) -> int:
        """Bytes per element once read (bfloat16 is widened to float32)."""
        return 4 if self.name == "BFloat16Storage" else self.dtype.itemsize


class _Storage:
    """A storage read from the file: a read-only 1-D array of its elements (bfloat16 already float32).

    No opcode can reach its attributes: BUILD is refused on it and it has no ``__dict__``.
    """

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        array.flags.writeable = False
        self.array = array


class _PendingTensor:
    __slots__ = ("key", "args")

    def __init__(self, key: str, args: tuple):
        self.key, self.args = key, args
