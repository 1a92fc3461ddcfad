"""The store of folders mgtoolkit builds for the libraries: ``config.cache_root()/converted/<name>-<key>/``.

Each entry is written into a staging folder renamed into place, with a manifest holding the
sha256 of every file, so an interrupted build leaves nothing and a damaged entry is rebuilt; the key
follows the source's names, sizes and modification times, so a changed source gets a new entry and
the old one is dropped. What goes into an entry is decided by :mod:`mgtoolkit.models.weights`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..config import cache_root, private_dir
from ..errors import ModelUnavailableError

__all__ = ["CONVERTER_VERSION", "MANIFEST", "conversions_done", "converted_root", "source_key", "write_entry"]

CONVERTER_VERSION = 1
"""Part of every cache key: bump it when the conversion changes, so old copies are rebuilt."""


MANIFEST = "mgtoolkit-converted.json"


_STAGING_PREFIX = ".staging-"


_STALE_STAGING_S = 6 * 3600


_COUNTER = {"conversions": 0}


def conversions_done() -> int:
    """How many torch-to-paddle conversions this process has run (a later load of the same weights
    reads the cached copy and does not add one)."""
    return _COUNTER["conversions"]


def converted_root() -> Path:
    """Where converted copies live: ``config.cache_root()/converted``."""
    return cache_root() / "converted"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[-60:] or "model"


def _walk(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in Path(rel).parts):
            yield rel, path


def source_key(folder: Path) -> str:
    """A short hash of what the folder holds (names, sizes, modification times; symlinks followed),
    the folder's real path and :data:`CONVERTER_VERSION`: any change gives a new key."""
    digest = hashlib.sha256(f"{CONVERTER_VERSION}\0{folder.resolve()}".encode())
    for rel, path in _walk(folder):
        stat = path.stat()
        digest.update(f"\0{rel}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry_ok(entry: Path) -> bool:
    """The copy is complete and unchanged: every file of the manifest is there with its size and
    modification time, or, where those moved, its sha256."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        for rel, rec in manifest["files"].items():
            stat = (entry / rel).stat()
            if stat.st_size != rec["size"]:
                return False
            if stat.st_mtime_ns != rec["mtime_ns"] and _sha256(entry / rel) != rec["sha256"]:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_entry(
    folder: Path,
    entry: Path,
    fill: Callable[[Path], dict[str, dict]],
    *,
    name: str,
    field: str,
    linked: bool,
    allow_unsafe: bool | None,
) -> Path:
    """Build ``entry`` from ``folder``: ``fill(staging)`` writes the files into a staging folder and
    returns the manifest's ``{path: {size, mtime_ns, sha256}}``; the folder is then renamed to
    ``entry``. ``linked``: the weights are links (no conversion counted, no disk check)."""
    kind = "paddle" if linked else "convert"
    root = private_dir(converted_root())
    _clear_stale_staging(root)
    if kind != "paddle":
        _check_space(folder, root, name, field)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{entry.name}-", dir=root))
    try:
        files = fill(staging)
        manifest = {
            "version": CONVERTER_VERSION,
            "source": str(folder.resolve()),
            "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kind": "linked" if kind == "paddle" else "converted",
            "allow_unsafe_pickle": bool(allow_unsafe),
            "files": files,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if _entry_ok(entry):  # another process finished the same copy meanwhile
            shutil.rmtree(staging, ignore_errors=True)
            return entry
        if entry.exists():  # a stale or damaged copy: replace it
            shutil.rmtree(entry)
        try:
            os.rename(staging, entry)
        except OSError:
            if not _entry_ok(entry):  # not a concurrent conversion that won
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ModelUnavailableError):
            raise
        raise ModelUnavailableError(
            f"{field}={name!r}: converting {folder} to paddle format in {root} failed ({exc}); nothing was "
            "kept. Free disk space there or set MGTOOLKIT_CACHE to a folder with room, and load again."
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if kind != "paddle":
        _COUNTER["conversions"] += 1
    _drop_older_copies(root, entry, str(folder.resolve()))
    return entry


def _check_space(folder: Path, root: Path, name: str, field: str) -> None:
    need = sum(p.stat().st_size for _, p in _walk(folder)) + (64 << 20)
    free = shutil.disk_usage(root).free
    if free < need:
        raise ModelUnavailableError(
            f"{field}={name!r}: converting {folder} needs about {need / 1e9:.1f} GB in {root} and "
            f"{free / 1e9:.1f} GB are free; free space there or set MGTOOLKIT_CACHE to a folder with room."
        )


def _clear_stale_staging(root: Path) -> None:
    """Remove staging folders a killed process left (older than six hours, so none in use)."""
    now = time.time()
    for path in root.glob(f"{_STAGING_PREFIX}*"):
        try:
            if now - path.stat().st_mtime > _STALE_STAGING_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _drop_older_copies(root: Path, keep: Path, source: str) -> None:
    """Delete other copies converted from the same source folder (its files changed since)."""
    for manifest in root.glob(f"*/{MANIFEST}"):
        entry = manifest.parent
        if entry == keep:
            continue
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("source") == source:
                shutil.rmtree(entry, ignore_errors=True)
        except (OSError, ValueError):
            continue
