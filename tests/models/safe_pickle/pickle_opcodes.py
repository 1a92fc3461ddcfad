"""A raw pickle opcode assembler (protocol 2, no torch, no paddle), the files built with it, and
the check that a crafted file is refused in one line. (Not a test module; pytest puts this folder
on ``sys.path``, so the tests import it by name.)
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mgtoolkit.errors import ModelUnavailableError
from mgtoolkit.models.safe_pickle import UnsafePickleError, read_pickled_weights

# --- A raw opcode assembler (protocol 2) ---------------------------------------------------------


def g(module: str, name: str) -> bytes:
    """GLOBAL."""
    return f"c{module}\n{name}\n".encode()


def s(text: str) -> bytes:
    """BINUNICODE."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def b(raw: bytes) -> bytes:
    """BINBYTES (protocol 3)."""
    return b"B" + struct.pack("<I", len(raw)) + raw


def i(n: int) -> bytes:
    """An int: NEWTRUE for ``True``, BININT1, BININT or LONG1."""
    if n is True:
        return b"\x88"
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def t(*items: bytes) -> bytes:
    """A tuple of the items (MARK ... TUPLE)."""
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    """REDUCE."""
    return func + t(*args) + b"R"


def d(**items: bytes) -> bytes:
    """A dict (EMPTY_DICT MARK ... SETITEMS)."""
    return b"}(" + b"".join(s(k) + v for k, v in items.items()) + b"u"


def pk(*parts: bytes, proto: int = 2) -> bytes:
    return bytes([0x80, proto]) + b"".join(parts) + b"."


NONE, FALSE, BUILD = b"N", b"\x89", b"b"
ODICT = call(g("collections", "OrderedDict"))


def storage(key: str, numel: int, kind: str = "FloatStorage") -> bytes:
    """A torch zip storage record (BINPERSID)."""
    return t(s("storage"), g("torch", kind), s(key), s("cpu"), i(numel)) + b"Q"


def tensor(store: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    return call(
        g("torch._utils", "_rebuild_tensor_v2"),
        store,
        i(offset),
        t(*map(i, size)),
        t(*map(i, stride)),
        FALSE,
        ODICT,
    )


def np_dtype(code: str = "f4", state: tuple = (3, "<", None, None, None, -1, -1, 0)) -> bytes:
    """numpy's dtype pickle: ``numpy.dtype(code, False, True)`` then BUILD ``state``."""
    return call(g("numpy", "dtype"), s(code), FALSE, b"\x88") + _plain(state) + BUILD


def np_array(values: np.ndarray, *, dtype: bytes | None = None, raw: bytes | None = None) -> bytes:
    """numpy's array pickle: ``_reconstruct(ndarray, (0,), b'b')`` then BUILD its state."""
    spec = call(g("numpy.core.multiarray", "_reconstruct"), g("numpy", "ndarray"), t(i(0)), b(b"b"))
    dtype = dtype if dtype is not None else np_dtype(values.dtype.str[1:])
    data = b(values.tobytes() if raw is None else raw)
    return spec + t(i(1), t(*map(i, values.shape)), dtype, FALSE, data) + BUILD


def _plain(value) -> bytes:
    if value is None:
        return NONE
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return s(value)
    if isinstance(value, int):
        return i(value)
    return t(*map(_plain, value))


def write_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes], deflate: bool = False) -> Path:
    """A torch.save zip archive: ``archive/data.pkl``, ``archive/byteorder``, ``archive/data/<key>``."""
    mode = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
    return path


def floats(n: int) -> bytes:
    return np.arange(n, dtype="<f4").tobytes()


def zip_state(path: Path, pickle_body: bytes, numel: int = 4) -> Path:
    """A zip checkpoint whose data.pkl is ``pk(pickle_body)`` with one storage ``0`` of ``numel`` floats."""
    return write_zip(path, pk(pickle_body), {"0": floats(numel)})


def one_tensor(offset: int, size: tuple, stride: tuple, numel: int = 4) -> bytes:
    return d(w=tensor(storage("0", numel), offset, size, stride))


def marker_command(marker: Path) -> bytes:
    return s(f"touch {marker}")


# --- What a check asserts ------------------------------------------------------------------------


def refused(path: Path, kind=UnsafePickleError, match: str = "", reader=read_pickled_weights) -> str:
    """``reader(path)`` raises exactly ``kind``, in one line naming the file; returns the message."""
    with pytest.raises(ModelUnavailableError) as caught:
        reader(path)
    message = str(caught.value)
    assert type(caught.value) is kind, message
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert match in message, message
    return message
