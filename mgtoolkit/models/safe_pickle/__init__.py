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

The parts: :mod:`.limits` (the caps and the errors), :mod:`.standins` (the names a pickle may ask
for), :mod:`.machine` (the restricted machine and its plain results), :mod:`.torch_reader` and
:mod:`.paddle_reader` (the two file layouts).

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from fixtures.torch_files import write_torch_bin  # tests/fixtures/: torch.save's layout, no torch
>>> path = Path(tempfile.mkdtemp()) / "pytorch_model.bin"
>>> write_torch_bin(path, {"w": np.arange(3, dtype=np.float32)})
>>> read_torch_bin(path)
{'w': array([0., 1., 2.], dtype=float32)}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .limits import MAX_BYTES, PickleLimitError, UnsafePickleError, resolve_allow_unsafe
from .paddle_reader import read_pdparams
from .torch_reader import read_torch_bin

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


def read_pickled_weights(
    path: str | Path, *, allow_unsafe: bool | None = False, max_bytes: int | None = None
) -> dict[str, np.ndarray]:
    """:func:`read_pdparams` for ``.pdparams``/``.pdopt``, :func:`read_torch_bin` for the rest."""
    reader = read_pdparams if Path(path).suffix in (".pdparams", ".pdopt") else read_torch_bin
    return reader(path, allow_unsafe=allow_unsafe, max_bytes=max_bytes)
