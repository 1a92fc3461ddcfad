"""Read pickle-based weight files (``.bin``, ``.pt``, ``.pdparams``, ``.pdopt``) without running code.

A pickle is a small program: unpickling it may call any function the file names, which is how a
crafted ``pytorch_model.bin`` runs ``os.system``. Naming only safe functions is not enough either:
the standard unpickler's BUILD opcode hands any object a state (a numpy dtype with edited flags
crashes the process, an ``OrderedDict`` given an ``__array_interface__`` reads process memory into
an array, a stand-in's attributes can be rewritten for the rest of the process), and
``numpy.ndarray(shape)`` allocates gigabytes from a few bytes.

So the readers here run the pickle on their own small virtual machine (:class:`_Machine`), in the
manner of PyTorch's ``weights_only`` unpickler (``torch/_weights_only_unpickler.py``):

- **Names.** ``GLOBAL``/``STACK_GLOBAL`` are looked up in a table, never imported. The table holds
  only what a state dict needs: stand-ins for torch's tensor and storage rebuilders (torch itself is
  never imported), numpy's array, dtype and scalar reconstructors (also stand-ins: they return
  descriptions, never numpy objects built from the file's state), ``collections.OrderedDict`` and
  plain builtins such as ``dict``, ``tuple`` and ``int``. Any other name stops the read with
  :class:`UnsafePickleError` before anything is called. Only table entries can be called (REDUCE).
- **Opcodes.** Only the opcodes of data (numbers, strings, bytes, tuples, lists, dicts, sets, the
  memo), REDUCE on a table entry, BUILD and BINPERSID (torch's storages). INST, OBJ, NEWOBJ(_EX),
  the extension registry and out-of-band buffers are refused.
- **BUILD** applies no state to any object. It is accepted on exactly three things: numpy's array
  description (the state is validated: a shape of non-negative ints, a dtype from :data:`_DTYPES`,
  raw bytes of exactly shape x itemsize, which are copied into a new C-contiguous array), numpy's
  dtype description (only the state numpy writes for a plain numeric dtype: no flags, no fields,
  no sizes) and ``OrderedDict`` (only torch's ``{"_metadata": ...}``, which is dropped).
- **Results** are ``type(x) is np.ndarray``, C-contiguous, native byte order, of a numeric dtype
  from the table (bool, ints, floats, complex; never object), copied out of their storage after a
  bounds check of every element the view reaches.
- **Caps**: the bytes the read materialises (storages, tensors, arrays, containers, names) stay
  under ``min(max_bytes, 32 x the file size + 1 MiB)`` (:data:`MAX_BYTES` = 64 GiB by default);
  at most :data:`_MAX_TENSORS` tensors; containers at most :data:`_MAX_DEPTH` deep and never
  holding themselves; dict keys and set items are text, bytes, ``None``, bools or ints below 2**60
  (hashing a deep tuple overflows the C stack; floats, big ints and tuples hash to values a pickle
  can make collide, and colliding keys insert in quadratic time). A zip member's declared size is checked against the cap before
  it is read.

Our torch names are the part of torch's ``_get_allowed_globals`` a state dict uses (the tensor and
parameter rebuilders, the typed storages, ``OrderedDict``). How ours differs from torch's: torch's
``BUILD`` on an ``OrderedDict`` updates its ``__dict__`` (ours drops the state), torch trusts the
numpy objects a user allowlists (ours never builds numpy objects from the file's state), and, as
far as we read it, torch caps neither the bytes a file may materialise nor its nesting.
``picklescan`` (a denylist of dangerous globals, reported without loading) and ``fickling`` (static
analysis of the opcodes plus an allowlist of ML imports) decide from the names alone; we read with
an allowlist of names *and* of what the allowed objects may be given. Every failure is one line:
:class:`UnsafePickleError` (asked for a name or an operation a weights file never needs),
:class:`PickleLimitError` (past a cap) or :class:`~mgtoolkit.errors.ModelUnavailableError`
(damaged), each naming the file.

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

import codecs
import collections
import io
import math
import pickle
import pickletools
import struct
import sys
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
    "MAX_BYTES",
    "PickleLimitError",
    "UnsafePickleError",
    "read_torch_bin",
    "read_pdparams",
    "read_pickled_weights",
    "resolve_allow_unsafe",
    "PICKLE_SUFFIXES",
]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pdparams", ".pdopt")
"""File endings that hold pickles; :func:`read_pickled_weights` reads any of them."""

MAX_BYTES = 64 * 1024**3
"""Default ``max_bytes``: the most memory one read may materialise, whatever the file's size."""

