"""Where weights are on this machine: a folder, the Hugging Face cache (through huggingface_hub's
own ``snapshot_download(local_files_only=True)`` and ``try_to_load_from_cache``), PaddleNLP's cache;
and the disk they take there. Nothing is downloaded here (see :mod:`mgtoolkit.models.fetch`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .store import MANIFEST, _walk, converted_root

__all__ = ["hf_cache_dir", "find_hf_snapshot", "locate", "disk_size", "presence"]


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``huggingface_hub.constants.HF_HUB_CACHE``; read at each call (the library reads it once, at
    import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def find_hf_snapshot(repo_id: str, cache: Path | None = None) -> Path | None:
    """The snapshot folder ``refs/main`` names for ``repo_id`` in the Hugging Face cache, or ``None``.

    Found by huggingface_hub itself (``snapshot_download(local_files_only=True)``: no network, the
    hub id validated); an empty snapshot counts as absent.

    Examples
    --------
    >>> find_hf_snapshot("nobody/nothing", Path("/nonexistent")) is None
    True
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError, LocalEntryNotFoundError

    try:
        folder = Path(
            snapshot_download(repo_id, cache_dir=str(cache or hf_cache_dir()), local_files_only=True)
        )
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None
    return folder if folder.is_dir() and any(folder.iterdir()) else None


def _hf_snapshot_with(repo_id: str, marker: str) -> Path | None:
    """The snapshot of ``repo_id`` holding ``marker``, found by huggingface_hub's
    ``try_to_load_from_cache`` (the ``refs/main`` revision; no network), or ``None``."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError

    try:
        found = try_to_load_from_cache(repo_id, marker, cache_dir=str(hf_cache_dir()))
    except (HFValidationError, OSError, ValueError):
        return None
    return Path(found).parent if isinstance(found, str) and os.path.isfile(found) else None


def _ppdiffusers_cache() -> Path:
    home = os.environ.get("PPNLP_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "paddlenlp"
    )
    return Path(home).expanduser()


def locate(source: str, *, marker: str = "model_index.json") -> Path | None:
    """A local folder holding ``source``: the folder itself, its Hugging Face cache snapshot, or
    PaddleNLP's download of it; ``None`` when it is nowhere on this machine.

    ``marker`` is the file that says the folder is complete (``model_index.json`` for a pipeline,
    ``config.json`` for a captioner or writer).
    """
    if os.path.isdir(source):
        return Path(source)
    snapshot = _hf_snapshot_with(source, marker)
    if snapshot is not None:
        return snapshot
    for root in (_ppdiffusers_cache() / "ppdiffusers", _ppdiffusers_cache() / "models", _ppdiffusers_cache()):
        folder = root / source
        if (folder / marker).is_file():
            return folder
    return None


def disk_size(folder: Path, *more: Path) -> int:
    """Bytes the folders' files take (symlinks followed, each file counted once however many links
    lead to it: a hub blob, a weights file linked into our cache)."""
    seen, total = set(), 0
    for top in (folder, *more):
        for _, path in _walk(top):
            info = path.stat()
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def presence(source: str, *, marker: str = "model_index.json") -> tuple[Path | None, int]:
    """Where ``source`` is on this machine (see :func:`locate`) and the bytes it takes there,
    converted copies included; ``(None, 0)`` when it is not here."""
    folder = locate(source, marker=marker)
    if folder is None:
        return None, 0
    real, copies = str(folder.resolve()), []
    for manifest in converted_root().glob(f"*/{MANIFEST}") if converted_root().is_dir() else []:
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("source") == real:
                copies.append(manifest.parent)
        except (OSError, ValueError):
            continue
    return folder, disk_size(folder, *copies)
