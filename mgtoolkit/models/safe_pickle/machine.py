"""The restricted pickle machine, the opt-out's full unpickler, and the plain results they hand back.

See :mod:`mgtoolkit.models.safe_pickle` for the opcodes and names it accepts.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
import pickletools
import struct
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import MgtoolkitWarning, ModelUnavailableError
from .limits import _MAX_DEPTH, _MAX_NODES, _OBJECT_COST, _VIEW_ABOVE, _Budget, _damaged
from .standins import (
    _DTYPES,
    _SCALARS,
    _array,
    _ArraySpec,
    _Call,
    _checked_keys,
    _DTypeSpec,
    _native,
    _PendingTensor,
    _safe_table,
    _Storage,
    _StorageType,
    _Token,
)

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
