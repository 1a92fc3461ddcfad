"""``paddle.save`` files (``.pdparams``, ``.pdopt``), read without paddle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelUnavailableError
from .limits import _Budget, _damaged, _file_size, resolve_allow_unsafe
from .machine import _flatten, _leaf, _result, _unpickle
from .standins import _Call


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