_FILE_MULTIPLE = 32  # shared storages, bfloat16 widened, the copies out; a pdparams of scalars takes ~21x
_FLOOR = 1 << 20
_MAX_TENSORS = 1_000_000
_MAX_DEPTH = 64
_MAX_NODES = 2_000_000
_VIEW_ABOVE = 1 << 16  # BINBYTES payloads larger than this stay views of the pickle's bytes
_OBJECT_COST = 64  # bytes charged for each container, memo entry or call result the pickle makes

_OPT_OUT = "pass allow_unsafe_pickle=True or set MGTOOLKIT_ALLOW_UNSAFE_PICKLE=1"
_CONVERT = {
    "torch": "safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')",
    "paddle": "safetensors.numpy.save_file(paddle.load(f, return_numpy=True), 'model.safetensors')",
}


def _one_line(text: object) -> str:
    """``text`` with control characters escaped (a name from a crafted file may hold a newline)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


class UnsafePickleError(ModelUnavailableError):
    """A weights pickle asked for something other than tensors and plain containers; nothing ran.

    Parameters
    ----------
    path : str or Path
        The file.
    requested : str
        What the pickle asked for (``"builtins.exec"``, ``"os.system"``, ``"state for a
        collections.OrderedDict (BUILD)"``, ...).
    framework : {"torch", "paddle"}
        Which kind of file it claims to be (chooses the conversion hint).
    """

    def __init__(self, path: str | Path, requested: str, framework: str = "torch"):
        self.path, self.requested = str(path), requested
        path, requested = _one_line(path), _one_line(requested)[:200]
        super().__init__(
            f"{path}: not loaded: its pickle asks for {requested}, and a weights file needs only "
            f"tensors and plain containers; no code from the file ran. Convert it to safetensors in "
            f"an environment you trust (e.g. {_CONVERT[framework]}), or if you trust whoever made "
            f"it, {_OPT_OUT}."
        )


class PickleLimitError(ModelUnavailableError):
    """A weights pickle would go past a cap (memory, tensor count, nesting); nothing ran.

    Parameters
    ----------
    path : str or Path
        The file.
    reason : str
        Which cap, and how far past it.
    framework : {"torch", "paddle"}
        Which kind of file it claims to be (chooses the conversion hint).
    """

    def __init__(self, path: str | Path, reason: str, framework: str = "torch"):
        self.path, self.reason = str(path), reason
        path, reason = _one_line(path), _one_line(reason)
        super().__init__(
            f"{path}: not loaded: {reason}; a weights file holds only its tensors, so this one is "
            f"crafted or damaged (no code from it ran). Download it again, or convert it to "
            f"safetensors in an environment you trust (e.g. {_CONVERT[framework]})."
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
    if isinstance(exc, str):
        detail = exc
    else:
        try:
            detail = f"{type(exc).__name__}: {exc}"
        except Exception:  # noqa: BLE001 - a message that cannot be printed is still a damaged file
            detail = type(exc).__name__
    detail = _one_line(" ".join(str(detail).split())[:200])
    return ModelUnavailableError(
        f"{_one_line(path)}: cannot read it as {what} ({detail}); the file is damaged, truncated or of "
        "another kind: download it again, or convert it to safetensors where it was made."
    )


class _Budget:
    """The caps of one read: bytes materialised, tensors, tree nodes; past one, the read stops."""

    def __init__(self, path: Path, framework: str, file_size: int, max_bytes: int | None, unsafe: bool):
        limit = MAX_BYTES if max_bytes is None else int(max_bytes)
        self.cap = limit if unsafe else min(limit, _FILE_MULTIPLE * file_size + _FLOOR)
        self.path, self.framework, self.file_size = path, framework, file_size
        self.used = self.tensors = self.nodes = 0

    def take(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.cap:
            raise PickleLimitError(
                self.path,
                f"{what} would take the memory of the read past {self.cap:,} bytes (the cap for "
                f"a file of {self.file_size:,} bytes: {_FILE_MULTIPLE}x its size plus 1 MiB, at most "
                f"max_bytes)",
                self.framework,
            )

    def tensor(self, nbytes: int, what: str) -> None:
        self.tensors += 1
        if self.tensors > _MAX_TENSORS:
            raise PickleLimitError(self.path, f"it makes more than {_MAX_TENSORS:,} tensors", self.framework)
        self.take(nbytes + _OBJECT_COST, what)

    def refuse(self, requested: str) -> UnsafePickleError:
        return UnsafePickleError(self.path, requested, self.framework)

    def limit(self, reason: str) -> PickleLimitError:
        return PickleLimitError(self.path, reason, self.framework)


# --- What a restricted unpickler may build ------------------------------------------------------

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


# --- The restricted pickle machine --------------------------------------------------------------


class _Machine:
    """A pickle virtual machine that builds only data (see the module docstring).

    Parameters
    ----------
    data : bytes
        The pickle, from ``start``.
    table : dict
        ``(module, name)`` to what GLOBAL/STACK_GLOBAL push (:class:`_Call` or marker objects).
    budget : _Budget
        The caps; also where refusals get the file's name.
    persistent_load : callable, optional
        BINPERSID's handler (torch's storage records); without one, BINPERSID is refused.
    """

    def __init__(self, data: bytes, table: dict, budget: _Budget, persistent_load: Callable | None = None):
        self.data, self.pos, self.table, self.budget = data, 0, table, budget
        self.view = memoryview(data).toreadonly()
        self.persistent_load = persistent_load
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: dict[int, Any] = {}

    # reading the opcode arguments
    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise EOFError(f"the pickle ends inside an opcode at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def line(self) -> bytes:
        end = self.data.find(b"\n", self.pos, self.pos + 65536)
        if end < 0:
            raise EOFError(f"an unterminated line at byte {self.pos}")
        text, self.pos = self.data[self.pos : end], end + 1
        return text

    def pop_mark(self) -> list:
        items, self.stack = self.stack, self.marks.pop()
        return items

    def push_new(self, obj: Any) -> None:
        self.budget.take(max(_OBJECT_COST, sys.getsizeof(obj)), "a container")  # an empty set: 216
        self.stack.append(obj)

    def load(self) -> Any:
        """Run to STOP and return the object built."""
        while True:
            op = self.read(1)[0]
            handler = _OPS.get(op)
            if handler is None:
                name = _OPNAMES.get(op)
                if name is None:
                    raise pickle.UnpicklingError(f"unknown opcode {op:#04x} at byte {self.pos - 1}")
                raise self.budget.refuse(f"the {name} opcode")
            if handler(self):
                return self.stack.pop()

    # opcodes
    def op_proto(self) -> None:
        if self.read(1)[0] > 5:
            raise pickle.UnpicklingError("unsupported pickle protocol")

    def op_frame(self) -> None:
        self.read(8)  # a hint only: the frame's opcodes follow inline

    def op_stop(self) -> bool:
        return True

    def op_mark(self) -> None:
        self.marks.append(self.stack)
        self.stack = []

    def op_pop(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self) -> None:
        self.pop_mark()

    def op_dup(self) -> None:
        self.stack.append(self.stack[-1])

    def push_int(self, value: int) -> None:
        self.stack.append(value)

    def op_int(self) -> None:
        text = self.line()
        self.stack.append(text == b"01" if text in (b"00", b"01") else int(text, 0))

    def op_long(self) -> None:
        self.stack.append(int(self.line().rstrip(b"L"), 0))

    def op_long_bin(self, size_fmt: str) -> None:
        n = self.unpack(size_fmt)
        if n > 256:
            raise self.budget.refuse(f"an integer of {n} bytes")
        self.stack.append(int.from_bytes(self.read(n), "little", signed=True))

    def op_float(self) -> None:
        self.stack.append(float(self.line()))

    def op_string(self) -> None:
        text = self.line()
        if len(text) < 2 or text[0] != text[-1] or text[:1] not in (b"'", b'"'):
            raise pickle.UnpicklingError("a STRING opcode without quotes")
        self.stack.append(codecs.escape_decode(text[1:-1])[0].decode("latin1"))

    def op_bytes(self, size_fmt: str, kind: type) -> None:
        n = self.unpack(size_fmt)
        if kind is bytes and n > _VIEW_ABOVE:  # an array's data: a view of the file, no second copy
            self.read(n)
            self.stack.append(self.view[self.pos - n : self.pos])
            return
        raw = self.read(n)
        self.stack.append(raw if kind is bytes else raw.decode("latin1") if kind is str else bytearray(raw))

    def op_unicode(self, size_fmt: str) -> None:
        self.stack.append(self.read(self.unpack(size_fmt)).decode("utf-8", "surrogatepass"))

    def op_text_unicode(self) -> None:
        self.stack.append(self.line().decode("raw-unicode-escape"))

    def op_tuple(self, n: int | None) -> None:
        if n is None:
            items = self.pop_mark()
        elif n:
            items, self.stack[-n:] = self.stack[-n:], []
            if len(items) != n:
                raise IndexError("a tuple opcode on a short stack")
        else:
            items = []
        self.push_new(tuple(items))

    def op_list(self) -> None:
        self.push_new(self.pop_mark())

    def op_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise pickle.UnpicklingError("a DICT opcode with an odd number of items")
        self.push_new({})
        self.set_items(self.stack[-1], items)

    def op_empty(self, kind: type) -> None:
        self.push_new(kind())

    def op_append(self) -> None:
        value = self.stack.pop()
        self.add_items(self.stack[-1], [value])

    def op_appends(self) -> None:
        items = self.pop_mark()
        self.add_items(self.stack[-1], items)

    def add_items(self, target: Any, items: list) -> None:
        if type(target) is not list:
            raise self.budget.refuse(f"APPEND to a {type(target).__name__}")
        self.budget.take(8 * len(items), "a list")
        target.extend(items)

    def op_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self.set_items(self.stack[-1], [key, value])

    def op_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise pickle.UnpicklingError("a SETITEMS opcode with an odd number of items")
        self.set_items(self.stack[-1], items)

    def set_items(self, target: Any, items: list) -> None:
        if type(target) not in (dict, collections.OrderedDict):
            raise self.budget.refuse(f"SETITEM on a {type(target).__name__}")
        keys = items[0::2]
        _checked_keys(keys, self.budget)
        self.budget.take(_OBJECT_COST // 2 * len(keys), "a dict")
        target.update(zip(keys, items[1::2], strict=True))

    def op_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise self.budget.refuse(f"ADDITEMS on a {type(target).__name__}")
        self.budget.take(_OBJECT_COST // 2 * len(items), "a set")
        target.update(_checked_keys(items, self.budget))

    def op_frozenset(self) -> None:
        items = self.pop_mark()
        self.push_new(frozenset(_checked_keys(items, self.budget)))

    def find(self, module: Any, name: Any) -> None:
        if not (isinstance(module, str) and isinstance(name, str)):
            raise pickle.UnpicklingError("a global whose name is not text")
        key = (module, name)
        if key not in self.table:
            raise self.budget.refuse(f"{module[:80]}.{name[:80]}")
        self.stack.append(self.table[key])

    def op_global(self) -> None:
        module = self.line().decode("utf-8")
        self.find(module, self.line().decode("utf-8"))

    def op_stack_global(self) -> None:
        name, module = self.stack.pop(), self.stack.pop()
        self.find(module, name)

    def op_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not isinstance(func, _Call):
            raise self.budget.refuse(f"a call of a {_describe(func)}")
        if type(args) is not tuple:
            raise self.budget.refuse(f"a call of {func.name} with a {type(args).__name__} of arguments")
        result = func.fn(*args)
        self.budget.take(_OBJECT_COST, f"a {func.name}")
        self.stack[-1] = result

    def op_build(self) -> None:
        state = self.stack.pop()
        _build(self.stack[-1], state, self.budget)

    def op_binpersid(self) -> None:
        if self.persistent_load is None:
            raise self.budget.refuse("a persistent id (BINPERSID) outside a torch checkpoint")
        pid = self.stack.pop()
        self.stack.append(self.persistent_load(pid))

    def op_get(self, index: int) -> None:
        self.stack.append(self.memo[index])

    def op_put(self, index: int) -> None:
        if not 0 <= index < 1 << 32:  # the binary opcodes' range; text PUTs of k * (2**61 - 1) collide
            raise pickle.UnpicklingError(f"a memo index outside 0..2**32 ({str(index)[:20]})")
        self.budget.take(_OBJECT_COST, "the memo")
        self.memo[index] = self.stack[-1]


def _describe(obj: Any) -> str:
    """A short name for what the pickle handed over (never its repr: it may nest without end)."""
    ours = {_DTypeSpec: "numpy.dtype", _ArraySpec: "numpy.ndarray", _Storage: "torch storage record"}
    if type(obj) in ours:
        return ours[type(obj)]
    name = getattr(obj, "name", None) if isinstance(obj, (_Call, _Token, _StorageType)) else None
    return name or type(obj).__name__


def _build(inst: Any, state: Any, budget: _Budget) -> None:
    """BUILD: validated state for numpy's array and dtype descriptions, torch's metadata dropped."""
    if isinstance(inst, _ArraySpec) and inst.array is None and type(state) is tuple:
        if len(state) == 5 and type(state[0]) is int and state[0] == 1:
            state = state[1:]
        if len(state) == 4:
            shape, spec, fortran, raw = state
            inst.array = _array(raw, spec, shape, fortran, budget)
            return
    elif isinstance(inst, _DTypeSpec) and not inst.built and type(state) is tuple:
        if (
            len(state) == 8
            and type(state[0]) is int
            and state[0] == 3
            and type(state[1]) is str
            and state[1] in ("<", ">", "|", "=")
        ):
            plain = state[2:] == (None, None, None, -1, -1, 0)
            if plain and all(type(v) is int for v in state[5:]):
                inst.order, inst.built = state[1], True
                return
        raise budget.refuse("a numpy dtype with edited state (flags, fields or sizes)")
    elif type(inst) is collections.OrderedDict and type(state) is dict and set(state) <= {"_metadata"}:
        return  # torch's module metadata (versions of each submodule): not weights, dropped
    raise budget.refuse(f"state for a {_describe(inst)} (BUILD)")


def _install_ops() -> dict[int, Callable[[_Machine], Any]]:
    m, p = _Machine, pickle
    ops: dict[bytes, Callable[[_Machine], Any]] = {
        p.PROTO: m.op_proto, p.FRAME: m.op_frame, p.STOP: m.op_stop, p.MARK: m.op_mark,
        p.POP: m.op_pop, p.POP_MARK: m.op_pop_mark, p.DUP: m.op_dup,
        p.NONE: lambda s: s.stack.append(None), p.NEWTRUE: lambda s: s.stack.append(True),
        p.NEWFALSE: lambda s: s.stack.append(False),
        p.INT: m.op_int, p.LONG: m.op_long, p.FLOAT: m.op_float, p.STRING: m.op_string,
        p.BININT: lambda s: s.push_int(s.unpack("<i")), p.BININT1: lambda s: s.push_int(s.unpack("<B")),
        p.BININT2: lambda s: s.push_int(s.unpack("<H")),
        p.LONG1: lambda s: s.op_long_bin("<B"), p.LONG4: lambda s: s.op_long_bin("<i"),
        p.BINFLOAT: lambda s: s.stack.append(s.unpack(">d")),
        p.BINSTRING: lambda s: s.op_bytes("<i", str), p.SHORT_BINSTRING: lambda s: s.op_bytes("<B", str),
        p.BINBYTES: lambda s: s.op_bytes("<I", bytes), p.SHORT_BINBYTES: lambda s: s.op_bytes("<B", bytes),
        p.BINBYTES8: lambda s: s.op_bytes("<Q", bytes), p.BYTEARRAY8: lambda s: s.op_bytes("<Q", bytearray),
        p.UNICODE: m.op_text_unicode, p.BINUNICODE: lambda s: s.op_unicode("<I"),
        p.SHORT_BINUNICODE: lambda s: s.op_unicode("<B"), p.BINUNICODE8: lambda s: s.op_unicode("<Q"),
        p.EMPTY_TUPLE: lambda s: s.op_tuple(0), p.TUPLE: lambda s: s.op_tuple(None),
        p.TUPLE1: lambda s: s.op_tuple(1), p.TUPLE2: lambda s: s.op_tuple(2),
        p.TUPLE3: lambda s: s.op_tuple(3),
        p.EMPTY_LIST: lambda s: s.op_empty(list), p.LIST: m.op_list, p.APPEND: m.op_append,
        p.APPENDS: m.op_appends, p.EMPTY_DICT: lambda s: s.op_empty(dict), p.DICT: m.op_dict,
        p.SETITEM: m.op_setitem, p.SETITEMS: m.op_setitems, p.EMPTY_SET: lambda s: s.op_empty(set),
        p.ADDITEMS: m.op_additems, p.FROZENSET: m.op_frozenset,
        p.GLOBAL: m.op_global, p.STACK_GLOBAL: m.op_stack_global, p.REDUCE: m.op_reduce,
        p.BUILD: m.op_build, p.BINPERSID: m.op_binpersid,
        p.GET: lambda s: s.op_get(int(s.line())), p.BINGET: lambda s: s.op_get(s.unpack("<B")),
        p.LONG_BINGET: lambda s: s.op_get(s.unpack("<I")),
        p.PUT: lambda s: s.op_put(int(s.line())), p.BINPUT: lambda s: s.op_put(s.unpack("<B")),
        p.LONG_BINPUT: lambda s: s.op_put(s.unpack("<I")),
        p.MEMOIZE: lambda s: s.op_put(len(s.memo)),
    }  # fmt: skip
    return {code[0]: handler for code, handler in ops.items()}


_OPS = _install_ops()
_OPNAMES = {ord(op.code): op.name for op in pickletools.opcodes}


class _Unpickler(pickle.Unpickler):
    """The opt-out's full unpickler: our stand-ins first, every other name the ordinary way."""

    def __init__(self, file: Any, stand_ins: dict):
        super().__init__(file, encoding="latin1")
        self._stand_ins = stand_ins

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        return self._stand_ins[key] if key in self._stand_ins else super().find_class(module, name)


