"""The caps of one read and its one-line errors (refused, past a cap, damaged).

See :mod:`mgtoolkit.models.safe_pickle` for what the restricted reader allows.
"""

from __future__ import annotations

from pathlib import Path

from ...config import flag
from ...errors import ModelUnavailableError

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


def _file_size(path: Path, what: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _damaged(path, what, exc) from None
