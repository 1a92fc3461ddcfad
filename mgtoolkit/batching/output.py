"""Where a batch writes: a local folder or any filesystem fsspec/pyarrow can write.

Only the process running the job writes; each clip's sidecar first, then its WAV, never overwriting.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from ..errors import InvalidInputError
from ..io.audio import ensure_writable_dir, wav_bytes, write_atomic
from ..types import Clip


class _Folder:
    """A local folder: atomic, never-overwriting writes (:func:`mgtoolkit.io.audio.write_atomic`)."""

    def __init__(self, out: str | os.PathLike, field: str):
        self.root = ensure_writable_dir(out, field)
        self.shown = str(self.root)

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def read(self, name: str, limit: int) -> bytes | None:
        """The first ``limit`` bytes of ``name`` (a regular file, not followed through a symlink)."""
        path = self.root / name
        if path.is_symlink() or not path.is_file():
            return None
        with path.open("rb") as handle:
            return handle.read(limit)

    def write(self, name: str, data: bytes) -> str:
        return str(write_atomic(self.root / name, lambda tmp: tmp.write_bytes(data)))


class _Remote:
    """A folder on an fsspec filesystem (``memory://``, ``s3://``, ``gs://``, a shared disk...).

    A file is written under a temporary name and moved into place (object stores make it appear
    whole); one that exists is never written again.
    """

    def __init__(self, url: str, field: str):
        self.fs, self.root = _filesystem(url, field)
        self.shown = url.rstrip("/")
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(
                field, url, f"cannot be created ({exc})", "choose a folder you can write to"
            ) from None

    def _path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self._path(name)))

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.rm(self._path(name))

    def read(self, name: str, limit: int) -> bytes | None:
        """The first ``limit`` bytes of ``name``, if it is there."""
        if not self.exists(name):
            return None
        with self.fs.open(self._path(name), "rb") as handle:
            return handle.read(limit)

    def write(self, name: str, data: bytes) -> str:
        path = self._path(name)
        if self.fs.exists(path):
            raise FileExistsError(f"{path} exists; mgtoolkit never overwrites")
        tmp = self._path(f".mg-{uuid.uuid4().hex}.part")
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
        return f"{self.shown}/{name}"


def _filesystem(url: str, field: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path)`` for ``url``; pyarrow's filesystems where fsspec lacks one."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as fsspec_error:
        try:
            from fsspec.implementations.arrow import ArrowFSWrapper
            from pyarrow import fs as pafs

            arrow, path = pafs.FileSystem.from_uri(url)
            return ArrowFSWrapper(arrow), path
        except Exception:  # noqa: BLE001 - neither library can write there
            raise InvalidInputError(
                field,
                url,
                f"is not a filesystem fsspec or pyarrow can write ({fsspec_error})",
                "pass a folder or e.g. s3://bucket/path",
            ) from None


def open_output(out: str | os.PathLike, field: str = "out") -> _Folder | _Remote:
    """Where a batch writes: a local folder, or a URL with a ``scheme://``."""
    if isinstance(out, str) and "://" in out and not out.startswith("file://"):
        return _Remote(out, field)
    return _Folder(str(out).removeprefix("file://"), field)


def _write_clip(output: _Folder | _Remote, stem: str, clip: Clip) -> str | None:
    """Write ``stem.json`` then ``stem.wav`` (the WAV marks it done); ``None`` if it exists."""
    if output.exists(f"{stem}.wav"):
        return None
    metadata = {**clip.metadata(), "file": f"{stem}.wav"}
    if output.exists(f"{stem}.json"):  # a sidecar without its WAV: left by a run that was stopped?
        if not _our_sidecar(output, stem):
            raise FileExistsError(
                f"{output.shown}/{stem}.json exists and was not written by mgtoolkit; move it away"
            )
        output.remove(f"{stem}.json")
    output.write(
        f"{stem}.json", (json.dumps(metadata, indent=2, ensure_ascii=False, default=_plain) + "\n").encode()
    )
    try:
        return output.write(f"{stem}.wav", wav_bytes(clip.waveform, clip.sample_rate))
    except FileExistsError:
        return None


def _our_sidecar(output: _Folder | _Remote, stem: str) -> bool:
    """Whether ``stem.json`` is a sidecar a batch wrote for ``stem.wav`` (JSON naming that WAV,
    with mgtoolkit's version): only such a file is replaced, never someone else's."""
    data = output.read(f"{stem}.json", 10_000_000)
    try:
        sidecar = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(sidecar, dict)
        and sidecar.get("file") == f"{stem}.wav"
        and "mgtoolkit_version" in sidecar
        and isinstance(sidecar.get("parameters"), dict)
    )


def _plain(obj: Any) -> Any:
    return obj.item() if hasattr(obj, "item") else str(obj)