def _unpickle(
    data: bytes,
    budget: _Budget,
    what: str,
    stand_ins: dict,
    unsafe: bool,
    persistent_load: Callable | None = None,
) -> Any:
    """Run the pickle in ``data``; any failure becomes one error naming the file."""
    path = budget.path
    try:
        if unsafe:
            warnings.warn(
                f"{path}: unpickled with the full unpickler (allow_unsafe_pickle): code in this file can run.",
                MgtoolkitWarning,
                stacklevel=4,
            )
            unpickler = _Unpickler(io.BytesIO(data), stand_ins)
            if persistent_load is not None:
                unpickler.persistent_load = persistent_load
            return unpickler.load()
        table = {**_safe_table(budget), **stand_ins}
        return _Machine(data, table, budget, persistent_load).load()
    except ModelUnavailableError:
        raise
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - one message for any damage
        raise _damaged(path, what, exc) from None


# --- Plain results ------------------------------------------------------------------------------


def _tree(obj: Any, budget: _Budget, pending: Callable[[Any], Any] | None, depth: int, seen: set) -> Any:
    """The pickle's object as plain dicts, lists, tuples, arrays and scalars (cycle- and depth-checked)."""
    budget.nodes += 1
    budget.take(_OBJECT_COST, "the containers")
    if budget.nodes > _MAX_NODES:
        raise budget.limit(f"its containers hold more than {_MAX_NODES:,} items in all")
    if isinstance(obj, _ArraySpec):
        if obj.array is None:
            raise budget.refuse("a numpy array without its data (an uninitialised ndarray)")
        return obj.array
    if isinstance(obj, _PendingTensor):
        return pending(obj) if pending is not None else None
    if not isinstance(obj, (dict, list, tuple)):
        return obj if isinstance(obj, (*_SCALARS, np.ndarray, np.generic)) else None
    if depth >= _MAX_DEPTH:
        raise budget.limit(f"its containers nest more than {_MAX_DEPTH} deep")
    if id(obj) in seen:
        raise budget.limit("a container holds itself")
    seen.add(id(obj))
    try:
        if isinstance(obj, dict):
            return {k: _tree(v, budget, pending, depth + 1, seen) for k, v in obj.items()}
        items = [_tree(v, budget, pending, depth + 1, seen) for v in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    finally:
        seen.discard(id(obj))


def _leaf(value: Any) -> np.ndarray | None:
    """A numeric array from a state-dict value, or ``None`` for metadata (names, strings, ...)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        value = value[1]  # paddle 2.1 saved a tensor as (name, ndarray)
    if isinstance(value, (bool, int, float, complex, np.generic)) and not isinstance(value, str):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.newbyteorder("=") in _NATIVE:
        if type(value) is np.ndarray and value.flags.c_contiguous and value.dtype.isnative:
            return value
        return _native(value)
    return None


_NATIVE = {np.dtype(code).newbyteorder("=") for code in _DTYPES.values()}


def _flatten(state: dict, budget: _Budget, prefix: str = "") -> dict[str, np.ndarray]:
    """Numeric leaves of a (possibly nested) dict, nested keys joined with ``.``."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        budget.take(len(name) + _OBJECT_COST, "the tensor names")
        if isinstance(value, dict):
            out.update(_flatten(value, budget, name + "."))
        elif (array := _leaf(value)) is not None:
            out[name] = array
    return out


def _result(obj: Any, budget: _Budget, what: str, pending: Callable | None = None) -> dict:
    """The pickle's object as a plain dict (checked), or one error naming the file."""
    try:
        tree = _tree(obj, budget, pending, 0, set())
    except ModelUnavailableError:
        raise
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001
        raise _damaged(budget.path, what, exc) from None
    if not isinstance(tree, dict):
        raise _damaged(budget.path, what, f"it holds a {type(obj).__name__}, not a dict of tensors")
    return tree


def _file_size(path: Path, what: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _damaged(path, what, exc) from None


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
_TORCH_WHAT = "a PyTorch checkpoint"


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


class _PendingTensor:
    __slots__ = ("key", "args")

    def __init__(self, key: str, args: tuple):
        self.key, self.args = key, args


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


# --- Paddle -------------------------------------------------------------------------------------


def _paddle_eval(budget: _Budget) -> Callable[..., Any]:
    """``builtins.eval`` as ``paddle.save`` uses it for a DenseTensor: ``eval('data', {'data': a})``.

    Only that exact form is accepted, and nothing is evaluated: the array is returned.
    """

    def data_only(expression: Any, namespace: Any = None, *_: Any) -> Any:
        if (
            type(expression) is str
            and expression == "data"
            and type(namespace) is dict
            and list(namespace) == ["data"]
        ):
            return namespace["data"]
        shown = expression[:40] if isinstance(expression, str) else type(expression).__name__
        raise budget.refuse(f"builtins.eval({shown!r})")

    return data_only


def _join_big_params(state: dict, budget: _Budget) -> dict:
    """Undo ``paddle.save``'s split of parameters over 1 GiB (protocol 2 and 3)."""
    info = state.pop("UnpackBigParamInfor@@", None) or {}  # sic: paddle's spelling
    for key, value in info.items():
        slices = [_leaf(state.pop(part)) for part in value["slices"]]
        if any(part is None for part in slices):
            raise ValueError(f"a slice of {key} is not an array")
        budget.take(sum(part.nbytes for part in slices), f"parameter {key}")
        state[key] = np.concatenate([part.reshape(-1) for part in slices]).reshape(value["OriginShape"])
    return state


def read_pdparams(
    path: str | Path, *, allow_unsafe: bool | None = False, max_bytes: int | None = None
) -> dict[str, np.ndarray]:
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
    max_bytes : int, optional
        The most memory the read may materialise (default :data:`MAX_BYTES`); the restricted
        reader also stops at 32 times the file's size plus 1 MiB.

    Returns
    -------
    dict of str to numpy.ndarray
        Every tensor, nested dicts (an optimizer's ``LR_Scheduler``) flattened with ``.`` and numbers
        as 0-d arrays; the name table and other non-numeric entries are left out. Paddle's bfloat16
        arrays are saved as uint16 and come back so.

    Raises
    ------
    UnsafePickleError
        The pickle names or does something other than arrays and plain containers.
    PickleLimitError
        The read would go past a cap (memory, tensors, nesting).
    ModelUnavailableError
        The file is damaged, truncated or not a pickle.
    """
    path = Path(path)
    what = "a paddle.save file"
    unsafe = resolve_allow_unsafe(allow_unsafe)
    budget = _Budget(path, "paddle", _file_size(path, what), max_bytes, unsafe)
    try:
        data = path.read_bytes()
        stand_ins = (
            {}
            if unsafe
            else {(m, "eval"): _Call("eval", _paddle_eval(budget)) for m in ("builtins", "__builtin__")}
        )
        state = _result(_unpickle(data, budget, what, stand_ins, unsafe), budget, what)
        state.pop("StructuredToParameterName@@", None)
        return _flatten(_join_big_params(state, budget), budget)
    except ModelUnavailableError:
        raise
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001
        raise _damaged(path, what, exc) from None


def read_pickled_weights(
    path: str | Path, *, allow_unsafe: bool | None = False, max_bytes: int | None = None
) -> dict[str, np.ndarray]:
    """:func:`read_pdparams` for ``.pdparams``/``.pdopt``, :func:`read_torch_bin` for the rest."""
    reader = read_pdparams if Path(path).suffix in (".pdparams", ".pdopt") else read_torch_bin
    return reader(path, allow_unsafe=allow_unsafe, max_bytes=max_bytes)
